# Training pipeline = the thesis's training-data generation (target: `snakemake train`).
# Each rule calls the function of spinecensus.train named after it (segmentation.train_segmentation,
# autolabel.train_autolabel, crops.train_crops / train_expert_crops, labeler.train_labeler,
# evaluation.train_evaluate); everything lands in results/train/.
# All data are synthetic (spinecensus.synthetic); all reported numbers are SYNTHETIC.
#
# Config keys (defaults; the Snakefile's config.yaml / schema may carry them):
#
# segmentation:
#   weights: null          # null = shipped spinecensus/weights/segmentation.pt; or .pt / .onnx
#   device: cpu            # cpu | cuda | cuda:N
#   amp: bf16              # CUDA autocast dtype: bf16 | fp16 | null (ignored on CPU)
#   batch_size: 8          # slices per forward pass
#   layout: null           # null = from the sidecar; thesis = published ONNX layout
# labeling:
#   weights: null          # small-FOV labeler (.pt/.onnx); null = shipped labeling.pt if any
#   device: cpu
#   amp: bf16
#   batch_size: 8
# train:
#   size: ci               # ci (minutes on CPU) | demo (the shipped weights) | gpu (thesis-sized)
#   segmentation_weights: ""  # "" = step 1 trains one; "shipped" or a path = skip step 1
#   seed: 0
#   device: cpu            # cuda for a gpu-sized run
#   # any preset key may be overridden: n_expert, n_cohort, crops_per_subject,
#   # n_eval_per_v, seg_steps, lab_steps, batch_size, lr, seg_crop, lab_crop, v_min, v_max,
#   # lumbarization, sacralization, synthetic_preset (tiny|default), log_every,
#   # segmentation: {encoder, encoder_depth, decoder_channels, target_spacing_mm,
#   #                input_size, weights_dtype}, labeling: {...same keys}


rule train:
    input:
        f"{TRAIN_DIR}/eval.parquet",
        f"{TRAIN_DIR}/eval.md",


rule train_segmentation:
    output:
        weights=f"{TRAIN_DIR}/segmentation.pt",
        sidecar=f"{TRAIN_DIR}/segmentation.json",
    log:
        f"{TRAIN_DIR}/logs/train_segmentation.log",
    benchmark:
        f"{TRAIN_DIR}/benchmarks/train_segmentation.tsv"
    threads: workflow.cores
    run:
        from spinecensus.train.job_logging import setup_logging
        from spinecensus.train.segmentation import train_segmentation

        setup_logging(log[0])
        train_segmentation(_train_config(threads), output.weights)


rule train_autolabel:
    input:
        weights=_autolabel_weights,
    output:
        labels=f"{TRAIN_DIR}/autolabels.npz",
        summary=f"{TRAIN_DIR}/autolabels.json",
    log:
        f"{TRAIN_DIR}/logs/train_autolabel.log",
    benchmark:
        f"{TRAIN_DIR}/benchmarks/train_autolabel.tsv"
    threads: workflow.cores
    run:
        from spinecensus.train.autolabel import train_autolabel
        from spinecensus.train.job_logging import setup_logging

        setup_logging(log[0])
        train_autolabel(_train_config(threads), input.weights, output.labels)


rule train_crops:
    input:
        labels=rules.train_autolabel.output.labels,
    output:
        f"{TRAIN_DIR}/crops.npz",
    log:
        f"{TRAIN_DIR}/logs/train_crops.log",
    benchmark:
        f"{TRAIN_DIR}/benchmarks/train_crops.tsv"
    run:
        from spinecensus.train.crops import train_crops
        from spinecensus.train.job_logging import setup_logging

        setup_logging(log[0])
        train_crops(_train_config(1), input.labels, output[0])


rule train_expert_crops:
    output:
        f"{TRAIN_DIR}/expert_crops.npz",
    log:
        f"{TRAIN_DIR}/logs/train_expert_crops.log",
    benchmark:
        f"{TRAIN_DIR}/benchmarks/train_expert_crops.tsv"
    run:
        from spinecensus.train.crops import train_expert_crops
        from spinecensus.train.job_logging import setup_logging

        setup_logging(log[0])
        train_expert_crops(_train_config(1), output[0])


rule train_labeler:
    input:
        crops=lambda wc: f"{TRAIN_DIR}/{'expert_crops' if wc.which == 'control' else 'crops'}.npz",
    output:
        weights=f"{TRAIN_DIR}/{{which}}.pt",
        sidecar=f"{TRAIN_DIR}/{{which}}.json",
    log:
        f"{TRAIN_DIR}/logs/train_{{which}}.log",
    benchmark:
        f"{TRAIN_DIR}/benchmarks/train_{{which}}.tsv"
    wildcard_constraints:
        which="labeler|control",
    threads: workflow.cores
    run:
        from spinecensus.train.job_logging import setup_logging
        from spinecensus.train.labeler import train_labeler

        setup_logging(log[0])
        train_labeler(
            _train_config(threads), input.crops, output.weights, wildcards.which
        )


rule train_evaluate:
    input:
        labeler=f"{TRAIN_DIR}/labeler.pt",
        control=f"{TRAIN_DIR}/control.pt",
    output:
        table=f"{TRAIN_DIR}/eval.parquet",
        markdown=f"{TRAIN_DIR}/eval.md",
    log:
        f"{TRAIN_DIR}/logs/train_evaluate.log",
    benchmark:
        f"{TRAIN_DIR}/benchmarks/train_evaluate.tsv"
    threads: workflow.cores
    run:
        from spinecensus.train.evaluation import train_evaluate
        from spinecensus.train.job_logging import setup_logging

        setup_logging(log[0])
        train_evaluate(
            _train_config(threads),
            input.labeler,
            input.control,
            output.table,
            output.markdown,
        )
