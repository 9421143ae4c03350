"""Review and correct: a static QC review page of the flagged subjects, the analyst's
overrides that flow into the cohort tables, and the tables' provenance.

Module map:

* ``overrides``: the ``overrides.tsv`` format (``subject``, ``action``, ``value``,
  ``reviewer``, ``note``, ``date``), ``read_overrides`` (validation, errors name the row),
  ``OverridesError``.
* ``relabel``: ``rename_levels`` - a level renamed and the levels below following it.
* ``apply``: ``apply_overrides`` - ``final_status``, ``decided_by = review``, ``reviewer``,
  ``review_note`` in ``subjects.parquet``; renamed rows in ``structures.parquet``.
* ``provenance``: ``provenance`` - git commit, weights and overrides sha256 for every
  table's metadata.
* ``page``: ``review_page`` - the rule ``review_page``: ``results/review/index.html`` (plain
  JavaScript and CSS in ``assets/``, inlined).
"""
