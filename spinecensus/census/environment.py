"""The job process: its environment, its age at start and how it reports an error.

:func:`prepare_job_environment` runs in the Snakemake process (parse time) so that every job's
``python -m spinecensus.census ...`` finds this interpreter and package; :func:`process_age_s`
and :func:`one_line` serve the jobs themselves (timings, per-subject failure messages).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from spinecensus.io import InputError


def prepare_job_environment(repo: str | os.PathLike[str]) -> None:
    """Make jobs' ``python -m spinecensus.census`` find this interpreter and package.

    Called by the Snakefile at parse time: puts the running interpreter's ``bin`` first on
    ``PATH`` (so ``.venv/bin/snakemake`` works without activating the venv) and ``repo`` on
    ``PYTHONPATH`` (so conda environments, which only hold the dependencies, import the
    checkout's sources).  A conda environment activated per job prepends its own ``bin``.
    """
    env = os.environ
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p),
    )


def one_line(exc: BaseException) -> str:
    """An exception as one clear line (InputError already names file and problem)."""
    msg = str(exc).strip().replace("\n", " | ")
    if isinstance(exc, InputError):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def process_age_s() -> float | None:
    """Seconds since this process started (interpreter start-up + imports included).

    Linux: ``/proc/uptime`` minus the process start in clock ticks since boot (both 10 ms
    resolution).  ``psutil.Process().create_time()`` is not used first: it adds the boot time,
    which the kernel reports in whole seconds, so its ages are off by up to a second.
    """
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # psutil missing or restricted /proc: timing is informative only
        return None
