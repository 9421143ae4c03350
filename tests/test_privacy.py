"""No patient information from DICOM headers reaches any output, log or error message.

A synthetic subject is written as a DICOM series whose every patient/study-identifying
attribute (DICOM PS3.15 basic de-identification profile: names, IDs, dates, times,
addresses, institution, physicians, operators, accession number, study description and
ID, station, device serial, comments, study/series UIDs) holds a recognisable token.
The series is then loaded, checked, analysed and written through the per-subject
workflow functions; every file written (decompressed ``.nii.gz``, Parquet tables read
back with their key/value metadata, JSON, PNG bytes), every captured log record, warning
and stdout/stderr line, and every error message of broken series is searched for the
tokens.  The end-to-end Snakemake run over a cohort with a planted-PHI DICOM subject
(``tests/test_failures_workflow.py``) greps the whole results tree and the logs too.

Decided (see ``spinecensus.io.dicom``): ``SeriesDescription``/``SeriesNumber`` are
acquisition parameters (the protocol name a user needs to pick a series) and may appear
in errors; ``StudyDescription`` is free text typed at registration and is treated as
patient information.  The ``SeriesInstanceUID`` appears only as an 8-character hash.
"""

from __future__ import annotations

import gzip
import io as pyio
import logging
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from corpus_loader import load_corpus_module

from spinecensus import io
from spinecensus.io import checks, dicom_series, dicom_write

make_corpus = load_corpus_module()

#: every PHI attribute we plant, with a value that is valid for its VR and recognisable
PHI: dict[str, str] = {
    "PatientName": "QZPNAME^QZPGIVEN",
    "PatientID": "QZPID4711",
    "PatientBirthDate": "18870203",
    "PatientBirthTime": "231729.4242",
    "PatientSex": "QZSEX",
    "PatientAge": "097Y",
    "PatientAddress": "QZADDR Teststr 1",
    "PatientTelephoneNumbers": "QZTEL0815",
    "OtherPatientIDs": "QZOPID0042",
    "OtherPatientNames": "QZOTHER^QZONAME",
    "PatientMotherBirthName": "QZMOTHER^QZMNAME",
    "EthnicGroup": "QZETHNIC",
    "PatientComments": "QZPCOMMENT",
    "AdditionalPatientHistory": "QZHISTORY",
    "InstitutionName": "QZINSTITUTION",
    "InstitutionAddress": "QZINSTADDR",
    "InstitutionalDepartmentName": "QZDEPT",
    "ReferringPhysicianName": "QZREFPHYS^QZREFDR",
    "PerformingPhysicianName": "QZPERFPHYS^QZPERFDR",
    "PhysiciansOfRecord": "QZRECPHYS^QZRECDR",
    "RequestingPhysician": "QZREQPHYS^QZREQDR",
    "NameOfPhysiciansReadingStudy": "QZREADPHYS^QZREADDR",
    "OperatorsName": "QZOPERATOR^QZTECH",
    "AccessionNumber": "QZACC90210",
    "StudyID": "QZSTUDYID",
    "StudyDescription": "QZSTUDYDESC",
    "StudyDate": "18990317",
    "StudyTime": "101112.1314",
    "SeriesDate": "18990318",
    "AcquisitionDate": "18990319",
    "ContentDate": "18990320",
    "StationName": "QZSTATION",
    "DeviceSerialNumber": "QZSERIAL77",
    "ImageComments": "QZIMGCOMMENT",
    "StudyInstanceUID": "1.2.826.0.1.3680043.99.7777.1",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.99.7777.2",
}
#: UID of a second series used for the mixed-series folder
SECOND_SERIES_UID = "1.2.826.0.1.3680043.99.7777.3"
#: the grep tokens: every planted value and each caret-separated part of names
TOKENS: list[str] = sorted(
    {v for v in PHI.values()}
    | {part for v in PHI.values() for part in v.split("^")}
    | {SECOND_SERIES_UID}
)


