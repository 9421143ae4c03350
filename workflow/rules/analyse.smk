# Per segmentation batch: instance splitting + labeling + volumes + QC PNG of every subject of
# the batch in ONE light process (no torch), rule `analyse_<batch>` (e.g. analyse_b00000).
# Runs spinecensus.census.analyse_batch.analyse_batch (`python -m spinecensus.census
# analyse-batch`), which calls spinecensus.census.analyse_job.analyse per subject.
#
# Why one rule per batch: a subject's analysis takes ~0.3 s, a fresh Python process ~1 s, and
# Snakemake ignores `group:` in local runs (grouped jobs stay one process each). A rule's
# outputs cannot depend on a wildcard's value, so each batch gets its own rule, defined here
# in a loop over the batches (BATCHES, common.smk) with its subjects' files listed.
#
# Per-subject outputs, failures and reruns are kept:
# - every subject still has its declared summary.json / structures.parquet /
#   morphometrics.parquet (spinecensus.measure, issue 21; alignment in summary.json) / qc.png;
# - a subject's bad input is caught inside (failed.json + summary status "failed"), the job
#   exits 0 and the cohort goes on; a fault of the program fails the job (Snakemake then
#   restores the outputs it had backed up);
# - outputs are flagged update(): when the batch's rule reruns, Snakemake keeps existing
#   outputs and the job recomputes only subjects whose outputs are missing or stale (their
#   mask, image, segmentation model, options or the package code changed: the analysis key
#   recorded in summary.json). So deleting one subject's summary.json reruns that subject
#   only, and `--forcerun results/subjects/S/summary.json` reruns its batch's rule, which
#   recomputes what changed (equal keys give equal outputs).
# - re-segmenting a batch reruns its analyses and the aggregate; nothing else.
# `group: "subjects"`: on a cluster (profiles/slurm, group-components) several batches'
# analyses share one SLURM job; locally groups have no effect.

ANALYSE_GZIP_LEVEL = int(SEG.get("gzip_level", 1))

for _batch, _subjects in BATCHES.items():

    rule:
        name:
            f"analyse_{_batch}"
        input:
            seg=f"{RESULTS}/segmentation/{_batch}",
            images=existing(IMAGES[s] for s in _subjects),
        output:
            summaries=[
                update(f"{RESULTS}/subjects/{s}/summary.json") for s in _subjects
            ],
            structures=[
                update(f"{RESULTS}/subjects/{s}/structures.parquet") for s in _subjects
            ],
            morphometrics=[
                update(f"{RESULTS}/subjects/{s}/morphometrics.parquet")
                for s in _subjects
            ],
            qc=[
                report(
                    update(f"{RESULTS}/subjects/{s}/qc.png"),
                    caption="../report/subject_qc.rst",
                    category="Subjects",
                    labels={"subject": s},
                )
                for s in _subjects
            ],
        log:
            f"{RESULTS}/logs/analyse/{_batch}.log",
        benchmark:
            f"{RESULTS}/benchmarks/analyse/{_batch}.tsv"
        group:
            "subjects"
        conda:
            CONDA_ENV
        threads: 1
        resources:
            # x attempt: a retry (profiles/slurm: retries 1) gets twice the memory/time
            mem_mb=lambda wildcards, attempt: 2000 * attempt,
            runtime=lambda wildcards, attempt: 10 * attempt,
        params:
            subjects=_subjects,
            images=[IMAGES[s] or "-" for s in _subjects],
            segmentation=seg_signature(),
            # the folder above <subject>/summary.json, taken from the outputs (lint: no
            # hard-coded output prefix)
            out_root=lambda wildcards, output: os.path.dirname(
                os.path.dirname(output.summaries[0])
            ),
            field_of_view=config["labeling"].get("field_of_view", "whole_spine"),
            gzip_level=ANALYSE_GZIP_LEVEL,
        shell:
            "python -m spinecensus.census analyse-batch --seg-dir {input.seg:q} "
            "--out-root {params.out_root:q} --field-of-view {params.field_of_view} "
            "--gzip-level {params.gzip_level} "
            "--subjects {params.subjects:q} --images {params.images:q} > {log:q} 2>&1"
