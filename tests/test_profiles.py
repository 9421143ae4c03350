"""The Snakemake profiles: `snakemake --profile slurm` as the README spells it, and the
workflow profile (profiles/default) never shadowing the cluster profile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from spinecensus.census.cluster import ProfileConflict, link_slurm_profile

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _keys(profile: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())


def test_workflow_profile_sets_no_key_of_the_slurm_profile():
    """Snakemake loads profiles/default on every run and its values win over --profile's
    (measured, docs/cluster.md): a key in both would silently override the cluster's."""
    default, slurm = _keys("default"), _keys("slurm")
    assert default and slurm
    assert set(default) & set(slurm) == set()
    assert "cores" not in default and "executor" not in default


def test_link_slurm_profile_is_idempotent_and_never_overwrites(tmp_path):
    src = REPO / "profiles" / "slurm"
    link, created = link_slurm_profile(src, tmp_path / "snakemake")
    assert created and link.is_symlink() and link.resolve() == src.resolve()
    assert link_slurm_profile(src, tmp_path / "snakemake") == (link, False)

    other = tmp_path / "site" / "slurm"
    other.mkdir(parents=True)
    (other / "config.yaml").write_text("executor: slurm\n")
    with pytest.raises(ProfileConflict, match="not this repository's"):
        link_slurm_profile(other, tmp_path / "snakemake")  # a link to another profile
    assert link.resolve() == src.resolve()

    taken = tmp_path / "taken"
    (taken / "slurm").mkdir(parents=True)
    (taken / "slurm" / "config.yaml").write_text("jobs: 1\n")
    with pytest.raises(ProfileConflict, match="a folder or file"):
        link_slurm_profile(src, taken)
    assert (taken / "slurm" / "config.yaml").read_text() == "jobs: 1\n"


def test_cli_refuses_a_different_profile(tmp_path):
    (tmp_path / "snakemake" / "slurm").mkdir(parents=True)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path))
    res = subprocess.run(
        [str(BIN / "spinecensus"), "slurm-profile"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1
    assert f"{tmp_path}/snakemake/slurm exists" in res.stdout


@pytest.mark.e2e
def test_readme_cluster_command_plans_gpu_segmentation_and_grouped_analyses(tmp_path):
    """Synthetic demo config (4 subjects): after `make slurm-profile`'s step, the README's
    `snakemake --profile slurm` (dry run) asks a GPU per segment job and groups analyses."""
    work = tmp_path / "wf"
    work.mkdir()
    for name in ("Snakefile", "config.yaml", "workflow", "envs", "profiles"):
        src = REPO / name
        copy = shutil.copytree if src.is_dir() else shutil.copy2
        copy(src, work / name)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["synthetic"].update(n=4, preset="tiny")
    cfg["segmentation"].update(device="cuda", subjects_per_job=2)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    setup = subprocess.run(
        ["spinecensus", "slurm-profile"], env=env, capture_output=True, text=True
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    res = subprocess.run(
        ["snakemake", "--profile", "slurm", "-n"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "Using profiles slurm and workflow specific profile profiles/default" in out
    segment = [block for block in out.split("rule ")[1:] if block.startswith("segment:")]
    assert len(segment) == 2, out[-3000:]
    assert all("gpu=1" in block for block in segment)
    assert out.count("Group job subjects") == 1  # the 4 analyses in one group job