def find_phi(blob: bytes | str) -> list[str]:
    """Planted tokens found in ``blob`` (case-insensitive)."""
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    low = text.lower()
    return [t for t in TOKENS if t.lower() in low]


def file_text(path: Path) -> bytes:
    """A file's content as searchable bytes: gz decompressed, Parquet decoded with its
    key/value metadata (its pages may be compressed)."""
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except OSError:
            pass
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        decoded = table.to_pandas().to_csv().encode() + repr(meta).encode()
        raw = raw + decoded
    return raw


def grep_tree(root: Path) -> dict[str, list[str]]:
    """{relative path (or "<name>" for a path itself): tokens} for every hit under root."""
    hits: dict[str, list[str]] = {}
    for p in sorted(root.rglob("*")):
        if find_phi(str(p.relative_to(root))):
            hits[f"<name>{p.relative_to(root)}"] = find_phi(str(p.relative_to(root)))
        if p.is_file():
            found = find_phi(file_text(p))
            if found:
                hits[str(p.relative_to(root))] = found
    return hits


def write_phi_series(folder: Path, seed: int = 0, **kw) -> tuple[Path, Path]:
    """A synthetic subject as a planted-PHI DICOM series + its semantic mask NIfTI."""
    from spinecensus import synthetic

    subj = synthetic.generate_subject(seed, "normal", synthetic.SyntheticConfig.tiny())
    img, sem, _inst = subj.to_nifti()
    lr = int(np.argmax(np.abs(img.affine[0, :3])))
    tags = {k: v for k, v in PHI.items() if k != "SeriesInstanceUID"}
    dicom_write.write_series(
        np.asarray(img.dataobj),
        img.affine,
        folder,
        slice_axis=lr,
        series_uid=kw.pop("series_uid", PHI["SeriesInstanceUID"]),
        extra_tags=tags,
        **kw,
    )
    sem_path = folder.parent / f"{folder.name}_semantic.nii.gz"
    nib.save(sem, str(sem_path))
    return folder, sem_path


def test_planted_series_really_holds_phi(tmp_path: Path) -> None:
    """Sanity check of the test itself: the written files do contain every token, so a
    clean grep later means the pipeline dropped them (synthetic)."""
    folder, _ = write_phi_series(tmp_path / "dcm")
    blob = b"".join(p.read_bytes() for p in folder.iterdir())
    assert set(find_phi(blob)) == set(TOKENS) - {SECOND_SERIES_UID}


