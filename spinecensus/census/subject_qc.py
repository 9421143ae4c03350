"""Per-subject QC pictures: the labeled mid-sagittal slice, or a card for a failed subject.

* :func:`subject_png` — the mid-sagittal slice (canonical ``[slice, SI, AP]`` order, head at
  the top, anterior on the left) with the labeled instance overlay and structure names, and
  each measured body's heights and endplate lines (:func:`draw_landmarks`).
* :func:`failure_png` — a card naming the failed rule and the error (so a QC browser shows
  failures in place).

The subject PNG is drawn with Pillow (cheap to import in a per-subject job); the failure card
uses matplotlib (:mod:`spinecensus.census.pyplot_png`), imported only when a subject fails.

The image slice behind the overlay comes from the ``segment`` job, which has the image in
memory: :func:`write_qc_slice` stores the windowed mid-sagittal slice (uint8, ~0.1-0.3 MB,
uncompressed ``.npz``) next to the mask, and the analysis reads it (:func:`read_qc_slice`)
instead of decoding the whole image again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from spinecensus.anatomy.labels import is_vertebra
from spinecensus.census.pyplot_png import pyplot, save_png
from spinecensus.io import atomic_path


def grey_slice(image_slice: np.ndarray) -> np.ndarray:
    """A 2-D image slice windowed to its 1st-99th percentile, as uint8 grey levels 0-255."""
    im = np.asarray(image_slice, dtype=np.float32)
    lo, hi = np.percentile(im, [1, 99]) if im.size else (0.0, 1.0)
    return (np.clip((im - lo) / (hi - lo if hi > lo else 1.0), 0, 1) * 255).astype(np.uint8)


def write_qc_slice(path: str | os.PathLike[str], image: np.ndarray, mask: np.ndarray) -> None:
    """Store the QC background of a subject: the slice (axis 0) through the middle of
    ``mask``'s foreground (:func:`mid_sagittal_index`) of ``image`` (both canonical order),
    windowed to uint8 (:func:`grey_slice`), with its index; atomically."""
    k = min(mid_sagittal_index(np.asarray(mask)), image.shape[0] - 1)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, index=np.int64(k), grey=grey_slice(image[k]))


def read_qc_slice(path: str | os.PathLike[str]) -> tuple[int, np.ndarray] | None:
    """``(slice index, uint8 grey slice)`` written by :func:`write_qc_slice`, or None when
    the file is missing or unreadable (the picture then falls back to the image)."""
    try:
        with np.load(path) as z:
            return int(z["index"]), np.asarray(z["grey"])
    except (OSError, ValueError, KeyError):
        return None


def mid_sagittal_index(instances: np.ndarray) -> int:
    """Slice (axis 0) through the middle of the labeled spine: the foreground-weighted mean
    slice, or the geometric middle when the mask is empty."""
    per_slice = np.count_nonzero(instances.reshape(instances.shape[0], -1), axis=1)
    if per_slice.sum() == 0:
        return instances.shape[0] // 2
    return int(round(float(np.average(np.arange(len(per_slice)), weights=per_slice))))


#: 20 distinct overlay colours (RGB 0-255), the "tab20" palette; instance ``i`` gets colour
#: ``i % 20``.
_PALETTE = np.array(
    [
        (31, 119, 180), (174, 199, 232), (255, 127, 14), (255, 187, 120), (44, 160, 44),
        (152, 223, 138), (214, 39, 40), (255, 152, 150), (148, 103, 189), (197, 176, 213),
        (140, 86, 75), (196, 156, 148), (227, 119, 194), (247, 182, 210), (127, 127, 127),
        (199, 199, 199), (188, 189, 34), (219, 219, 141), (23, 190, 207), (158, 218, 229),
    ],
    dtype=np.float32,
)  # fmt: skip


def _centroids(
    inst: np.ndarray, sl: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, shown) per instance id 0..n-1: in-slice centroid where the instance is in
    the slice, else its projected whole-volume centroid (``shown`` False for absent ids)."""
    ids = np.arange(n)
    rows, cols = np.nonzero(sl)
    labs = sl[rows, cols]
    cnt = np.bincount(labs, minlength=n).astype(float)
    r_mean = np.bincount(labs, weights=rows, minlength=n) / np.maximum(cnt, 1)
    c_mean = np.bincount(labs, weights=cols, minlength=n) / np.maximum(cnt, 1)
    missing = (cnt == 0) & (ids > 0)
    if missing.any():
        _, rr, cc = np.nonzero(inst)
        vl = inst[inst > 0]
        cnt3 = np.bincount(vl, minlength=n).astype(float)
        r_mean[missing] = (np.bincount(vl, weights=rr, minlength=n) / np.maximum(cnt3, 1))[missing]
        c_mean[missing] = (np.bincount(vl, weights=cc, minlength=n) / np.maximum(cnt3, 1))[missing]
        missing &= cnt3 > 0
    return r_mean, c_mean, (cnt > 0) | missing


