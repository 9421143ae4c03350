"""Provenance of the cohort tables: what produced them, stored in every table's metadata.

:func:`provenance` gives the ``spinecensus.*`` metadata keys beyond the pipeline version and
config hash that :func:`spinecensus.census.tables.table_metadata` always writes: the git
commit of the checkout the package runs from, the sha256 of the segmentation and labeling
weights the config names, and the sha256 and row count of the overrides file.  A value
that does not apply or is not available is ``""`` (no git checkout, ``segmentation.method:
ground_truth``, no labeler, no overrides file), so every table has every key.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: the checkout the package runs from (a git work tree when not installed from a wheel)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def git_commit(root: str | os.PathLike[str] = PACKAGE_ROOT) -> str:
    """HEAD commit of the git work tree whose top is ``root``, ``+dirty`` appended when
    tracked files differ from it; ``""`` when ``root`` is not one (or without git)."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20
        )
        if out.returncode != 0:
            raise OSError(out.stderr.strip())
        return out.stdout.strip()

    if not (Path(root) / ".git").exists():  # e.g. installed into a venv inside a checkout
        return ""
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}+dirty" if dirty else commit


def file_sha256(path: str | os.PathLike[str] | None) -> str:
    """sha256 (hex) of a file's bytes; ``""`` for no path."""
    if not path:
        return ""
    from spinecensus.segment.weights import sha256_file

    return sha256_file(path)


def weights_paths(config: Mapping[str, Any] | None) -> tuple[str, str]:
    """The segmentation and labeling weights files the config names (``""`` where none:
    no config, ``segmentation.method: ground_truth``, no ``labeling.weights``)."""
    if not config:
        return "", ""
    from spinecensus.segment.weights import weights_file

    seg = dict(config.get("segmentation") or {})
    lab = dict(config.get("labeling") or {})
    seg_path = ""
    if seg and seg.get("method", "model") == "model":
        seg_path = str(weights_file(seg.get("weights") or "shipped", "segmentation"))
    lab_path = str(weights_file(lab["weights"], "labeling")) if lab.get("weights") else ""
    return seg_path, lab_path


def provenance(
    config: Mapping[str, Any] | None, overrides: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """The provenance metadata of the cohort tables (keys without the ``spinecensus.``
    prefix; values strings, ``""`` where not applicable).

    ``overrides_rows`` counts the file's decision rows (header and blank lines not counted).
    A weights file the config names that does not exist is an error of the run's set-up
    (``FileNotFoundError``): the workflow checks weights before any job.
    """
    seg, lab = weights_paths(config)
    rows = 0
    if overrides:
        lines = Path(overrides).read_text(encoding="utf-8-sig").splitlines()[1:]
        rows = sum(1 for line in lines if line.strip())
    return dict(
        git_commit=git_commit(),
        segmentation_weights_sha256=file_sha256(seg),
        labeling_weights_sha256=file_sha256(lab),
        overrides_sha256=file_sha256(overrides),
        overrides_rows=str(rows),
    )
