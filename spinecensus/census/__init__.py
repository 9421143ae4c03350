"""The cohort census: per-subject outputs, cohort Parquet tables, prevalence with CIs, QC
figures, and what the workflow's rules run.

Rules run ``python -m spinecensus.census <verb>`` (:mod:`.jobs`); each verb calls the
function named after its rule:

* ``synthesize`` -> :func:`.synthesize_job.synthesize` (the synthetic demo cohort)
* ``segment`` -> :func:`.segment_job.segment` (a batch of subjects, model loaded once)
* ``analyse`` -> :func:`.analyse_job.analyse` (one subject: split, names, volumes, QC PNG)
* ``aggregate`` -> :func:`.aggregate_job.aggregate` (the four cohort tables)
* ``cohort_qc`` -> :func:`.cohort_figures.cohort_qc` (the report's cohort figures)

Modules:

* ``sheet``: the sample sheet (``read_sheet``, ``check_subject_ids``, ``resolve_paths``,
  ``check_columns``, ``SampleSheetError``).
* ``batches``: subjects into segmentation jobs (``make_batches``, ``batch_of``,
  ``synthetic_subject_ids``).
* ``environment``: the job process (``prepare_job_environment``, ``process_age_s``,
  ``one_line``).
* ``subject_analysis``: one semantic mask -> instances, names, volumes (``analyse_semantic``,
  ``process_semantic``) and the ``spinecensus split`` command.
* ``tables``: Parquet schemas, table metadata, the subjects/structures/failures tables
  (``write_cohort_tables``); ``prevalence``: Wilson intervals, ``prevalence_table``;
  ``strata``: the declared strata (``StrataSpec``, ``check_declaration``);
  ``misclassification``: the Rogan–Gladen correction; ``presacral``: the status definition
  and ``presacral_count``.
* ``subject_qc``: per-subject PNG and failure card; ``cohort_figures``: prevalence and
  volume figures; ``pyplot_png``: matplotlib (Agg) and atomic PNG writes.
* ``run_summary``: the end-of-run summary printed by the Snakefile's ``onsuccess``.
* ``synthesize_job``, ``segment_job``, ``analyse_job``, ``aggregate_job``: the rules' functions;
  ``jobs`` / ``__main__``: their command line.
* ``cluster``: the ``spinecensus slurm-profile`` command.
"""
