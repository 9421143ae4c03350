"""Logging of one training job: progress lines to stderr and to the rule's ``log:`` file."""

from __future__ import annotations

import logging
import os
from pathlib import Path


def setup_logging(path: str | os.PathLike[str] | None = None) -> None:
    """Progress to stderr and, when given, to ``path`` (Snakemake ``log:``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        handlers=handlers,
        force=True,
    )
