"""What the workflow's rules call: sample sheet, batches, per-batch segmentation, per-subject
analysis, cohort tables, prevalence and QC figures.
"""