#: colour (RGB) of the measured heights (anterior, middle, posterior) on the QC picture,
#: and of the endplate lines: pure cyan and magenta, which the grey-and-palette blend of
#: the overlay never produces
HEIGHT_RGB = (0, 255, 255)
ENDPLATE_RGB = (255, 0, 255)
#: colour of the name of a body with a Genant grade of 1 or more
FRACTURE_RGB = (255, 64, 64)
#: (from, to) indices into the six points of
#: :data:`spinecensus.measure.heights.POINTS`: the heights, then the endplates
_HEIGHT_SEGMENTS = ((0, 2), (4, 5), (1, 3))
_ENDPLATE_SEGMENTS = ((0, 1), (2, 3))


def landmark_pixels(
    landmarks: Mapping[str, np.ndarray],
    spacing_mm: tuple[float, float, float],
    origin_px: tuple[float, float],
    px_per_voxel: tuple[float, float],
) -> dict[str, np.ndarray]:
    """Each structure's six points (mm, canonical axes; (6, 3)) as (6, 2) ``(x, y)`` pixels
    of the picture: the left-right coordinate is dropped (orthogonal projection onto the
    displayed slice), row and column go to ``y`` and ``x`` with ``origin_px`` the page
    position of the slice's corner and ``px_per_voxel`` the (row, column) scale."""
    names = list(landmarks)
    if not names:
        return {}
    mm = np.stack([np.asarray(landmarks[n], dtype=float) for n in names])  # (M, 6, 3)
    sp = np.asarray(spacing_mm, dtype=float)
    # voxel centre i sits at i * spacing mm and is drawn at pixel (i + 0.5) * scale
    y = origin_px[1] + (mm[..., 1] / sp[1] + 0.5) * px_per_voxel[0]
    x = origin_px[0] + (mm[..., 2] / sp[2] + 0.5) * px_per_voxel[1]
    xy = np.stack([x, y], axis=-1)
    return dict(zip(names, xy, strict=True))


def draw_landmarks(draw: Any, pixels: Mapping[str, np.ndarray]) -> int:
    """Draw each vertebral body's anterior, middle and posterior heights
    (:data:`HEIGHT_RGB`) and its superior and inferior endplate lines (:data:`ENDPLATE_RGB`)
    between its points in pixels (:func:`landmark_pixels`) on a Pillow ``ImageDraw``;
    discs are not drawn (their heights are the gaps between the bodies' endplates).
    Returns the number of bodies drawn."""
    drawn = 0
    for name, xy in pixels.items():
        if not is_vertebra(name) or not np.isfinite(xy).all():
            continue
        for segments, rgb in ((_ENDPLATE_SEGMENTS, ENDPLATE_RGB), (_HEIGHT_SEGMENTS, HEIGHT_RGB)):
            for i, j in segments:
                draw.line([tuple(xy[i]), tuple(xy[j])], fill=rgb, width=1)
        drawn += 1
    return drawn


