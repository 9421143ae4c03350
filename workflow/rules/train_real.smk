# Real-MRI training and evaluation (target: `snakemake train_real`).
# Trains the segmentation U-Net on the public annotated scans in ../shared/data/real (partial
# labels, see spinecensus/train/real_codes.py) mixed with synthetic subjects, and evaluates every
# model on the held-out validation subjects (patient-level split). Nothing of the data is copied.
# Each rule calls the function of spinecensus.train named after it:
#   train_real_variant, train_real_fold      spinecensus.train.real_variant
#   train_real_evaluate                      spinecensus.train.real_evaluation
#   train_real_cv_evaluate                   spinecensus.train.real_cv
#   train_real_labeler_windows, train_real_labeler_fold   spinecensus.train.real_labeler
#   train_real_naming_evaluate               spinecensus.train.real_naming
# Outputs land in results/train_real/.
#
# Config keys (defaults; all optional):
#
# train_real:
#   size: ci               # ci (CPU, minutes per variant) | gpu (GPU-sized: 20k steps, batch 32)
#   seed: 0
#   device: cpu            # cuda | cuda:N for gpu-sized runs
#   root: ../shared/data/real   # folder with manifest.tsv (relative to the working directory)
#   val_fraction: 0.34     # share of patient groups per dataset held out for validation
#   fold: 0                # which of the round(1 / val_fraction) folds is validation
#   cv_variant: pretrained_mixed   # recipe of the per-fold models (`snakemake train_real_cv`)
#   variants: [real_only, scratch_mixed, pretrained_mixed]   # see real_run_config.VARIANTS
#   pretrained: ""         # weights the pretrained variant starts from ("" = shipped default)
#   # overrides: steps, lr, finetune_lr, n_synthetic, n_synthetic_eval, synthetic_preset,
#   #   synthetic_appearances ([default]: the mixed-in synthetic subjects' appearances,
#   #   cycled; [default, randomised] = every second one a random contrast, issue 20),
#   #   real_fraction, max_seconds (wall-clock budget per variant, s),
#   #   fill_between_levels (true: the gap between annotated bodies is taught as disc),
#   #   disc_fill_margin_mm (2: that gap less 2 mm of endplate next to each body),
#   #   end_face_mm (2: beyond the first / last annotated structure, 2 mm "not that class"),
#   #   end_body_mm (10: above the first / below the last annotated disc, 10 mm of body),
#   #   target_spacing_mm ([SI, AP] network grid in mm; default: the start weights' own, 2 mm),
#   #   batch: {batch_size, volumes_per_step, crop_si, fg_fraction, dataset_weights},
#   #   augment: {scale, slice_gain, gamma, bias, noise, rotation_deg, zoom, flip_lr}
#   labeler:               # `snakemake train_real_naming` (spinecensus.train.real_labeler)
#     steps: 1000          # fine-tuning steps per fold, from the shipped labeler (init: "")
#     real_fraction: 0.5   # share of real slices among the sampled ones
#     crops: ""            # synthetic windows (train.crops.make_crops file); "" = ground-truth
#                          # windows of crops_size's expert subjects, made here
#     crops_size: demo     # training size those windows' subjects were generated with
#     n_synthetic_crops: 400
#     segmentation_folds: []   # per-fold segmentation weights to name; [] = train_real_cv's
#     # also: lr, batch_size, crop, max_seconds, init, log_every, train_seed


rule train_real:
    input:
        f"{TRAIN_REAL_DIR}/eval.parquet",
        f"{TRAIN_REAL_DIR}/eval.md",


# k-fold cross-validation: every real subject judged by a model that never trained on it
rule train_real_cv:
    input:
        f"{TRAIN_REAL_DIR}/cv/eval.parquet",
        f"{TRAIN_REAL_DIR}/cv/eval.md",


rule train_real_variant:
    output:
        weights=f"{TRAIN_REAL_DIR}/{{variant}}.pt",
        sidecar=f"{TRAIN_REAL_DIR}/{{variant}}.json",
    log:
        f"{TRAIN_REAL_DIR}/logs/train_{{variant}}.log",
    benchmark:
        f"{TRAIN_REAL_DIR}/benchmarks/train_{{variant}}.tsv"
    wildcard_constraints:
        variant="|".join(REAL_VARIANTS),
    threads: workflow.cores
    run:
        from spinecensus.train.job_logging import setup_logging
        from spinecensus.train.real_variant import train_real_variant

        setup_logging(log[0])
        train_real_variant(
            _train_real_config(threads), wildcards.variant, output.weights
        )


rule train_real_evaluate:
    input:
        weights=expand(f"{TRAIN_REAL_DIR}/{{variant}}.pt", variant=REAL_VARIANTS),
    output:
        table=f"{TRAIN_REAL_DIR}/eval.parquet",
        markdown=f"{TRAIN_REAL_DIR}/eval.md",
        qc=directory(f"{TRAIN_REAL_DIR}/qc"),
    log:
        f"{TRAIN_REAL_DIR}/logs/evaluate.log",
    benchmark:
        f"{TRAIN_REAL_DIR}/benchmarks/evaluate.tsv"
    threads: workflow.cores
    params:
        cfg=lambda wildcards, threads: _train_real_config(threads),
        models=lambda wildcards, input: _real_eval_models(input.weights),
    run:
        from spinecensus.train.job_logging import setup_logging
        from spinecensus.train.real_evaluation import train_real_evaluate

        setup_logging(log[0])
        train_real_evaluate(
            params.cfg, params.models, *output[:2], qc_dir=output.qc
        )


