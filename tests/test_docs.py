"""The docs name only what exists: every dotted ``spinecensus.…`` name and every backticked
``module.function`` in README.md and docs/*.md must resolve in the package (or, for
backticked config keys such as ``labeling.weights``, in config.yaml / its schema)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import yaml

import spinecensus

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

DOTTED = re.compile(r"\bspinecensus(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"from (spinecensus[\w.]*) import ([\w, ]+)")
BACKTICKED = re.compile(r"`([a-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\([^`]*\))?`")
#: a dotted token ending like this is a file name, not code
FILE_SUFFIXES = {
    "csv",
    "gz",
    "html",
    "json",
    "md",
    "nii",
    "npz",
    "onnx",
    "parquet",
    "png",
    "pt",
    "py",
    "smk",
    "toml",
    "tsv",
    "txt",
    "yaml",
    "yml",
}
#: config sections that accept free-form keys (documented in the rules' comment headers)
FREE_FORM_CONFIG = {"train", "train_real"}


def _modules() -> dict[str, list[str]]:
    """Last dotted component -> full module names, for every module of the package."""
    found: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(spinecensus.__path__, "spinecensus."):
        if info.name.endswith("__main__"):
            continue
        found.setdefault(info.name.rsplit(".", 1)[1], []).append(info.name)
    return found


MODULES = _modules()


def resolve(dotted: str) -> bool:
    """Import the longest module prefix of ``dotted`` and look the rest up as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _config_paths() -> set[str]:
    """Dotted key paths of config.yaml and of the config schema's properties."""
    paths: set[str] = set()

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                paths.add(f"{prefix}{key}")
                walk(value, f"{prefix}{key}.")

    walk(yaml.safe_load((REPO / "config.yaml").read_text()), "")
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())

    def walk_schema(node, prefix: str) -> None:
        for key, value in (node.get("properties") or {}).items():
            paths.add(f"{prefix}{key}")
            walk_schema(value, f"{prefix}{key}.")

    walk_schema(schema, "")
    return paths


CONFIG_PATHS = _config_paths()


#: the code that writes table metadata: the census, the review's provenance and the
#: measurements' units (``spinecensus.measure.morphometrics.UNITS_KEY``)
CENSUS_SOURCE = "\n".join(
    p.read_text()
    for folder in ("census", "review", "measure")
    for p in sorted((REPO / "spinecensus" / folder).glob("*.py"))
)


def is_table_metadata_key(name: str) -> bool:
    """``spinecensus.<key>`` of the Parquet metadata: written by the census code, either
    literally, as a keyword of ``table_metadata(config, <key>=...)`` or as a key of its
    ``extra`` dict."""
    key = name.split(".", 1)[1]
    if "." in key:
        return False
    pattern = rf"[\"']spinecensus\.{key}[\"']|\b{key}=|\[[\"']{key}[\"']\] ="
    return bool(re.search(pattern, CENSUS_SOURCE))


def unresolved_names(text: str) -> list[str]:
    """Names in ``text`` that do not exist."""
    names = [n for n in DOTTED.findall(text) if n.rsplit(".", 1)[1] not in FILE_SUFFIXES]
    bad = [n for n in names if not resolve(n) and not is_table_metadata_key(n)]
    for module, imported in FROM_IMPORT.findall(text):  # code examples
        for name in (part.strip().split(" as ")[0] for part in imported.split(",")):
            if name and not resolve(f"{module}.{name}"):
                bad.append(f"{module}.{name}")
    for token in BACKTICKED.findall(text):
        head = token.split(".", 1)[0]
        if token.rsplit(".", 1)[1] in FILE_SUFFIXES:
            continue
        if head not in MODULES or token.startswith("spinecensus."):
            continue  # a file name, a config key of no module's name, or checked above
        if any(resolve(f"{module}.{token.split('.', 1)[1]}") for module in MODULES[head]):
            continue
        if token in CONFIG_PATHS or head in FREE_FORM_CONFIG:
            continue
        bad.append(token)
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_code_name_in_the_docs_exists(doc):
    assert unresolved_names(doc.read_text()) == []


def test_a_misspelt_name_is_caught():
    text = "Call `counting.count_labels` and spinecensus.split.split_instances."
    assert unresolved_names(text) == []
    typo = "Call `counting.count_labelz` and spinecensus.split.split_instancez."
    assert unresolved_names(typo) == ["spinecensus.split.split_instancez", "counting.count_labelz"]
    code = "from spinecensus.naming.counting import count_labels, count_labelz"
    assert unresolved_names(code) == ["spinecensus.naming.counting.count_labelz"]
