"""A reviewer's level rename: name one structure anew, and the levels below follow.

``rename_from L4=L5`` on a subject whose structures read (cranio-caudally) ``... L3, L3-L4,
L4, L4-L5, L5, L5-S1, S1`` gives ``... L3, L3-L4, L5, L5-L6, L6, L6-S1, S1``: from the
renamed structure down, the vertebrae take the next free vertebra names (C2 ... T12, L1 ...
L6) one by one and each disc is named after the vertebrae above and below it.  The sacrum
(the last vertebra when it is named ``S1``: it is found by its shape, not by counting) keeps
its name unless it is the renamed structure itself.  Structures above the renamed one are
never touched.  A name the rename would need that the label schema (:data:`SCHEMA_NAMES`)
lacks (a seventh lumbar vertebra, ``L3-S1``, a level below the sacrum) is an error.
"""

from __future__ import annotations

from collections.abc import Sequence

from spinecensus.anatomy import labels

#: every structure name of every variant of the label schema, cranio-caudal (``all_names``
#: is the 49-class order, which lacks the short variants' ``L4-S1`` and ``L5-S1``)
SCHEMA_NAMES = tuple(
    sorted({n for v in labels.VARIANTS for n in labels.structures(v)}, key=labels.sort_key)
)
#: the free (mobile) vertebrae in cranio-caudal order: the names a rename counts through
FREE_VERTEBRAE = (*labels.CERVICAL, *labels.THORACIC, *(f"L{i}" for i in range(1, 7)))


def rename_levels(
    names: Sequence[str | None], kinds: Sequence[str], old: str, new: str
) -> list[str | None]:
    """New names of one subject's structures after renaming ``old`` to ``new``.

    Args:
        names: current names in instance order (cranio-caudal; None = not named).
        kinds: ``"vertebra"`` or ``"disc"`` per structure, same order.
        old: the name of the structure to rename (its first occurrence).
        new: its new name, of the same kind.

    Raises ``ValueError`` when no structure is named ``old`` or a needed name is not in the
    label schema.
    """
    if old not in names:
        raise ValueError(f"the subject has no structure named {old!r}")
    start = list(names).index(old)
    out = list(names)
    out[start] = new
    what = f"{old}={new}"
    # the vertebra names from the renamed structure down: the free vertebrae from the first
    # one (a disc "A-B" starts its vertebrae at B), or only the sacrum
    first = new if kinds[start] == "vertebra" else new.split("-", 1)[1]
    pending = (
        [labels.SACRUM]
        if first == labels.SACRUM
        else list(FREE_VERTEBRAE[FREE_VERTEBRAE.index(first) :])
    )
    last_vertebra = max((i for i, kd in enumerate(kinds) if kd == "vertebra"), default=-1)
    keeps_sacrum = last_vertebra > start and names[last_vertebra] == labels.SACRUM
    if first == labels.SACRUM and keeps_sacrum:
        raise ValueError(f"renaming {what}: the subject's sacrum (S1) lies below it")
    for i in (i for i in range(start, len(names)) if kinds[i] == "vertebra"):
        if keeps_sacrum and i == last_vertebra:
            continue  # the sacrum keeps its name
        if not pending:
            end = "lies below the sacrum" if first == labels.SACRUM else "runs past L6"
            raise ValueError(f"renaming {what}: a vertebra {end} (no name in the schema)")
        out[i] = pending.pop(0)
    _name_discs(out, kinds, start, what)
    valid = set(SCHEMA_NAMES)
    for name in out[start:]:
        if name is not None and name not in valid:
            raise ValueError(f"renaming {what} gives level {name!r}, not in the label schema")
    named = [n for n in out if n is not None]
    twice = sorted({n for n in named if named.count(n) > 1}, key=labels.sort_key)
    if twice:
        raise ValueError(f"renaming {what} names {', '.join(twice)} twice")
    return out


def _name_discs(out: list[str | None], kinds: Sequence[str], start: int, what: str) -> None:
    """Name each disc below ``start`` after its neighbouring vertebrae (in place)."""
    for i in range(start + 1, len(out)):
        if kinds[i] != "disc":
            continue
        above = next((out[j] for j in range(i - 1, -1, -1) if kinds[j] == "vertebra"), None)
        below = next((out[j] for j in range(i + 1, len(out)) if kinds[j] == "vertebra"), None)
        if above is None:
            continue
        if below is None:  # the last disc in view: named after the vertebra that would follow
            if above == labels.SACRUM:
                raise ValueError(f"renaming {what} leaves a disc below the sacrum")
            k = FREE_VERTEBRAE.index(above) + 1
            if k == len(FREE_VERTEBRAE):
                raise ValueError(f"renaming {what}: a disc below L6 (no name in the schema)")
            below = FREE_VERTEBRAE[k]
        out[i] = f"{above}-{below}"
