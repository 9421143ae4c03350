"""Adult vertebral body, sacral, coccygeal and disc dimensions (mm), approximate.

Every table is (height, AP depth, lateral width) in mm; heights run cranio-caudally along
the column (arc length ``s`` of the spine frame, see :mod:`spinecensus.synthetic.centreline`).
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------
# Adult vertebral body dimensions, (height, AP depth, lateral width) in mm, approximate.
# Heights are mid-body heights, depth/width those of the endplates.  The values are
# rounded from memory of the classic morphometry series -- Panjabi MM et al., "Cervical
# human vertebrae. Quantitative three-dimensional anatomy of the middle and lower regions",
# Spine 16:861-869 (1991); Panjabi MM et al., "Thoracic human vertebrae. Quantitative
# three-dimensional anatomy", Spine 16:888-901 (1991); Panjabi MM et al., "Human lumbar
# vertebrae. Quantitative three-dimensional anatomy", Spine 17:299-306 (1992) -- and are
# meant as plausible adult averages (e.g. C3 ~14/16 mm, T6 ~20/28 mm, L3 ~28/35 mm), not
# as exact literature values.  Sacral segments (height tapering 28 -> 12 mm) are likewise
# approximate; their "width" includes part of the alae (the vertebra class for the sacrum
# is the whole fused bone in the public masks).
# ---------------------------------------------------------------------------------------
BODY_DIMS_MM: dict[str, tuple[float, float, float]] = {
    "C2": (15.0, 15.0, 17.0),
    "C3": (14.0, 16.0, 17.0),
    "C4": (14.0, 16.0, 18.0),
    "C5": (14.0, 16.0, 19.0),
    "C6": (14.0, 17.0, 21.0),
    "C7": (15.0, 17.0, 24.0),
    "T1": (16.0, 18.0, 27.0),
    "T2": (17.0, 20.0, 27.0),
    "T3": (17.5, 22.0, 27.0),
    "T4": (18.0, 24.0, 28.0),
    "T5": (19.0, 26.0, 30.0),
    "T6": (20.0, 28.0, 31.0),
    "T7": (20.5, 28.0, 32.0),
    "T8": (21.0, 29.0, 34.0),
    "T9": (21.5, 30.0, 36.0),
    "T10": (22.0, 31.0, 38.0),
    "T11": (23.0, 32.0, 40.0),
    "T12": (24.0, 32.0, 42.0),
    "L1": (26.0, 33.0, 44.0),
    "L2": (27.0, 34.0, 46.0),
    "L3": (28.0, 35.0, 48.0),
    "L4": (28.0, 35.0, 50.0),
    "L5": (27.0, 35.0, 51.0),
    "L6": (26.0, 34.0, 51.0),
}
# sacral segments S1..S5 (height, depth, width incl. part of the alae), approximate
SACRAL_SEGMENT_DIMS_MM: tuple[tuple[float, float, float], ...] = (
    (28.0, 34.0, 70.0),
    (24.0, 27.0, 60.0),
    (20.0, 21.0, 46.0),
    (16.0, 16.0, 32.0),
    (12.0, 12.0, 22.0),
)
SACRAL_RUDIMENT_MM = 2.5  # remnant disc between fused sacral segments (imaged, not labelled)
#: height range (mm) of a visible, labelled S1-S2 remnant disc (variant ``sacral_disc``):
#: thinner than any free disc but spanning the sacrum's AP depth (O'Driscoll type 3, see
#: docs/architecture.md); the range is our choice, the source gives no heights
REMNANT_DISC_MM = (3.0, 5.0)
#: rudiment (vestigial disc, imaged, labelled as the block) inside a congenital block
#: vertebra (variant ``fused_block``), mm, and the block's anterior waist at that level
#: (fraction of the AP depth): the "wasp waist" of a congenital block
BLOCK_RUDIMENT_MM = 1.5
BLOCK_WAIST = 0.2
# coccygeal segments Co1..Co3 (height, depth, width), imaged bone, not labelled
COCCYX_SEGMENT_DIMS_MM: tuple[tuple[float, float, float], ...] = (
    (9.0, 10.0, 14.0),
    (8.0, 8.0, 11.0),
    (7.0, 6.0, 8.0),
)


def disc_height_mm(upper: str, lower: str) -> float:
    """Adult disc height (mm) between ``upper`` and ``lower``, approximate.

    Cervical ~5 mm, thoracic ~4 mm (upper) to ~6.5 mm (lower), lumbar ~9-12 mm increasing
    caudally (e.g. Pooni JS et al., Spine 11:459 (1986); Koeller W et al., Spine 11:1133
    (1986); approximate values from memory).
    """
    if upper[0] == "C":
        return 4.5 if upper == "C2" else 5.0
    if upper[0] == "T":
        # the thoracolumbar disc (T12-L1; T11-L1 or T13-L1 with 11 or 13 thoracic) ~8 mm
        i = int(upper[1:])
        return 8.0 if lower[0] == "L" else 4.0 + 2.5 * (i - 1) / 10.0
    i = int(upper[1:])
    if lower == "S1":
        return 11.0
    return {1: 9.0, 2: 10.0, 3: 11.0, 4: 12.0, 5: 12.0}.get(i, 11.5)
