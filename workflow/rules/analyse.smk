# Per subject: instance splitting + labeling + volumes + QC PNG in one light process (no
# torch). Subject-level errors are caught inside (failed.json + summary status "failed") so
# the job exits 0 and the cohort goes on.
# Runs spinecensus.census.analyse_job.analyse (`python -m spinecensus.census analyse`).
#
# Reruns: the job depends on its batch's segmentation folder, so re-segmenting a batch (e.g.
# because one subject's image changed) reruns the analyses of that batch's subjects
# (segmentation.subjects_per_job of them) and the aggregate; nothing else.


rule analyse:
    input:
        seg=subject_seg_dir,
        image=subject_image,
    output:
        summary=f"{RESULTS}/subjects/{{subject}}/summary.json",
        structures=f"{RESULTS}/subjects/{{subject}}/structures.parquet",
        qc=report(
            f"{RESULTS}/subjects/{{subject}}/qc.png",
            caption="../report/subject_qc.rst",
            category="Subjects",
            labels={"subject": "{subject}"},
        ),
    log:
        f"{RESULTS}/logs/analyse/{{subject}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/analyse/{{subject}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        image=lambda wildcards: IMAGES[wildcards.subject] or "",
        segmentation=seg_signature(),
        out=lambda wildcards, output: os.path.dirname(output.summary),
        field_of_view=config["labeling"].get("field_of_view", "whole_spine"),
    shell:
        "python -m spinecensus.census analyse --subject {wildcards.subject} "
        "--seg-dir {input.seg:q} --image={params.image:q} "
        "--field-of-view {params.field_of_view} "
        "--out {params.out:q} > {log:q} 2>&1"
