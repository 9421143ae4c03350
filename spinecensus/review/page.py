"""The ``review_page`` rule: one static HTML page to review the flagged subjects.

:func:`review_page` writes ``results/review/index.html`` from the cohort tables: every
flagged subject (a QC flag, status ``undetermined``, failed, or already reviewed), or every
subject with ``all_subjects``, with its status, flags, counts and ``decided_by``, and its QC
image (the per-subject ``qc.png``, inlined as a JPEG thumbnail :data:`THUMB_HEIGHT_PX` rows
tall; the thumbnail links to the full-size PNG by a relative path).  In the page a reviewer
filters by flag and status, sorts by any column, steps through subjects with the keyboard,
and records decisions that download as ``overrides.tsv``
(:mod:`spinecensus.review.overrides`); the rows of the overrides file the tables were built
with are listed first, so the downloaded file carries them on.

The page is self-contained: inline CSS and plain JavaScript (``assets/`` of this package),
the data as inline JSON, no network access (a Content-Security-Policy forbids it), so it
works from a file URL and from a cluster's shared folder.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from spinecensus.io import atomic_path
from spinecensus.review.overrides import COLUMNS, STATUSES, read_overrides
from spinecensus.review.relabel import SCHEMA_NAMES

#: height (pixels) of the inlined QC images: the QC PNG is 720 rows (its names stay legible),
#: ~30-50 kB each as JPEG, so 200 subjects stay under 10 MB
THUMB_HEIGHT_PX = 720
#: JPEG quality of the thumbnails
THUMB_QUALITY = 80
#: a thumbnail larger than this (bytes) is made smaller (x 3/4 per step, down to
#: :data:`MIN_THUMB_HEIGHT_PX`), so 200 subjects stay under 20 MB with base64's 4/3 whatever
#: the pictures hold
MAX_THUMB_BYTES = 60_000
MIN_THUMB_HEIGHT_PX = 320

#: the table's columns: (subjects.parquet column or page field, title, numeric)
TABLE_COLUMNS = (
    ("subject", "subject", False),
    ("status", "status", False),
    ("final_status", "final status", False),
    ("flags", "flags", False),
    ("n_vertebrae", "vertebrae", True),
    ("n_discs", "discs", True),
    ("lumbar_count", "lumbar", True),
    ("presacral_count", "presacral", True),
    ("first_label", "first", False),
    ("last_label", "last", False),
    ("decided_by", "decided by", False),
    ("reviewer", "reviewer", False),
)
#: fields shown beside the image
DETAIL_FIELDS = (
    "status", "final_status", "decided_by", "pipeline_decided_by", "reviewer", "review_note",
    "flags", "lumbar_count", "presacral_count", "n_cervical", "n_thoracic", "n_lumbar",
    "n_sacral", "split_valid", "invalid_reason", "first_label", "last_label", "error",
)  # fmt: skip


def flagged(subjects: Any) -> Any:
    """Boolean Series: the subjects the page lists by default (a QC flag, ``undetermined``,
    failed, or reviewed)."""
    flags = subjects["qc_flags"].fillna("").astype(str).str.strip() != ""
    undetermined = subjects["transitional_status"].astype("string").fillna("") == "undetermined"
    failed = ~subjects["processed"].fillna(False).astype(bool)
    reviewed = subjects.get("reviewer")
    out = flags | undetermined | failed
    if reviewed is not None:
        out |= reviewed.notna()
    return out


#: a flag's code: a snake_case word before a colon, at the start or after a ``;`` (a flag's
#: detail may hold ``;`` itself, so the string is not simply split there)
_FLAG_CODE = re.compile(r"(?:^|;)\s*([a-z][a-z0-9_]*)\s*:")


def flag_codes(flags: str | None) -> list[str]:
    """``"a: x; y; b_c: z"`` -> ``["a", "b_c"]``: the codes of a ``qc_flags`` string, in
    order, each once."""
    return list(dict.fromkeys(_FLAG_CODE.findall(flags or "")))


def _jpeg(im: Any, height: int) -> bytes:
    if im.height > height:
        im = im.resize((max(1, round(im.width * height / im.height)), height))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return buf.getvalue()


def thumbnail(png: str | os.PathLike[str], height: int = THUMB_HEIGHT_PX) -> str | None:
    """A QC PNG as a ``data:image/jpeg;base64,...`` URI, at most ``height`` pixels tall
    (aspect kept) and, where it can be, :data:`MAX_THUMB_BYTES` bytes; None when the file
    is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(png) as im:
            rgb = im.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return None
    data = _jpeg(rgb, height)
    while len(data) > MAX_THUMB_BYTES and height > MIN_THUMB_HEIGHT_PX:
        height = max(MIN_THUMB_HEIGHT_PX, height * 3 // 4)
        data = _jpeg(rgb, height)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _json_value(v: Any) -> Any:
    """A table cell as JSON: None for missing values, Python scalars otherwise."""
    import pandas as pd

    if v is None or (not isinstance(v, (list, tuple, str)) and pd.isna(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def page_data(
    tables_dir: str | os.PathLike[str],
    subjects_dir: str | os.PathLike[str],
    out_html: str | os.PathLike[str],
    all_subjects: bool = False,
    overrides: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The page's inline JSON: subjects, thumbnails, the form's choices, prior overrides."""
    import pandas as pd

    tables = Path(tables_dir)
    sub = pd.read_parquet(tables / "subjects.parquet")
    if not all_subjects:
        sub = sub[flagged(sub).to_numpy(bool)]
    st = pd.read_parquet(tables / "structures.parquet", columns=["subject", "instance_id", "label"])
    st = st[st["subject"].isin(set(sub["subject"])) & st["label"].notna()]
    names = st.sort_values(["subject", "instance_id"]).groupby("subject")["label"].agg(list)
    page_dir = Path(out_html).resolve().parent
    records, images = [], {}
    for row in sub.to_dict("records"):
        rec = {k: _json_value(v) for k, v in row.items()}
        s = str(rec["subject"])
        rec["status"] = rec["transitional_status"] if rec.get("processed") else "failed"
        rec["flags"] = rec.get("qc_flags") or ""
        rec["flag_codes"] = flag_codes(rec["flags"])
        rec["labels"] = list(names.get(s, []))
        png = Path(subjects_dir) / s / "qc.png"
        rec["qc_link"] = Path(os.path.relpath(png.resolve(), page_dir)).as_posix()
        images[s] = thumbnail(png)
        records.append(rec)
    prior = read_overrides(overrides) if overrides else None
    return {
        "subjects": records,
        "images": {k: v for k, v in images.items() if v},
        "columns": [{"key": k, "title": t, "numeric": n} for k, t, n in TABLE_COLUMNS],
        "details": list(DETAIL_FIELDS),
        "flags": sorted({c for r in records for c in r["flag_codes"]}),
        "status_values": sorted(
            {r[k] for r in records for k in ("status", "final_status") if r.get(k)}
        ),  # fmt: skip
        "statuses": list(STATUSES),
        "schema_names": list(SCHEMA_NAMES),
        "override_columns": list(COLUMNS),
        "overrides": [] if prior is None else prior[list(COLUMNS)].to_dict("records"),
    }


def _asset(name: str) -> str:
    return resources.files("spinecensus.review").joinpath("assets", name).read_text("utf-8")


def render_page(data: dict[str, Any], title: str, subtitle: str) -> str:
    """The HTML text: the template with the CSS, JS and ``data`` (JSON) inlined."""
    # "</" would end the inline <script> early; "<\/" is the same JSON string
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    out = _asset("review.html")
    for key, value in (
        ("__TITLE__", html.escape(title)),
        ("__SUBTITLE__", html.escape(subtitle)),
        ("__CSS__", _asset("review.css")),
        ("__JS__", _asset("review.js")),
        ("__DATA__", blob),
    ):
        out = out.replace(key, value)
    return out


def review_page(
    tables_dir: str | os.PathLike[str],
    subjects_dir: str | os.PathLike[str],
    out_html: str | os.PathLike[str],
    all_subjects: bool = False,
    overrides: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the review page ``out_html`` (atomically) from ``tables_dir/{subjects,
    structures}.parquet`` and the per-subject ``subjects_dir/<subject>/qc.png``; returns it.

    ``overrides``: the overrides file the tables were built with (its rows are preloaded
    into the page's list, so the downloaded ``overrides.tsv`` keeps them).
    """
    data = page_data(tables_dir, subjects_dir, out_html, all_subjects, overrides)
    n = len(data["subjects"])
    which = "subjects (all)" if all_subjects else "flagged subjects"
    subtitle = (
        f"{n} {which} - the image links to the full-size QC picture; decisions download "
        "as overrides.tsv (config review.overrides)"
    )
    text = render_page(data, "spinecensus review", subtitle)
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return out
