"""Naming the instances: counting from C2, the sacrum rule, the labeler vote and the consistent
C2 ... S1 sequence.

Entry points: :func:`label_split` (the count, then the labeler checked against it, as the
pipeline names a split), :func:`count_labels`, :func:`label_with_model`, all returning a
:class:`Labeling`.  Module map:

* ``labeling``: the result, ``Labeling``; ``FIELDS_OF_VIEW``, ``check_field_of_view``.
* ``counting``: naming by counting, from C2 down or up from the sacrum (``count_labels``).
* ``origin``: is the top instance C2 (its dens), a stray blob or a C2-C3 block
  (``read_origin``).
* ``sacrum``: the sacrum rule: the lowest fused block, remnant S1-S2 discs included
  (``read_sacrum``), and on small fields of view (``last_is_sacrum``, ``sacral_tail``,
  ``names_up_from_sacrum``).
* ``shape``: instance heights, body lengths, volumes and taper in mm (``ShapeReader``).
* ``vote``: the labeler's per-voxel vote as per-instance log-probabilities over the 49 union
  columns (``vote_log_probs``, ``union_column``, ``to_union_columns``).
* ``sequence``: the most likely schema-consistent name sequence (``consistent_sequence``).
* ``labeler``: the labeler's names checked against the count (``label_with_model``,
  ``label_split``).
"""

from spinecensus.naming.counting import count_labels
from spinecensus.naming.labeler import label_split, label_with_model
from spinecensus.naming.labeling import Labeling

__all__ = ["Labeling", "count_labels", "label_split", "label_with_model"]
