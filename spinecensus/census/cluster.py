"""Cluster set-up: make ``snakemake --profile slurm`` find this repository's SLURM profile.

Snakemake resolves ``--profile NAME`` (a name, not a path) in the current directory, then in
the user's Snakemake config folder (``$XDG_CONFIG_HOME/snakemake``, by default
``~/.config/snakemake``), then in the site folder (``/etc/xdg/snakemake``).
:func:`link_slurm_profile` links ``profiles/slurm`` of the checkout it runs in into the user
folder as ``slurm``, once: run again it changes nothing, and it refuses to replace a different
``slurm`` profile that is already there (a site's own, or another checkout's), saying which.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: the SLURM profile of the repository whose root is the current directory
SLURM_PROFILE = Path("profiles") / "slurm"


class ProfileConflict(RuntimeError):
    """A different ``slurm`` profile already exists where ours would be linked."""


def user_profile_dir() -> Path:
    """The folder where Snakemake looks up profile names for this user.

    Snakemake uses ``platformdirs.AppDirs("snakemake", "snakemake").user_config_dir``;
    on Linux that is ``$XDG_CONFIG_HOME/snakemake`` (default ``~/.config/snakemake``).
    """
    from platformdirs import AppDirs

    return Path(AppDirs("snakemake", "snakemake").user_config_dir)


def link_slurm_profile(
    source: str | os.PathLike[str] = SLURM_PROFILE,
    profiles_dir: str | os.PathLike[str] | None = None,
    name: str = "slurm",
) -> tuple[Path, bool]:
    """Link ``source`` (default: ``profiles/slurm`` below the current directory, the
    repository root) as ``<profiles_dir>/<name>``; return the link and whether it is new.

    Idempotent: an existing link to the same folder is left alone (returns ``False``).
    Raises :class:`ProfileConflict` if ``<profiles_dir>/<name>`` exists and is anything else.
    """
    src = Path(source).resolve()
    if not (src / "config.yaml").is_file():
        raise FileNotFoundError(f"{src}: no config.yaml, not a Snakemake profile")
    folder = Path(profiles_dir) if profiles_dir is not None else user_profile_dir()
    link = folder / name
    if link.is_symlink() or link.exists():
        if link.resolve() == src:
            return link, False
        what = f"a link to {os.readlink(link)}" if link.is_symlink() else "a folder or file"
        raise ProfileConflict(
            f"{link} exists and is {what}, not this repository's {src}; left unchanged. "
            f"Remove or rename it to link this one, or run with --profile {src}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    link.symlink_to(src, target_is_directory=True)
    return link, True


def _cmd_slurm_profile(args: argparse.Namespace) -> int:
    try:
        link, created = link_slurm_profile(args.source, profiles_dir=args.profiles_dir)
    except (ProfileConflict, FileNotFoundError) as exc:
        print(f"spinecensus slurm-profile: {exc}")
        return 1
    state = "linked" if created else "already linked"
    print(f"{state}: {link} -> {link.resolve()}  (now: snakemake --profile slurm)")
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "slurm-profile",
        help="link profiles/slurm as the user's Snakemake profile 'slurm' (once; never overwrites)",
    )
    p.add_argument(
        "--source",
        default=str(SLURM_PROFILE),
        help="the profile folder to link (default: profiles/slurm; run from the repository root)",
    )
    p.add_argument(
        "--profiles-dir",
        default=None,
        help="Snakemake's user profile folder (default: $XDG_CONFIG_HOME/snakemake)",
    )
    p.set_defaults(func=_cmd_slurm_profile)
