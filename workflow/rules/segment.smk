# Segmentation per BATCH of subjects: one process loads the model once and segments
# `segmentation.subjects_per_job` subjects (a deterministic chunk of the sorted subject list),
# writing <results>/segmentation/<batch>/<subject>.nii.gz (or <subject>.failed.json), and,
# with `labeling.weights` set, the small-FOV labeler's per-voxel vote
# <subject>.labeler.nii.gz (the analysis names each instance by majority vote + the
# consistent-sequence DP and cross-checks it with counting from C2).
# Runs spinecensus.census.segment_job.segment (`python -m spinecensus.census segment`).
# `segmentation.precision` (auto: bf16 autocast on CUDA and on CPUs with native bf16, else
# fp32), `batch_size` (slices per forward pass; "auto" = from free GPU memory) and
# `gzip_level` (of the written masks; 0 = stored uncompressed) come from config.yaml.


rule segment:
    input:
        images=batch_images,
        semantics=batch_semantics,
    output:
        directory(f"{RESULTS}/segmentation/{{batch}}"),
    log:
        f"{RESULTS}/logs/segment/{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment/{{batch}}.tsv"
    conda:
        CONDA_ENV
    threads: int(SEG.get("threads", 2))
    resources:
        # x attempt: a retry (profiles/slurm: retries 1) is resubmitted with twice the memory/time
        mem_mb=lambda wildcards, attempt: int(SEG.get("mem_mb", 4000)) * attempt,
        runtime=lambda wildcards, attempt: int(SEG.get("runtime", 60)) * attempt,
        gpu=1 if DEVICE.startswith("cuda") else 0,
    params:
        subjects=lambda wildcards: BATCHES[wildcards.batch],
        images=lambda wildcards: [IMAGES[s] or "-" for s in BATCHES[wildcards.batch]],
        semantics=lambda wildcards: (
            ["--semantics"]
            + [SEMANTICS.get(s) or "-" for s in BATCHES[wildcards.batch]]
            if METHOD == "ground_truth"
            else []
        ),
        method=METHOD,
        weights=SEG.get("weights", ""),
        device=DEVICE,
        batch_size=SEG.get("batch_size", 16),
        precision=SEG.get("precision", "auto"),
        gzip_level=int(SEG.get("gzip_level", 1)),
        model_options=json.dumps(
            {k: SEG.get(k) for k in ("amp", "layout", "normalisation") if k in SEG}
        ),
        labeler=(config.get("labeling") or {}).get("weights", ""),
    shell:
        "python -m spinecensus.census segment --out {output:q} --method {params.method} "
        "--weights={params.weights:q} --device {params.device} "
        "--batch-size {params.batch_size} --threads {threads} "
        "--precision {params.precision} --gzip-level {params.gzip_level} "
        "--model-options {params.model_options:q} --labeler-weights={params.labeler:q} "
        "--subjects {params.subjects:q} --images {params.images:q} {params.semantics:q} "
        "> {log:q} 2>&1"
