# Cohort tables (rebuilt from the per-subject files on every run, written atomically) and
# the cohort QC figures of the report. Rule aggregate runs
# spinecensus.census.aggregate_job.aggregate (`python -m spinecensus.census aggregate`), rule
# cohort_qc spinecensus.census.cohort_figures.cohort_qc (`... cohort-qc`), rule
# failure_guard spinecensus.census.failure_guard.failure_guard (`... failure-guard`): the run
# fails, tables kept, when more than qc.max_failed_fraction of the subjects failed or every
# subject of a segmentation batch did. The config reaches aggregate as JSON: its `prevalence`
# section declares the strata (checked against the sheet at parse time, common.smk). The
# analyst's overrides file (review.overrides, checked at parse time) is an input of aggregate
# only: editing it reruns aggregate and what reads its tables, never segment or analyse.


rule aggregate:
    input:
        sheet=SHEET,
        summaries=expand(
            f"{RESULTS}/subjects/{{subject}}/summary.json", subject=SUBJECTS
        ),
        structures=expand(
            f"{RESULTS}/subjects/{{subject}}/structures.parquet", subject=SUBJECTS
        ),
        morphometrics=expand(
            f"{RESULTS}/subjects/{{subject}}/morphometrics.parquet", subject=SUBJECTS
        ),
        overrides=[OVERRIDES] if OVERRIDES else [],
    output:
        structures=f"{RESULTS}/tables/structures.parquet",
        subjects=f"{RESULTS}/tables/subjects.parquet",
        prevalence=f"{RESULTS}/tables/prevalence.parquet",
        failures=f"{RESULTS}/tables/failures.parquet",
        morphometrics=f"{RESULTS}/tables/morphometrics.parquet",
        spine_alignment=f"{RESULTS}/tables/spine_alignment.parquet",
        reference=f"{RESULTS}/tables/reference.parquet",
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    conda:
        CONDA_ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        subjects_dir=lambda wildcards, input: os.path.dirname(
            os.path.dirname(input.summaries[0])
        ),
        out=lambda wildcards, output: os.path.dirname(output.subjects),
        config=json.dumps(config, sort_keys=True, default=str),
        overrides=lambda wildcards, input: input.overrides[0] if input.overrides else "",
    shell:
        "python -m spinecensus.census aggregate --subjects-dir {params.subjects_dir:q} "
        "--sheet {input.sheet:q} --config {params.config:q} --out {params.out:q} "
        "--overrides={params.overrides:q} > {log:q} 2>&1"


rule cohort_qc:
    input:
        prevalence=rules.aggregate.output.prevalence,
        structures=rules.aggregate.output.structures,
        subjects=rules.aggregate.output.subjects,
        morphometrics=rules.aggregate.output.morphometrics,
        reference=rules.aggregate.output.reference,
    output:
        prevalence=report(
            f"{RESULTS}/qc/prevalence.png",
            caption="../report/prevalence.rst",
            category="Cohort",
        ),
        volumes=report(
            f"{RESULTS}/qc/volumes.png",
            caption="../report/volumes.rst",
            category="Cohort",
        ),
        morphometrics=report(
            f"{RESULTS}/qc/morphometrics_curves.png",
            caption="../report/morphometrics.rst",
            category="Cohort",
        ),
    log:
        f"{RESULTS}/logs/cohort_qc.log",
    benchmark:
        f"{RESULTS}/benchmarks/cohort_qc.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tables=lambda wildcards, input: os.path.dirname(input.prevalence),
    shell:
        "python -m spinecensus.census cohort-qc --tables {params.tables:q} "
        "--prevalence-png {output.prevalence:q} --volumes-png {output.volumes:q} "
        "--morphometrics-png {output.morphometrics:q} > {log:q} 2>&1"


rule failure_guard:
    input:
        subjects=rules.aggregate.output.subjects,
        failures=rules.aggregate.output.failures,
        batches=expand(f"{RESULTS}/segmentation/{{batch}}", batch=sorted(BATCHES)),
    output:
        f"{RESULTS}/tables/failure_guard.txt",
    log:
        f"{RESULTS}/logs/failure_guard.log",
    benchmark:
        f"{RESULTS}/benchmarks/failure_guard.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        tables=lambda wildcards, input: os.path.dirname(input.subjects),
        max_failed_fraction=config.get("qc", {}).get("max_failed_fraction", 0.2),
        whole_batch=(
            ""
            if config.get("qc", {}).get("fail_on_whole_batch", True)
            else "--no-whole-batch-check"
        ),
    shell:
        "python -m spinecensus.census failure-guard --tables {params.tables:q} "
        "--marker {output:q} --max-failed-fraction {params.max_failed_fraction} "
        "{params.whole_batch} --seg-dirs {input.batches:q} > {log:q} 2>&1"