def test_loading_and_outputs_carry_no_phi(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Loading, checking and writing outputs like a DICOM subject: no token in the Scan,
    its NIfTI header, written files, logs, warnings or stdout/stderr (synthetic)."""
    folder, _ = write_phi_series(tmp_path / "dcm")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("pydicom").setLevel(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = checks.load_checked(folder)
    assert scan.header is not None
    assert find_phi(scan.header.binaryblock) == []
    assert find_phi(repr(scan.header)) == []
    assert find_phi(str(scan.path)) == []
    out = tmp_path / "out"
    io.save_like(scan.data > np.median(scan.data), scan, out / "mask.nii.gz", np.uint8)
    io.write_json({"spacing_mm": scan.spacing_mm}, out / "meta.json")
    assert grep_tree(out) == {}
    captured = capfd.readouterr()
    assert find_phi(captured.out + captured.err) == []
    assert find_phi(caplog.text) == []
    assert find_phi(" ".join(str(w.message) for w in caught)) == []


def _errors_of_broken_series(tmp_path: Path) -> list[str]:
    msgs: list[str] = []
    # several series (both with PHI)
    mixed, _ = write_phi_series(tmp_path / "mixed")
    write_phi_series(
        tmp_path / "mixed2",
        seed=1,
        series_number=9,
        series_description="SAG T1",
        series_uid=SECOND_SERIES_UID,
    )
    for f in (tmp_path / "mixed2").iterdir():
        f.rename(mixed / f"b_{f.name}")
    # missing slices
    gap, _ = write_phi_series(tmp_path / "gap")
    files = sorted(gap.iterdir())
    import pydicom

    by_pos = sorted(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[0]))
    by_pos[2].unlink()
    # truncated file
    trunc, _ = write_phi_series(tmp_path / "trunc")
    victim = sorted(trunc.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-64])
    # a header cut in the middle of the PHI attributes
    cut, _ = write_phi_series(tmp_path / "cut")
    victim = sorted(cut.iterdir())[1]
    blob = victim.read_bytes()
    victim.write_bytes(blob[: blob.find(b"QZPNAME") + 4])
    for folder in (mixed, gap, trunc, cut):
        with pytest.raises(io.InputError) as err:
            checks.load_checked(folder)
        msgs.append(str(err.value))
    return msgs


def test_error_messages_carry_no_phi(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Broken planted-PHI series (mixed series, missing slice, truncated pixels, header
    cut inside the patient name) fail with messages free of PHI; the mixed-series message
    shows only protocol names and a UID hash (synthetic)."""
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        msgs = _errors_of_broken_series(tmp_path)
    assert "folder holds 2 DICOM series" in msgs[0]
    assert "SAG T1" in msgs[0]
    assert f"uid#{dicom_series.series_fingerprint(PHI['SeriesInstanceUID'])}" in msgs[0]
    assert "slice(s) missing" in msgs[1]
    assert "cannot decode DICOM pixel data" in msgs[2]
    assert "truncated" in msgs[3]
    for m in msgs:
        assert find_phi(m) == [], m
    captured = capfd.readouterr()
    assert find_phi(captured.out + captured.err) == []
    assert find_phi(caplog.text) == []
    assert find_phi(" ".join(str(w.message) for w in caught)) == []


def test_per_subject_workflow_functions_carry_no_phi(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The workflow's per-subject functions (segment with ground truth, analyse, aggregate)
    on a planted-PHI DICOM subject plus a broken one: no token in any output file, table,
    table metadata or console line (synthetic)."""
    from spinecensus.census import aggregate_job, analyse_job, segment_job

    folder, sem = write_phi_series(tmp_path / "in" / "P001")
    broken, sem2 = write_phi_series(tmp_path / "in" / "P002")
    victim = sorted(broken.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-64])
    results = tmp_path / "results"
    seg = results / "segmentation" / "b00000"
    segment_job.segment(
        ["P001", "P002"],
        [str(folder), str(broken)],
        seg,
        method="ground_truth",
        semantics=[str(sem), str(sem2)],
    )
    for s, img in (("P001", folder), ("P002", broken)):
        analyse_job.analyse(s, seg, results / "subjects" / s, image=str(img))
    aggregate_job.aggregate(results / "subjects", ["P001", "P002"], results / "tables")
    summary = (results / "subjects" / "P001" / "summary.json").read_text()
    assert '"status": "ok"' in summary
    assert (results / "subjects" / "P002" / "failed.json").exists()
    import pandas as pd

    failures = pd.read_parquet(results / "tables" / "failures.parquet")
    assert failures["subject"].tolist() == ["P002"]
    assert "cannot decode DICOM pixel data" in failures["error"].iloc[0]
    assert grep_tree(results) == {}
    captured = capfd.readouterr()
    assert find_phi(captured.out + captured.err) == []


def test_grep_helper_finds_tokens_in_compressed_outputs(tmp_path: Path) -> None:
    """The grep sees through gzip and Parquet compression (test of the test)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.json.gz").write_bytes(gzip.compress(b'{"x": "QZPID4711"}'))
    buf = pyio.BytesIO()
    pq.write_table(
        pa.table({"c": ["QZSTATION" * 50] * 100}).replace_schema_metadata({"k": "QZDEPT"}),
        buf,
        compression="zstd",
    )
    (tmp_path / "t.parquet").write_bytes(buf.getvalue())
    hits = grep_tree(tmp_path)
    assert hits["a.json.gz"] == ["QZPID4711"]
    assert set(hits["t.parquet"]) == {"QZSTATION", "QZDEPT"}
