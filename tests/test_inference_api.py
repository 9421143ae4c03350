"""The published-package-compatible API (``spinecensus.SegmentationInference``).

Array-order tests use a synthetic phantom (``tests/spine_phantom.py``) and a stub
"network" that returns the phantom's semantic mask, so orientation handling is checked
exactly; the shipped-weights tests run the real demo model on fresh synthetic subjects.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from spine_phantom import make_phantom  # noqa: E402

import spinecensus  # noqa: E402
from spinecensus.segment import api as I  # noqa: E402
from spinecensus.segment.network import build_network  # noqa: E402
from spinecensus.segment.spec import ModelSpec  # noqa: E402
from spinecensus.segment.weights import save_weights  # noqa: E402

torch.set_num_threads(1)


class IdentityModel:
    """Stands in for the network: the 'image' already is the semantic mask (0/1/2)."""

    def predict(self, volume, spacing_mm):
        return np.rint(np.asarray(volume)).astype(np.uint8)

    predict_semantic = predict


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    spec = ModelSpec(encoder_depth=3, decoder_channels=(16, 8, 8), input_size=(64, 32))
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    save_weights(build_network(spec), spec, path)
    return path


@pytest.fixture(scope="module")
def stub_inference(tiny_weights):
    inf = I.SegmentationInference(segmentation_device="CPU", weights=tiny_weights)
    inf.model = IdentityModel()  # type: ignore[assignment]
    return inf


def canonical_to_ras(c: np.ndarray) -> np.ndarray:
    """Canonical (slice, S->I, A->P) -> the published order (slice, P->A, I->S)."""
    return np.ascontiguousarray(c[:, ::-1, ::-1].transpose(0, 2, 1))


def test_lazy_export():
    assert spinecensus.SegmentationInference is I.SegmentationInference


@pytest.mark.parametrize(
    ("name", "expect"), [("CPU", "cpu"), ("GPU", "cuda"), ("cuda:1", "cuda:1"), ("gpu:0", "cuda:0")]
)
def test_resolve_device(name, expect):
    assert I.resolve_device(name) == expect


def test_numpy_input_in_published_order(stub_inference):
    """RAS-ordered array (top of the spine at the end of the last axis): id 1 is C2 at the
    top, outputs come back in the input's order and shape."""
    ph = make_phantom(spacing_mm=(4.0, 2.0, 2.0))
    vol = canonical_to_ras(ph.semantic.astype(np.float32))
    res = stub_inference.segment(vol, spacing=(4.0, 2.0, 2.0))
    assert res.semantic_segmentation.shape == vol.shape
    np.testing.assert_array_equal(res.semantic_segmentation, vol.astype(np.uint8))
    assert res.id_to_label[1] == "C2" and res.id_to_label[2] == "C2-C3"
    assert res.id_to_label[max(res.id_to_label)] == "S1"
    inst = res.instance_segmentation
    assert inst.shape == vol.shape
    z_c2 = np.nonzero(inst == 1)[2].mean()
    z_s1 = np.nonzero(inst == max(res.id_to_label))[2].mean()
    assert z_c2 > z_s1  # the top of the spine is at the END of the last axis
    np.testing.assert_array_equal(
        inst, canonical_to_ras(ph.instances)
    )  # same instances as the phantom's ground truth
    assert res.transitional_status == "normal"


def test_lumbar_field_of_view_names_from_the_sacrum(tiny_weights):
    """Synthetic normal phantom read as a lumbar scan: the names come upward from the
    sacrum (for a normal spine the same as counting from C2), the status is withheld."""
    inf = I.SegmentationInference(weights=tiny_weights, field_of_view="lumbar")
    inf.model = IdentityModel()  # type: ignore[assignment]
    ph = make_phantom(spacing_mm=(4.0, 2.0, 2.0))
    res = inf.segment(canonical_to_ras(ph.semantic.astype(np.float32)), spacing=(4.0, 2.0, 2.0))
    assert res.id_to_label == ph.id_to_name
    assert res.transitional_status == "undetermined"
    assert any(f.startswith("small_field_of_view") for f in res.qc_flags)
    with pytest.raises(ValueError, match="field_of_view"):
        I.SegmentationInference(weights=tiny_weights, field_of_view="cervical")