rule train_real_fold:
    output:
        weights=f"{TRAIN_REAL_DIR}/cv/fold{{fold}}.pt",
        sidecar=f"{TRAIN_REAL_DIR}/cv/fold{{fold}}.json",
    log:
        f"{TRAIN_REAL_DIR}/logs/train_fold{{fold}}.log",
    benchmark:
        f"{TRAIN_REAL_DIR}/benchmarks/train_fold{{fold}}.tsv"
    wildcard_constraints:
        fold=r"\d+",
    threads: workflow.cores
    params:
        cfg=lambda wildcards, threads: _train_real_config(threads),
        variant=REAL_CV_VARIANT,
    run:
        from spinecensus.train.job_logging import setup_logging
        from spinecensus.train.real_variant import train_real_fold

        setup_logging(log[0])
        train_real_fold(
            params.cfg, int(wildcards.fold), params.variant, output.weights
        )


rule train_real_cv_evaluate:
    input:
        weights=expand(f"{TRAIN_REAL_DIR}/cv/fold{{fold}}.pt", fold=_real_folds()),
    output:
        table=f"{TRAIN_REAL_DIR}/cv/eval.parquet",
        markdown=f"{TRAIN_REAL_DIR}/cv/eval.md",
    log:
        f"{TRAIN_REAL_DIR}/logs/evaluate_cv.log",
    benchmark:
        f"{TRAIN_REAL_DIR}/benchmarks/evaluate_cv.tsv"
    threads: workflow.cores
    params:
        cfg=lambda wildcards, threads: _train_real_config(threads),
        folds=lambda wildcards, input: dict(enumerate(input.weights)),
        baseline=lambda wildcards: {"synthetic_only": _shipped_weights()},
    run:
        from spinecensus.train.job_logging import setup_logging
        from spinecensus.train.real_cv import train_real_cv_evaluate

        setup_logging(log[0])
        train_real_cv_evaluate(params.cfg, params.folds, *output, params.baseline)


# k-fold naming: a labeler fine-tuned on each fold's named real levels names that fold's
# scans, beside the sacrum rule and the shipped (synthetic-only) labeler
rule train_real_naming:
    input:
        f"{TRAIN_REAL_DIR}/naming/eval.parquet",
        f"{TRAIN_REAL_DIR}/naming/eval.md",


rule train_real_labeler_windows:
    output:
        f"{TRAIN_REAL_DIR}/naming/windows.npz",
    log:
        f"{TRAIN_REAL_DIR}/logs/labeler_windows.log",
    benchmark:
        f"{TRAIN_REAL_DIR}/benchmarks/labeler_windows.tsv"
    params:
        cfg={"size": _TRL.get("crops_size", "demo"), "seed": _TR.get("seed", 0)},
    run:
        from spinecensus.train.job_logging import setup_logging
        from spinecensus.train.real_labeler import train_real_labeler_windows

        setup_logging(log[0])
        train_real_labeler_windows(params.cfg, output[0])


rule train_real_labeler_fold:
    input:
        windows=_real_labeler_windows,
    output:
        weights=f"{TRAIN_REAL_DIR}/naming/labeler_fold{{fold}}.pt",
        sidecar=f"{TRAIN_REAL_DIR}/naming/labeler_fold{{fold}}.json",
    log:
        f"{TRAIN_REAL_DIR}/logs/labeler_fold{{fold}}.log",
    benchmark:
        f"{TRAIN_REAL_DIR}/benchmarks/labeler_fold{{fold}}.tsv"
    wildcard_constraints:
        fold=r"\d+",
    threads: workflow.cores
    params:
        cfg=lambda wildcards, threads: _real_labeler_config(threads),
    run:
        from spinecensus.train.job_logging import setup_logging
        from spinecensus.train.real_labeler import train_real_labeler_fold

        setup_logging(log[0])
        train_real_labeler_fold(
            params.cfg, int(wildcards.fold), input.windows, output.weights
        )


rule train_real_naming_evaluate:
    input:
        segmentation=_naming_segmentation,
        labelers=expand(
            f"{TRAIN_REAL_DIR}/naming/labeler_fold{{fold}}.pt", fold=_real_folds()
        ),
    output:
        table=f"{TRAIN_REAL_DIR}/naming/eval.parquet",
        markdown=f"{TRAIN_REAL_DIR}/naming/eval.md",
    log:
        f"{TRAIN_REAL_DIR}/logs/evaluate_naming.log",
    benchmark:
        f"{TRAIN_REAL_DIR}/benchmarks/evaluate_naming.tsv"
    threads: workflow.cores
    params:
        cfg=lambda wildcards, threads: _real_labeler_config(threads),
        segmentation=lambda wildcards, input: dict(enumerate(input.segmentation)),
        labelers=lambda wildcards, input: dict(enumerate(input.labelers)),
        baseline=lambda wildcards: {"synthetic labeler": _shipped_labeler()},
    run:
        from spinecensus.train.job_logging import setup_logging
        from spinecensus.train.real_naming import train_real_naming_evaluate

        setup_logging(log[0])
        train_real_naming_evaluate(
            params.cfg,
            params.segmentation,
            params.labelers,
            *output,
            params.baseline,
        )
