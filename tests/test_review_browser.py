"""The review page in a real browser: headless Chromium (Debian's ``chromium``, installed by
the set-up when absent) driven over the DevTools protocol (``tests/chromium_cdp.py``).

On the tiny synthetic cohort of ``tests/review_cohort.py`` (synthetic data, tables built with
the package's functions): the page loads without console errors, lists the flagged subjects,
filters, sorts, steps with the keyboard, and the overrides entered in its form download as
a TSV that the overrides parser accepts and ``aggregate`` applies.  A second test times a
200-subject page (synthetic stand-in pictures) against the issue's limits: <= 20 MB, < 2 s.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chromium_cdp import Browser, find_chromium
from review_cohort import FLAGGED, SUBJECTS, TRUTH, build_tables

from spinecensus.review.overrides import read_overrides
from spinecensus.review.page import review_page


@pytest.fixture(scope="module")
def chromium() -> str:
    path, why = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs headless Chromium for the review page test: {why}")
        pytest.skip(f"no headless Chromium: {why}")
    return path


@pytest.fixture
def browser(chromium, tmp_path):
    b = Browser(chromium, tmp_path / "profile")
    try:
        b.open_page()
        yield b
    finally:
        b.close()


def _rows(b: Browser) -> list[str]:
    return b.eval(
        "Array.from(document.querySelectorAll('#subjects tbody tr')).map(r => r.dataset.subject)"
    )


def _set(b: Browser, element_id: str, value: str, event: str = "change") -> None:
    b.eval(
        f"(() => {{ const e = document.getElementById({element_id!r}); e.value = {value!r};"
        f" e.dispatchEvent(new Event({event!r})); }})()"
    )


def _click(b: Browser, selector: str) -> None:
    b.eval(f"document.querySelector({selector!r}).click()")


def _current(b: Browser) -> str:
    return b.eval("document.querySelector('#subjects tr.current').dataset.subject")


def test_review_page_lists_filters_and_exports_overrides_aggregate_applies(browser, tmp_path):
    build_tables(tmp_path / "cohort")
    page = review_page(
        tmp_path / "cohort" / "tables", tmp_path / "cohort" / "subjects", tmp_path / "review.html"
    )
    seconds = browser.navigate(page.as_uri())
    assert browser.errors == []
    assert seconds < 2.0
    assert _rows(browser) == list(FLAGGED)
    assert browser.eval("document.getElementById('count').textContent") == "4 of 4 subjects"
    assert browser.eval("document.getElementById('qc-image').src").startswith("data:image/jpeg")

    # filter by flag, then by status, then clear
    _set(browser, "filter-flag", "suspected_missed_disc")
    assert _rows(browser) == ["S2"]
    _set(browser, "filter-flag", "")
    _set(browser, "filter-status", "failed")
    assert _rows(browser) == ["S3"]
    _set(browser, "filter-status", "")
    _set(browser, "filter-text", "5", event="input")
    assert _rows(browser) == ["S5"]
    _set(browser, "filter-text", "", event="input")

    # sort by a column: subject descending (second click), then back
    _click(browser, "#subjects th[data-key='subject']")
    _click(browser, "#subjects th[data-key='subject']")
    assert _rows(browser) == sorted(FLAGGED, reverse=True)
    _click(browser, "#subjects th[data-key='subject']")
    assert _rows(browser) == sorted(FLAGGED)

    # keyboard: j / ArrowDown next, k previous
    _click(browser, "#subjects tbody tr[data-subject='S1']")
    browser.key("j")
    assert _current(browser) == "S2"
    browser.key("ArrowDown")
    assert _current(browser) == "S3"
    browser.key("k")
    assert _current(browser) == "S2"

    # the form: S2's levels renamed from L3 down, S1's status corrected
    _set(browser, "reviewer", "AB", event="input")
    _set(browser, "action", "rename_from")
    _set(browser, "rename-from", "L3")
    _set(browser, "rename-to", "L4")
    _set(browser, "note", "missed disc", event="input")
    _click(browser, "#add-override")
    _click(browser, "#subjects tbody tr[data-subject='S1']")
    _set(browser, "action", "set_status")
    _set(browser, "status-value", "lumbarization")
    _click(browser, "#add-override")
    assert browser.eval("document.getElementById('pending-count').textContent") == "2"

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.allow_downloads(downloads)
    _click(browser, "#download")
    tsv = browser.wait_download(downloads, "overrides.tsv")
    assert browser.errors == []

    rows = read_overrides(tsv, SUBJECTS)
    assert rows[["subject", "action", "value", "reviewer"]].values.tolist() == [
        ["S2", "rename_from", "L3=L4", "AB"],
        ["S1", "set_status", "lumbarization", "AB"],
    ]
    assert rows["note"].tolist() == ["missed disc", ""]
    assert rows["date"].str.match(r"^\d{4}-\d{2}-\d{2}$").all()

    # aggregate applies it: the wrong call corrected, the prevalence is the truth (synthetic)
    paths = build_tables(tmp_path / "cohort", overrides=tsv)
    sub = pq.read_table(paths["subjects"]).to_pandas().set_index("subject")
    assert sub.loc["S1", "final_status"] == TRUTH["S1"] and sub.loc["S1", "decided_by"] == "review"
    assert sub.loc["S2", "final_status"] == "normal" and sub.loc["S2", "decided_by"] == "review"
    st = pq.read_table(paths["structures"]).to_pandas()
    s2 = st[st.subject == "S2"].sort_values("instance_id")["label"].tolist()
    assert s2[-7:] == ["L4", "L4-L5", "L5", "L5-L6", "L6", "L6-S1", "S1"]
    prev = pq.read_table(paths["prevalence"]).to_pandas()
    called = prev[(prev.stratum == "all") & (prev.estimate == "called")]
    assert (called["n"] == called["true_n"]).all()


def _big_cohort(root: Path, n: int) -> Path:
    """``n`` subjects' tables and 720-row stand-in QC pictures (noise: JPEG's worst case)."""
    import numpy as np
    from PIL import Image

    from spinecensus.census import tables

    rng = np.random.default_rng(22)
    summaries, structs = [], []
    for i in range(n):
        d = root / "subjects" / f"S{i:04d}"
        d.mkdir(parents=True)
        flags = ["count_model_disagree: x"] if i % 3 == 0 else []
        (d / "summary.json").write_text(
            f'{{"subject": "S{i:04d}", "status": "ok", "transitional_status": "normal", '
            f'"qc_flags": {flags!r}}}'.replace("'", '"')
        )
        tables.write_subject_structures(f"S{i:04d}", [], d / "structures.parquet")
        noise = rng.integers(0, 255, (720, 330), dtype=np.uint8)
        Image.fromarray(noise // 4 + 60).convert("RGB").save(d / "qc.png")
        summaries.append(d / "summary.json")
        structs.append(d / "structures.parquet")
    tables.write_cohort_tables(summaries, structs, root / "tables")
    return root


def test_a_two_hundred_subject_page_is_small_and_opens_fast(browser, tmp_path):
    """Synthetic: 200 subjects, all listed, each with a 720-row noise picture."""
    root = _big_cohort(tmp_path / "big", 200)
    t0 = time.perf_counter()
    page = review_page(root / "tables", root / "subjects", root / "review" / "index.html", True)
    build_s = time.perf_counter() - t0
    size_mb = page.stat().st_size / 1e6
    seconds = browser.navigate(page.as_uri())
    assert browser.errors == []
    assert len(_rows(browser)) == 200
    print(
        f"200 subjects (synthetic): {size_mb:.1f} MB, built {build_s:.1f} s, open {seconds:.2f} s"
    )
    assert size_mb <= 20
    assert seconds < 2.0
