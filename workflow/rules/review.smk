# The review page: results/review/index.html, one self-contained static page listing the
# flagged subjects (or every subject: review.all_subjects) with their QC images, filters,
# sorting, keyboard navigation and a form whose decisions download as overrides.tsv -- the
# file config review.overrides names, which aggregate applies on the next run. Rule
# review_page runs spinecensus.review.page.review_page (`python -m spinecensus.census
# review-page`).


rule review_page:
    input:
        subjects=rules.aggregate.output.subjects,
        structures=rules.aggregate.output.structures,
        qc=expand(f"{RESULTS}/subjects/{{subject}}/qc.png", subject=SUBJECTS),
        overrides=[OVERRIDES] if OVERRIDES else [],
    output:
        f"{RESULTS}/review/index.html",
    log:
        f"{RESULTS}/logs/review_page.log",
    benchmark:
        f"{RESULTS}/benchmarks/review_page.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        tables=lambda wildcards, input: os.path.dirname(input.subjects),
        subjects_dir=lambda wildcards, input: os.path.dirname(
            os.path.dirname(input.qc[0])
        ),
        all_subjects="--all-subjects" if REVIEW.get("all_subjects") else "",
        overrides=lambda wildcards, input: input.overrides[0] if input.overrides else "",
    shell:
        "python -m spinecensus.census review-page --tables {params.tables:q} "
        "--subjects-dir {params.subjects_dir:q} --out {output:q} {params.all_subjects} "
        "--overrides={params.overrides:q} > {log:q} 2>&1"
