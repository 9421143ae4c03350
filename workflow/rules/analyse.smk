# Per subject: instance splitting + labeling + volumes + QC PNG in one light process (no
# torch). Subject-level errors are caught inside (failed.json + summary status "failed") so
# the job exits 0 and the cohort goes on.
#
# The batch's segmentation folder is an ancient() input: re-segmenting a batch because one
# subject's image changed does not rerun the other subjects' analyses. The subject's own image
# (mtime) and the segmentation settings (params) are what trigger a rerun.


rule analyse:
    input:
        seg=ancient(subject_seg_dir),
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
    shell:
        "python -m spinecensus.cohort analyse --subject {wildcards.subject} "
        "--seg-dir {input.seg:q} --image={params.image:q} "
        "--out {params.out:q} > {log:q} 2>&1"