def test_thesis_layout_labeler_is_read_through_the_union_columns(tiny_weights):
    """A stand-in thesis 47-class labeler (its own column order, no L6; synthetic phantom):
    its per-instance log-probabilities reach the sequence search as the union's columns,
    and its names are the phantom's."""
    from spinecensus.anatomy import labels

    own = ("background", *labels.structures("normal"))
    ph = make_phantom(spacing_mm=(4.0, 2.0, 2.0))

    class ThesisLabeler:
        spec = ModelSpec(task="labeling", classes=own)

        def instance_log_probs(self, volume, spacing_mm, instances):
            n = int(instances.max())
            p = np.full((n, len(own) - 1), 0.01)
            for i in range(n):
                p[i, own.index(ph.id_to_name[i + 1]) - 1] = 1.0
            return np.log(p / p.sum(1, keepdims=True))

    inf = I.SegmentationInference(weights=tiny_weights)
    inf.model = IdentityModel()  # type: ignore[assignment]
    inf.labeler = ThesisLabeler()  # type: ignore[assignment]
    res = inf.segment(canonical_to_ras(ph.semantic.astype(np.float32)), spacing=(4.0, 2.0, 2.0))
    assert res.id_to_label == ph.id_to_name
    assert res.decided_by == "count+model"


def test_nibabel_input_uses_affine(stub_inference):
    """A nibabel image stored as LPI (any orientation) is segmented in its own order."""
    ph = make_phantom(spacing_mm=(4.0, 2.0, 2.0))
    ras = canonical_to_ras(ph.semantic.astype(np.float32))
    lpi = ras[:, ::-1, :]  # flip A/P: stored L->R, A->P, I->S
    aff = np.diag([4.0, -2.0, 2.0, 1.0])
    res = stub_inference.segment(nib.Nifti1Image(np.ascontiguousarray(lpi), aff))
    np.testing.assert_array_equal(res.semantic_segmentation, lpi.astype(np.uint8))
    np.testing.assert_array_equal(
        res.instance_segmentation, canonical_to_ras(ph.instances)[:, ::-1]
    )


def test_only_2class(stub_inference):
    ph = make_phantom(spacing_mm=(4.0, 2.0, 2.0))
    res = stub_inference.segment(canonical_to_ras(ph.semantic.astype(np.float32)), True)
    assert res.instance_segmentation is None and res.id_to_label == {}


def test_tiled_slice_with_real_network(tiny_weights):
    """``np.tile(slice2d, (3, 1, 1))`` works end to end with a real (random) network."""
    inf = I.SegmentationInference(weights=tiny_weights)
    sl = np.random.default_rng(0).random((40, 90)).astype(np.float32)
    res = inf.segment(np.tile(sl, (3, 1, 1)))
    assert res.semantic_segmentation.shape == (3, 40, 90)
    assert res.semantic_segmentation.dtype == np.uint8
    assert set(np.unique(res.semantic_segmentation)) <= {0, 1, 2}


def test_rejects_bad_arguments(tiny_weights):
    with pytest.raises(ValueError, match="output_same_shape_as_input"):
        I.SegmentationInference(weights=tiny_weights, output_same_shape_as_input=False)
    with pytest.raises(ValueError, match="unknown device"):
        I.SegmentationInference(segmentation_device="TPU", weights=tiny_weights)
    inf = I.SegmentationInference(weights=tiny_weights)
    from spinecensus.io import InputError

    with pytest.raises(InputError):
        inf.segment(np.zeros((4, 5)))
    with pytest.raises(InputError, match="constant"):
        inf.segment(np.ones((3, 8, 8)))
