# Training pipeline = the thesis's training-data generation (target: `snakemake train`).
# Each rule calls one function of spinecensus.train.training; everything lands in results/train/.
# All data are synthetic (spinecensus.synthetic.generator); all reported numbers are SYNTHETIC.
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
        from spinecensus.train import training

        training.setup_logging(log[0])
        training.train_segmentation(_train_config(threads), output.weights)


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
        from spinecensus.train import training

        training.setup_logging(log[0])
        training.autolabel_cohort(
            _train_config(threads), input.weights, output.labels
        )


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
        from spinecensus.train import training

        training.setup_logging(log[0])
        training.make_crops(_train_config(1), input.labels, output[0])


rule train_expert_crops:
    output:
        f"{TRAIN_DIR}/expert_crops.npz",
    log:
        f"{TRAIN_DIR}/logs/train_expert_crops.log",
    benchmark:
        f"{TRAIN_DIR}/benchmarks/train_expert_crops.tsv"
    run:
        from spinecensus.train import training

        training.setup_logging(log[0])
        training.make_crops(_train_config(1), None, output[0], expert=True)


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
        from spinecensus.train import training

        training.setup_logging(log[0])
        training.train_labeler(
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
        from spinecensus.train import training

        training.setup_logging(log[0])
        training.evaluate_labelers(
            _train_config(threads),
            {"generated": input.labeler, "control": input.control},
            output.table,
            output.markdown,
        )