def subject_png(
    path: str | os.PathLike[str],
    instances: np.ndarray,
    id_to_name: Mapping[int, str],
    spacing_mm: tuple[float, float, float],
    image: np.ndarray | None = None,
    title: str = "",
    height_px: int = 720,
    qc_slice: tuple[int, np.ndarray] | None = None,
    landmarks: Mapping[str, np.ndarray] | None = None,
    grades: Mapping[str, int] | None = None,
) -> None:
    """Mid-sagittal slice with the instance overlay, each structure's name and, given
    ``landmarks``, each measured body's heights and endplate lines.

    ``instances`` and ``image`` in canonical order; ``qc_slice`` (from
    :func:`read_qc_slice`) replaces ``image`` and the slice choice when it fits the
    instances' slice grid.  Pixels are resampled to square mm
    (SI / AP spacing) so anatomy is not stretched, ``height_px`` rows tall.  Names sit at
    the in-slice centroid of each instance (instances absent from the slice are labeled at
    their projected centroid): vertebrae in white left of the body, discs in yellow right
    of it.  Drawn with Pillow rather than matplotlib: one PNG per subject is written by a
    per-subject job, where importing pyplot alone cost more than the split it illustrates.

    ``landmarks``: structure name -> its six measured points, (6, 3) mm in the canonical
    axes of ``instances`` (the third item of
    :func:`spinecensus.measure.morphometrics.measure_subject_with_landmarks`: what the
    measurement computed, nothing is measured again).  Each body's points lie in its own
    mid-sagittal plane, which is oblique to the slices (a rotated or scoliotic spine, a
    body off the displayed slice), so they are drawn projected onto the displayed slice
    (left-right coordinate dropped): the lines show where the heights were measured in the
    sagittal view, not where the displayed slice cuts the body.  ``grades``: body name ->
    Genant grade; a body of grade 1-3 is named in :data:`FRACTURE_RGB` with its grade
    (``L1 G2``).
    """
    from PIL import Image, ImageDraw, ImageFont

    inst = np.asarray(instances)
    fits = qc_slice is not None and 0 <= qc_slice[0] < inst.shape[0]
    if fits and qc_slice[1].shape == inst.shape[1:]:  # type: ignore[index]
        k, grey = qc_slice[0], qc_slice[1].astype(np.float32)  # type: ignore[index]
    else:
        k = mid_sagittal_index(inst)
        if image is not None:
            grey = grey_slice(image[min(k, image.shape[0] - 1)]).astype(np.float32)
        else:
            grey = np.zeros(inst.shape[1:], dtype=np.float32)
    sl = inst[k]
    h, w = sl.shape
    scale = height_px / max(h * float(spacing_mm[1]), 1e-6)  # px per mm
    out_h = max(1, round(h * float(spacing_mm[1]) * scale))
    out_w = max(1, round(w * float(spacing_mm[2]) * scale))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    fg = sl > 0
    # 45 % overlay of the instance colour, as a vectorised blend over the labeled pixels
    rgb[fg] = 0.55 * rgb[fg] + 0.45 * _PALETTE[sl[fg] % len(_PALETTE)]
    canvas = Image.fromarray(rgb.astype(np.uint8), "RGB").resize((out_w, out_h), Image.NEAREST)
    margin_l, margin_r, margin_t = 60, 80, 24
    page = Image.new("RGB", (out_w + margin_l + margin_r, out_h + margin_t), "black")
    page.paste(canvas, (margin_l, margin_t))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default()
    n = int(inst.max(initial=0)) + 1
    r_mean, c_mean, shown = _centroids(inst, sl, n)
    sy, sx = out_h / h, out_w / w
    if landmarks:  # under the names, so the text stays legible
        pixels = landmark_pixels(landmarks, spacing_mm, (margin_l, margin_t), (sy, sx))
        draw_landmarks(draw, pixels)
    for iid, name in sorted(id_to_name.items()):
        iid = int(iid)
        if not (0 < iid < n and shown[iid]):
            continue
        y = margin_t + (r_mean[iid] + 0.5) * sy
        x = margin_l + (c_mean[iid] + 0.5) * sx
        if "-" in name:  # disc: yellow, to the right of the column
            draw.text((x + 0.18 * out_w, y), name, fill=(255, 255, 0), font=font, anchor="lm")
        else:
            grade = int((grades or {}).get(name) or 0)
            text, fill = (f"{name} G{grade}", FRACTURE_RGB) if grade > 0 else (name, (255,) * 3)
            draw.text((x - 0.05 * out_w, y), text, fill=fill, font=font, anchor="rm")
    draw.text((4, 4), f"{title}  (slice {k})", fill=(255, 255, 255), font=font)
    with atomic_path(path) as tmp:
        # zlib level 1: ~4x faster to encode than Pillow's default 6, files ~10-20 % larger
        page.save(tmp, format="PNG", compress_level=1)


def failure_png(path: str | os.PathLike[str], subject: str, rule: str, error: str) -> None:
    """A small card saying that ``subject`` failed in ``rule`` and why."""
    import textwrap

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_axis_off()
    text = "\n".join(textwrap.wrap(error, 48)[:12])
    ax.text(
        0.02,
        0.98,
        f"{subject}: FAILED in {rule}\n\n{text}",
        va="top",
        ha="left",
        fontsize=7,
        color="darkred",
        transform=ax.transAxes,
        family="monospace",
    )
    save_png(fig, path)
