# Cohort tables (rebuilt from the per-subject files on every run, written atomically) and
# the cohort QC figures of the report.


rule aggregate:
    input:
        sheet=SHEET,
        summaries=expand(
            f"{RESULTS}/subjects/{{subject}}/summary.json", subject=SUBJECTS
        ),
        structures=expand(
            f"{RESULTS}/subjects/{{subject}}/structures.parquet", subject=SUBJECTS
        ),
    output:
        structures=f"{RESULTS}/tables/structures.parquet",
        subjects=f"{RESULTS}/tables/subjects.parquet",
        prevalence=f"{RESULTS}/tables/prevalence.parquet",
        failures=f"{RESULTS}/tables/failures.parquet",
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
    shell:
        "python -m spinecensus.census.cohort aggregate --subjects-dir {params.subjects_dir:q} "
        "--sheet {input.sheet:q} --config {params.config:q} --out {params.out:q} "
        "> {log:q} 2>&1"


rule cohort_qc:
    input:
        prevalence=rules.aggregate.output.prevalence,
        structures=rules.aggregate.output.structures,
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
        "python -m spinecensus.census.cohort cohort-qc --tables {params.tables:q} "
        "--prevalence-png {output.prevalence:q} --volumes-png {output.volumes:q} > {log:q} 2>&1"
