"""matplotlib for the QC figures: pyplot imported on demand with the Agg backend, and an
atomic PNG write that closes the figure."""

from __future__ import annotations

import os
from typing import Any

from spinecensus.io import atomic_path


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | os.PathLike[str], dpi: int = 80) -> None:
    """Write ``fig`` as a PNG to ``path`` atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
