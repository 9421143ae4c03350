"""What naming gives a split: :class:`Labeling` (instance id -> structure name, the
transitional status, who decided, QC flags), and the fields of view naming knows.

The names come from counting (``naming.counting``: from C2 on a whole spine, upward from
the sacrum on a lumbar field of view) or from the labeler checked against that count
(``naming.labeler``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Labeling:
    """Names for the instances of one :class:`~spinecensus.split.instances.SplitResult`.

    Attributes:
        id_to_name: instance id -> structure name (ids that could not be named are absent).
        transitional_status: ``labels.transitional_status`` of the names.
        lumbar_count: free lumbar vertebrae when determinable, else None.
        decided_by: ``"count"``, ``"model"`` or ``"count+model"`` (both agreed).
        qc_flags: human-readable flags, ``"<code>: <detail>"``.
        confidence: instance id -> probability of its name under the model (model only).
        sacrum_id: instance id recognised as the sacrum (count labeling), else None.
    """

    id_to_name: dict[int, str]
    transitional_status: str
    lumbar_count: int | None
    decided_by: str
    qc_flags: list[str] = field(default_factory=list)
    confidence: dict[int, float] = field(default_factory=dict)
    sacrum_id: int | None = None


#: QC flag codes that withhold the transitional status, whoever names the levels: an invalid
#: split, a count origin that is not C2 by shape (or a top instance neither one body nor a
#: C2-C3 block), an ambiguous sacral junction, a suspected missed disc
WITHHOLDING_FLAGS = (
    "split_invalid",
    "count_origin_unverified",
    "block_vertebra_suspected",
    "sacral_junction_ambiguous",
    "missed_disc_suspected",
)


def withholds(qc_flags: list[str]) -> bool:
    """Whether any of ``qc_flags`` (``"<code>: <detail>"``) withholds the status."""
    return any(f.split(":", 1)[0] in WITHHOLDING_FLAGS for f in qc_flags)


#: what the scans show: "whole_spine" (C2 to the sacrum: count from C2) or "lumbar" (a
#: lumbar / thoraco-lumbar field of view without C2: name upward from the sacrum)
FIELDS_OF_VIEW = ("whole_spine", "lumbar")


def check_field_of_view(field_of_view: str) -> str:
    """``field_of_view`` itself, or ValueError when it is not one of :data:`FIELDS_OF_VIEW`."""
    if field_of_view not in FIELDS_OF_VIEW:
        raise ValueError(f"field_of_view must be one of {FIELDS_OF_VIEW}, got {field_of_view!r}")
    return field_of_view
