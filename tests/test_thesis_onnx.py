"""Published-thesis ONNX models without a sidecar (issue 20 item 5): thesis layout, the
published package's crop / pad, and per-volume min-max normalisation after it.

The reference here is written from the package's description, independently of
``spinecensus.segment.grid``: ``_crop_and_pad_to_shape`` (``spine_segmentation`` 0.3.2
inference: AP centre crop ``w // 2 - 320 // 2``, SI ``0:896``, AP padding split
``(t - w) // 2`` before, SI padding after) on an array in its order (slices, AP P->A,
SI I->S), then ``x -= x.min(); x /= x.max()`` (``datasets/sample.py``).  Synthetic data: tiny
preset subjects and a tiny network trained for a few steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spinecensus import synthetic as syn
from spinecensus.segment.network import build_network, thesis_adapter
from spinecensus.segment.onnx_export import export_onnx
from spinecensus.segment.predict import SegmentationModel
from spinecensus.segment.spec import ModelSpec
from spinecensus.segment.weights import load_model, save_weights, sidecar_path

torch.set_num_threads(1)

SI, AP = 96, 64  # the tiny model's input (thesis: 896 x 320)


def to_thesis_order(canon: np.ndarray) -> np.ndarray:
    """Canonical (..., slice, S->I, A->P) -> the package's (..., slice, P->A, I->S)."""
    return np.swapaxes(canon[..., ::-1, ::-1], -1, -2)


def crop_pad(arr: np.ndarray, width: int = AP, height: int = SI) -> np.ndarray:
    """The package's crop / pad of (..., slices, AP, SI) to (..., slices, width, height)."""
    w = arr.shape[-2]
    start = max(0, w // 2 - width // 2)
    arr = arr[..., start : start + width, 0:height]
    w, h = arr.shape[-2:]
    before = max(0, (width - w) // 2)
    pad = [(0, 0)] * (arr.ndim - 2) + [(before, width - w - before), (0, height - h)]
    return np.pad(arr, pad)


def thesis_input(canon: np.ndarray) -> np.ndarray:
    """(slices, 3, AP, SI) network input: crop / pad, min-max, neighbouring slices."""
    x = crop_pad(to_thesis_order(canon)).astype(np.float32)
    x -= x.min()
    x /= x.max()
    idx = np.clip(np.arange(len(x))[:, None] + np.array([-1, 0, 1]), 0, len(x) - 1)
    return x[idx]


def _spec(**kw) -> ModelSpec:
    base = dict(encoder="resnet18", encoder_depth=3, decoder_channels=(16, 8, 8),
                target_spacing_mm=None, input_size=(SI, AP))  # fmt: skip
    return ModelSpec(**{**base, **kw})


class Recorder(torch.nn.Module):
    """Records what the network is fed and predicts background everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.zeros((x.shape[0], 3, *x.shape[2:]))


@pytest.mark.parametrize("shape", [(3, 130, 81), (3, 130, 80), (2, 50, 33), (2, 40, 90)])
def test_thesis_spec_feeds_what_the_package_feeds(shape):
    """Layout, crop / pad (odd and even sizes, larger and smaller than the input) and
    min-max after the crop: the network's input equals the reference's exactly."""
    vol = np.random.default_rng(1).uniform(50, 900, shape).astype(np.float32)
    vol[:, 5:9, 7:11] = 4000.0  # a bright spot the crop removes (AP start or SI top)
    rec = Recorder()
    spec = _spec(layout="thesis", crop="thesis", normalisation="minmax")
    SegmentationModel.from_network(rec, spec, batch_size=8).predict(vol, (3.0, 1.0, 1.0))
    fed = torch.cat(rec.seen).numpy()
    np.testing.assert_allclose(fed, thesis_input(vol), atol=1e-6)


@pytest.fixture(scope="module")
def trained_bare_onnx(tmp_path_factory):
    """A tiny U-Net trained (40 steps, synthetic) on thesis-normalised inputs in the thesis
    layout, exported to a bare ONNX file (no sidecar)."""
    torch.manual_seed(0)
    subjects = [syn.generate_subject(s, "normal", syn.SyntheticConfig.tiny()) for s in (1, 2)]
    x = np.concatenate([thesis_input(s.image) for s in subjects])
    y = np.concatenate([crop_pad(to_thesis_order(s.semantic)) for s in subjects])
    spec = _spec(normalisation="minmax", crop="thesis")
    net = build_network(spec)
    model = thesis_adapter(net).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    weight = torch.tensor([0.2, 1.0, 1.0])  # bodies and discs are a few % of the voxels
    losses = []
    for step in range(40):
        idx = torch.from_numpy(np.random.default_rng(step).choice(len(xt), 6, replace=False))
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx], weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    d = tmp_path_factory.mktemp("thesis")
    save_weights(net, spec, d / "tiny_minmax.pt")
    bare = export_onnx(d / "tiny_minmax.pt", d / "bare.onnx", layout="thesis", sidecar=False)
    return bare, thesis_adapter(net.eval()), losses


def test_bare_export_has_no_sidecar_and_is_read_as_thesis(trained_bare_onnx):
    bare, _, losses = trained_bare_onnx
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])  # it did train
    assert not sidecar_path(bare).exists()
    m = load_model(bare)
    assert (m.spec.layout, m.spec.normalisation, m.spec.crop) == ("thesis", "minmax", "thesis")
    assert m.spec.input_size == (SI, AP) and m.spec.target_spacing_mm is None


@pytest.mark.parametrize("window", ["cropped", "padded"])
def test_bare_onnx_predicts_as_the_torch_model_on_minmax_input(trained_bare_onnx, window):
    """Through the sidecar-less ONNX path a held-out synthetic subject gets the torch model's
    probabilities on thesis-normalised input (within 1e-4), and visibly other ones when
    the volume is z-scored instead (the normalisation matters)."""
    bare, torch_model, _ = trained_bare_onnx
    vol = syn.generate_subject(7, "normal", syn.SyntheticConfig.tiny()).image
    if window == "padded":  # smaller than the input on both axes
        vol = vol[:, -80:, 10:60]
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(thesis_input(vol))).softmax(1).numpy()
    ref = np.moveaxis(ref, 1, 0)  # (C, slices, AP, SI)
    seen = crop_pad(to_thesis_order(np.ones(vol.shape, bool)))  # the voxels, not padding

    def thesis_frame(proba: np.ndarray) -> np.ndarray:
        return crop_pad(to_thesis_order(proba))

    onnx = thesis_frame(load_model(bare).predict_proba(vol, (4.0, 3.0, 3.0)))
    np.testing.assert_allclose(onnx[:, seen], ref[:, seen], atol=1e-4)
    assert (ref.argmax(0)[seen] > 0).mean() > 0.01  # it finds bodies / discs
    zs = thesis_frame(
        load_model(bare, normalisation="robust_zscore").predict_proba(vol, (4.0, 3.0, 3.0))
    )
    assert np.abs(zs - onnx)[:, seen].mean() > 0.02
    assert (zs.argmax(0)[seen] != onnx.argmax(0)[seen]).mean() > 0.01


def test_bare_export_refuses_weights_described_otherwise(tmp_path):
    """Weights trained with the z-score and a centred crop cannot be exported bare (a reader
    would feed them min-max input)."""
    spec = _spec()
    save_weights(build_network(spec), spec, tmp_path / "z.pt")
    with pytest.raises(ValueError, match="normalisation 'robust_zscore'"):
        export_onnx(tmp_path / "z.pt", tmp_path / "z.onnx", layout="thesis", sidecar=False)
    assert not (tmp_path / "z.onnx").exists()
