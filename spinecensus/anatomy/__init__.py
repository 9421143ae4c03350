"""The anatomy the census names: the thesis label schema (C2 ... S1 with L6 / L4-only variants),
regions and transitional statuses, as data.

Module map:

* ``labels``: structure names and class ids per schema variant (``structures``,
  ``class_id``, ``class_name``, ``all_names`` - the 49-name union), vertebra / disc kinds,
  regions, the cranio-caudal order, and the transitional status read off the free lumbar
  count (``transitional_status``, ``lumbar_count``, ``variant_for_lumbar_count``).

Used as ``from spinecensus.anatomy import labels``; imports nothing but the standard library.
"""
