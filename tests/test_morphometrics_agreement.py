"""The pure parts of ``benchmarks/morphometrics_agreement.py``: Bland-Altman statistics on
numbers worked by hand, and the pairing of expert structures with model instances on a tiny
hand-drawn volume (synthetic arrays, no model, no real data)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "morphometrics_agreement.py"
_SPEC = importlib.util.spec_from_file_location("morphometrics_agreement", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
agreement = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(agreement)


def test_bland_altman_by_hand():
    # differences model - expert: 1, 3, -1, 1 -> mean 1; squared deviations 0, 4, 4, 0 ->
    # sample variance 8 / 3, SD 1.63299; limits 1 -+ 1.96 * 1.63299 = -2.20066, 4.20066
    expert = [10.0, 20.0, 30.0, 40.0]
    model = [11.0, 23.0, 29.0, 41.0]
    ba = agreement.bland_altman(expert, model)
    assert ba.n == 4
    assert ba.bias == pytest.approx(1.0)
    assert ba.sd == pytest.approx(math.sqrt(8 / 3))
    assert ba.lower == pytest.approx(1 - 1.96 * math.sqrt(8 / 3))
    assert ba.upper == pytest.approx(-2.200660 + 2 * 3.200660, abs=1e-5)


def test_bland_altman_drops_unpaired_nan_and_sign():
    # the NaN pair is dropped; model below expert gives a negative bias
    ba = agreement.bland_altman([5.0, np.nan, 7.0], [4.0, 1.0, 5.0])
    assert ba.n == 2
    assert ba.bias == pytest.approx(-1.5)
    assert ba.sd == pytest.approx(math.sqrt(0.5))
    one = agreement.bland_altman([1.0], [2.0])
    assert one.n == 1 and one.bias == 1.0 and math.isnan(one.sd) and math.isnan(one.upper)
    assert agreement.bland_altman([], []).n == 0
    with pytest.raises(ValueError, match="unpaired"):
        agreement.bland_altman([1.0, 2.0], [1.0])


def test_pairs_need_iou_above_half_and_the_right_kind():
    # expert: two bodies (ids 1, 2) stacked along SI; model: id 5 matches body 1 exactly,
    # id 7 covers only a third of body 2 (IoU 1/3), id 6 is of another kind (not offered)
    ref = np.zeros((2, 12, 4), dtype=np.uint16)
    ref[:, 0:4] = 1
    ref[:, 6:12] = 2
    inst = np.zeros_like(ref)
    inst[:, 0:4] = 5
    inst[:, 6:8] = 7
    inst[:, 8:12] = 6
    assert agreement._pairs(ref, inst, [5, 7]) == {1: 5}
    assert agreement._pairs(ref, inst, [5, 6, 7]) == {1: 5, 2: 6}
