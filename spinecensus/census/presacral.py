"""What the transitional status means: the presacral count, and the definition in words.

The status is read off the number of free lumbar vertebrae between T12 and the sacrum
with the thoracic count fixed at 12 (:func:`spinecensus.anatomy.labels.transitional_status`),
which is a *presacral* count: the mobile vertebrae from C1 to the last lumbar.  A spine with
25 presacral vertebrae is called lumbarization whether its extra vertebra is an L6 or a T13
(rib-bearing); 23 is called sacralization.  The count is recorded per subject as
``presacral_count`` in ``subjects.parquet`` and the definition as the tables' metadata
``spinecensus.status_definition`` (:data:`STATUS_DEFINITION`).
"""

from __future__ import annotations

from typing import Any

#: the status definition stored in the table metadata (``spinecensus.status_definition``)
STATUS_DEFINITION = "by presacral count, as the thesis; T13 and L6 are not distinguished"

#: C1 has no vertebral body and is not segmented; it is counted by convention
C1 = 1
#: presacral count of a spine with 7 cervical, 12 thoracic and 5 lumbar vertebrae
NORMAL_PRESACRAL_COUNT = 24
#: the regions of the presacral vertebrae (the per-subject ``n_<region>`` counts)
REGIONS = ("cervical", "thoracic", "lumbar")


def presacral_counts(subjects: Any) -> Any:
    """Presacral count per subject (pandas ``Int64``): C1 + named C2..C7, T1..T12, L1..L-last.

    ``subjects``: the subjects table as a DataFrame with ``processed``,
    ``transitional_status``, ``first_label``, ``last_label``, ``n_cervical``, ``n_thoracic``
    and ``n_lumbar``.  The count is given only where the count origin (C2) and the sacrum
    (S1) are both in view and the status is determinable (24 for a normal spine, 25
    lumbarization, 23 sacralization); null otherwise.
    """
    import pandas as pd

    def col(name: str) -> Any:
        if name in subjects.columns:
            return subjects[name]
        return pd.Series(pd.NA, index=subjects.index, dtype="object")

    whole = (
        col("processed").fillna(False).astype(bool)
        & col("transitional_status").isin(("normal", "lumbarization", "sacralization"))
        & (col("first_label").astype("string") == "C2").fillna(False)
        & (col("last_label").astype("string") == "S1").fillna(False)
    )
    named = [pd.array(col(f"n_{r}").tolist(), dtype="Int64") for r in REGIONS]
    out = pd.Series(C1 + named[0] + named[1] + named[2], index=subjects.index, dtype="Int64")
    out[~whole.to_numpy(bool)] = pd.NA
    return out
