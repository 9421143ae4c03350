"""Training: generated-label training of the segmentation U-Net and the small-FOV labeler, the
real-MRI reader, fine-tuning and evaluation.

Generated-label training on synthetic data (``workflow/rules/train.smk``; Gliwa 2023): a
segmentation model trained on a *small* expert-annotated subset segments a *large* cohort; the
segmentations are split into instances and named by counting from C2, subjects whose split is
invalid are dropped, and the automatically labelled scans - cropped to small fields of view -
train the multiclass labeler.  One function per rule, named after it:

* ``segmentation``: rule ``train_segmentation`` - U-Net (bg/vertebra/disc) on the expert
  subset's ground truth.
* ``autolabel``: rule ``train_autolabel`` - segment the cohort, split, count-label from C2,
  drop invalid splits and spines with a suspected missed disc; never reads its ground truth.
* ``crops``: rules ``train_crops``, ``train_expert_crops`` - small-FOV windows (V = 5..15
  vertebrae) of the auto-labelled cohort or of the expert subset; ``iter_crops``.
* ``labeler``: rule ``train_labeler`` - the union labeler (and the ground-truth control).
* ``evaluation``: rule ``train_evaluate`` - subset accuracy and Dice at V = 5, 8, 10, 15.
* ``cli``: the ``spinecensus train`` command (all five steps without Snakemake).

and what they share:

* ``config``: ``TrainConfig``, ``PRESETS`` (``ci`` / ``demo`` / ``gpu``), network defaults.
* ``subjects``: disjoint subject seeds, anomaly per subject, ``make_subject``.
* ``union_maps``: ``union_class_map`` / ``instances_from_union`` (the labeler's targets).
* ``slice_bank``: ``SliceBank``, ``to_bank``, ``sample_batch``.
* ``loop``: ``train_network`` (CE + soft Dice, AdamW, warm-up + cosine), bf16 helpers.
* ``networks``: ``model_spec``, ``inference_amp``, ``save_trained``.
* ``metrics``: ``dice_per_class``, ``name_accuracy``.
* ``job_logging``: ``setup_logging`` (stderr and the rule's ``log:``; also the real-MRI rules).

All numbers produced by these steps are on **synthetic** data.

Real annotated MRI (``workflow/rules/train_real.smk``), in the order a run uses them:

* ``real_data``: manifest reader, partial labels (``load_manifest``, ``RealSample``).
* ``real_splits``: patient-level split and folds (``split_subjects``, ``n_folds``).
* ``real_codes``: per-voxel loss codes of partial masks (``target_codes``).
* ``real_augment``: MRI augmentation (``augment_volume``, ``random_rotation_grid``).
* ``real_sample_sheet``: pipeline sample sheet, the ``spinecensus real-sheet`` command.
* ``real_volumes``, ``real_batches``: training volumes on the network grid, batches.
* ``real_loss``: the partial-label loss (``partial_label_loss``).
* ``real_train_loop``: the training loop (``TrainConfig``, ``train_partial``).
* ``real_run_config``: the ``train_real`` config, presets, variants (``RealRunConfig``).
* ``real_variant``: rules ``train_real_variant``, ``train_real_fold``.
* ``real_metrics``, ``real_subject_eval``, ``real_report``, ``real_qc``: Dice and IoU,
  per-subject judging, summary tables and files, QC figures.
* ``real_evaluation``: rule ``train_real_evaluate``.
* ``real_cv``: rule ``train_real_cv_evaluate``.
* ``real_labeler``: rules ``train_real_labeler_windows``, ``train_real_labeler_fold``.
* ``real_naming``: rule ``train_real_naming_evaluate``.
"""
