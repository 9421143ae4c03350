"""Import ``tests/data/bad/make_corpus.py`` (a script, not a package) once, for the tests
that build bad inputs from it (bad-input, DICOM and privacy tests)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CORPUS_SCRIPT = Path(__file__).parent / "data" / "bad" / "make_corpus.py"


def load_corpus_module() -> ModuleType:
    if "make_corpus" in sys.modules:
        return sys.modules["make_corpus"]
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS_SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["make_corpus"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
