"""Generate the bad-input corpus (synthetic, deterministic) used by the robustness tests.

Nothing here is a hand-made binary: every broken file is derived from a small valid
synthetic volume by a documented corruption, so the corpus is rebuilt at test time in a
temporary folder (``make_file_corpus`` / ``make_sheet_corpus``) and can be written to a
folder for inspection::

    .venv/bin/python tests/data/bad/make_corpus.py OUT_DIR

Kinds (``FILE_KINDS``: one subject's image; ``SHEET_KINDS``: a whole sample sheet):

=====================  =================================================================
truncated_nii_gz       a valid ``.nii.gz`` cut to half its bytes
wrong_magic            a ``.nii`` whose header magic ``n+1`` is overwritten
zero_byte              an empty ``.nii.gz``
nan_filled             float image, every voxel NaN
constant               every voxel 7
two_d                  a 2-D image
five_d                 a 5-D image (x, y, z, 1, 2)
four_d_multi           a 4-D image with 3 volumes (4-D with one volume is accepted)
zero_spacing           pixdim = (3, 0, 1) mm and no qform/sform (nibabel would read 1 mm)
zero_spacing_sform     sform with an all-zero column
implausible_spacing    0.001 mm voxels (a header written in metres)
axial_stack            thick slices along superior-inferior (not a sagittal acquisition)
too_small              8 x 8 x 8 voxels
pure_noise             plausible geometry, Gaussian noise: passes the input checks; its
                       verdict comes from the analysis (no structures -> unsplittable)
dicom_mixed_series     a folder with two DICOM series (12 + 5 slices)
dicom_missing_slices   a DICOM series with two slices removed from the middle
dicom_truncated        a DICOM series with one file cut inside its pixel data
missing_path           a path that does not exist
=====================  =================================================================

Sheet kinds: ``duplicate_subject``, ``unsafe_id_dotdot`` (``../evil``), ``unsafe_id_space``
(``bad id``), ``non_utf8`` (Latin-1 bytes in a covariate), each pointing at valid images.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

#: canonical-like sagittal geometry: stored axis 0 -> R (3 mm slices), axis 1 -> I
#: (1 mm), axis 2 -> P (1 mm); RAS affine
SAGITTAL_AFFINE = np.array(
    [[3.0, 0.0, 0.0, -18.0], [0.0, 0.0, -1.0, 31.0], [0.0, -1.0, 0.0, 60.0], [0, 0, 0, 1.0]]
)
BASE_SHAPE = (12, 64, 48)


@dataclass(frozen=True)
class Expect:
    """What the user must see for a kind: ``level`` is "file" (per-subject failure),
    "verdict" (loads; the analysis records the failure) or "sheet" (stops the run);
    ``fragment`` is a substring of the error message (lower-case match)."""

    level: str
    fragment: str


FILE_KINDS: dict[str, Expect] = {
    "truncated_nii_gz": Expect("file", "truncated or corrupt"),
    "wrong_magic": Expect("file", "not a readable nifti"),
    "zero_byte": Expect("file", "empty (0 bytes)"),
    "nan_filled": Expect("file", "nan/inf"),
    "constant": Expect("file", "constant"),
    "two_d": Expect("file", "expected a 3-d image"),
    "five_d": Expect("file", "expected a 3-d image"),
    "four_d_multi": Expect("file", "expected a 3-d image"),
    "zero_spacing": Expect("file", "pixdim"),
    "zero_spacing_sform": Expect("file", "singular"),
    "implausible_spacing": Expect("file", "implausible voxel spacing"),
    "axial_stack": Expect("file", "not a sagittal acquisition"),
    "too_small": Expect("file", "image too small"),
    "pure_noise": Expect("verdict", "unsplittable"),
    "dicom_mixed_series": Expect("file", "2 dicom series"),
    "dicom_missing_slices": Expect("file", "2 slice(s) missing"),
    "dicom_truncated": Expect("file", "cannot decode dicom pixel data"),
    "missing_path": Expect("file", "does not exist"),
}

SHEET_KINDS: dict[str, Expect] = {
    "duplicate_subject": Expect("sheet", "duplicate"),
    "unsafe_id_dotdot": Expect("sheet", "../evil"),
    "unsafe_id_space": Expect("sheet", "bad id"),
    "non_utf8": Expect("sheet", "utf-8"),
}


def base_volume(seed: int = 0, shape: tuple[int, int, int] = BASE_SHAPE) -> np.ndarray:
    """A smooth, non-constant int16 volume (a blurred random field; no anatomy)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=shape), sigma=(1, 3, 3))
    field = (field - field.min()) / (np.ptp(field) or 1.0)
    return (field * 1000).astype(np.int16)


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _patched_nifti(data: np.ndarray, path: Path, patch) -> Path:
    """Write ``data`` as NIfTI-1 with a raw header edited by ``patch(header)`` (bypassing
    nibabel's own consistency fixes), gzip-compressed when ``path`` ends with .gz."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr.set_sform(SAGITTAL_AFFINE, code=1)
    hdr.set_qform(SAGITTAL_AFFINE, code=1)
    patch(hdr)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\0" * 4 + np.ascontiguousarray(data).tobytes(order="F")
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(raw, mtime=0))
    else:
        path.write_bytes(raw)
    return path


def make_file_corpus(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write every per-subject bad input under ``out_dir``; returns kind -> path."""
    from spinecensus.io import dicom_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vol = base_volume(seed)
    paths: dict[str, Path] = {}

    good = _save(vol, SAGITTAL_AFFINE, out / "good.nii.gz")
    blob = good.read_bytes()
    paths["truncated_nii_gz"] = out / "truncated.nii.gz"
    paths["truncated_nii_gz"].write_bytes(blob[: len(blob) // 2])

    wm = _save(vol, SAGITTAL_AFFINE, out / "wrong_magic.nii")
    raw = bytearray(wm.read_bytes())
    raw[344:348] = b"XYZ\0"  # NIfTI-1 magic lives at byte 344
    wm.write_bytes(bytes(raw))
    paths["wrong_magic"] = wm

    paths["zero_byte"] = out / "zero_byte.nii.gz"
    paths["zero_byte"].write_bytes(b"")
    paths["nan_filled"] = _save(
        np.full(BASE_SHAPE, np.nan, np.float32), SAGITTAL_AFFINE, out / "nan.nii.gz"
    )
    paths["constant"] = _save(
        np.full(BASE_SHAPE, 7, np.int16), SAGITTAL_AFFINE, out / "constant.nii.gz"
    )
    paths["two_d"] = _save(vol[6], SAGITTAL_AFFINE, out / "two_d.nii.gz")
    five = np.stack([vol, vol + 1], axis=-1)[:, :, :, None, :]
    paths["five_d"] = _save(five, SAGITTAL_AFFINE, out / "five_d.nii.gz")
    paths["four_d_multi"] = _save(
        np.stack([vol, vol, vol], axis=-1), SAGITTAL_AFFINE, out / "four_d.nii.gz"
    )

    def zero_pixdim(h: nib.Nifti1Header) -> None:
        h["sform_code"] = 0
        h["qform_code"] = 0
        h["pixdim"][1:4] = [3.0, 0.0, 1.0]

    paths["zero_spacing"] = _patched_nifti(vol, out / "zero_spacing.nii.gz", zero_pixdim)

    def zero_column(h: nib.Nifti1Header) -> None:
        h["qform_code"] = 0
        h["srow_y"] = [0.0, 0.0, 0.0, 31.0]
        h["srow_z"] = [0.0, 0.0, 0.0, 60.0]  # voxel axis 1 and 2 both vanish

    paths["zero_spacing_sform"] = _patched_nifti(vol, out / "zero_sform.nii.gz", zero_column)

    tiny_aff = SAGITTAL_AFFINE.copy()
    tiny_aff[:3, :3] *= 0.001  # as if the header were written in metres
    paths["implausible_spacing"] = _save(vol, tiny_aff, out / "metres.nii.gz")

    axial = SAGITTAL_AFFINE.copy()
    # stored axis 0 -> superior-inferior with 5 mm slices, axis 1 -> R, axis 2 -> P
    axial[:3, :3] = [[0.0, 0.8, 0.0], [0.0, 0.0, -0.8], [-5.0, 0.0, 0.0]]
    paths["axial_stack"] = _save(base_volume(seed, (20, 64, 48)), axial, out / "axial.nii.gz")

    paths["too_small"] = _save(base_volume(seed, (8, 8, 8)), SAGITTAL_AFFINE, out / "small.nii.gz")

    rng = np.random.default_rng(seed + 1)
    noise = rng.normal(500, 100, size=BASE_SHAPE).astype(np.float32)
    paths["pure_noise"] = _save(noise, SAGITTAL_AFFINE, out / "noise.nii.gz")

    mixed = out / "dicom_mixed"
    dicom_write.write_series(
        vol, SAGITTAL_AFFINE, mixed, series_number=3, series_description="SAG T2"
    )
    dicom_write.write_series(
        vol[:5],
        SAGITTAL_AFFINE,
        mixed,
        series_number=4,
        series_description="SAG T1",
        file_prefix="t1_",
        seed=seed + 1,
    )
    paths["dicom_mixed_series"] = mixed

    gap = out / "dicom_gap"
    files = dicom_write.write_series(vol, SAGITTAL_AFFINE, gap)
    # write_series returns files in slice order: drop two neighbouring middle slices
    for f in files[5:7]:
        f.unlink()
    paths["dicom_missing_slices"] = gap

    trunc = out / "dicom_truncated"
    files = dicom_write.write_series(vol, SAGITTAL_AFFINE, trunc)
    size = files[4].stat().st_size
    with open(files[4], "r+b") as fh:
        fh.truncate(size - 200)
    paths["dicom_truncated"] = trunc

    paths["missing_path"] = out / "does_not_exist.nii.gz"
    return paths


def write_sheet(path: Path, rows: list[tuple[str, str]], extra: str = "") -> Path:
    """Tab-separated sample sheet with columns subject, image (and a ``site`` column)."""
    lines = ["subject\timage\tsite"] + [f"{s}\t{img}\tA{extra}" for s, img in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_sheet_corpus(out_dir: str | Path, good_images: list[Path]) -> dict[str, Path]:
    """Write one broken sample sheet per sheet kind (images: valid paths, absolute)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    imgs = [str(Path(p).resolve()) for p in good_images]
    a, b = imgs[0], imgs[-1]
    sheets: dict[str, Path] = {}
    sheets["duplicate_subject"] = write_sheet(
        out / "duplicate.tsv", [("S001", a), ("S002", b), ("S001", b)]
    )
    sheets["unsafe_id_dotdot"] = write_sheet(out / "dotdot.tsv", [("S001", a), ("../evil", b)])
    sheets["unsafe_id_space"] = write_sheet(out / "space.tsv", [("S001", a), ("bad id", b)])
    latin1 = out / "latin1.tsv"
    text = f"subject\timage\tsite\nS001\t{a}\tZ\u00fcrich\nS002\t{b}\tK\u00f6ln\n"
    latin1.write_bytes(text.encode("latin-1"))  # \xfc is not valid UTF-8
    sheets["non_utf8"] = latin1
    return sheets


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_corpus.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    if out.exists():
        shutil.rmtree(out)
    files = make_file_corpus(out / "files")
    sheets = make_sheet_corpus(out / "sheets", [out / "files" / "good.nii.gz"])
    for kind, p in {**files, **sheets}.items():
        print(f"{kind}\t{p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
