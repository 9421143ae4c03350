"""Atomic writes: an output appears under its final name complete, or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it.

    Linux reports it in ``/proc/self/status``; elsewhere it can only be read by setting it,
    so it is set and restored at once.  Read per call (not at import): importing the
    package changes no process-wide state, and a umask set later by the host is honoured.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Keeps the final suffixes (``.nii.gz``, ``.parquet``) so writers that infer the format
    from the name still work.  On error the temporary file is removed and ``path`` is
    untouched, so a crash never leaves a half-written output under the final name.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(dest.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.name.split('.')[0]}.", suffix=suffix, dir=dest.parent
    )
    os.close(fd)
    # mkstemp creates 0600; give the output the permissions a plain open() would (umask)
    os.chmod(tmp, 0o666 & ~current_umask())
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(obj: object, path: str | os.PathLike[str]) -> None:
    """Write JSON atomically (sorted keys are *not* forced: order is meaningful)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
