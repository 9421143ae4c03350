// spinecensus review page: list, filter, sort and step through flagged subjects, and collect
// a reviewer's overrides into overrides.tsv (downloaded from the page: no server involved).
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("review-data").textContent);
  const SUBJECTS = DATA.subjects;
  const COLUMNS = DATA.columns;
  const $ = (id) => document.getElementById(id);
  const state = { sortKey: null, sortDir: 1, view: [], current: -1 };
  const pending = DATA.overrides.map((row) => Object.assign({ fromFile: true }, row));

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  function option(select, value, label) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = label === undefined ? value : label;
    select.appendChild(o);
  }

  // --- filters --------------------------------------------------------------------------
  function initFilters() {
    const flag = $("filter-flag");
    option(flag, "", "(any)");
    option(flag, "__none__", "(no flag)");
    DATA.flags.forEach((f) => option(flag, f));
    const status = $("filter-status");
    option(status, "", "(any)");
    DATA.status_values.forEach((s) => option(status, s));
    [flag, status].forEach((el) => el.addEventListener("change", render));
    $("filter-text").addEventListener("input", render);
  }

  function matches(s) {
    const flag = $("filter-flag").value;
    const status = $("filter-status").value;
    const needle = $("filter-text").value.trim().toLowerCase();
    if (flag === "__none__" && s.flag_codes.length) return false;
    if (flag && flag !== "__none__" && s.flag_codes.indexOf(flag) < 0) return false;
    if (status && s.status !== status && s.final_status !== status) return false;
    return !needle || s.subject.toLowerCase().indexOf(needle) >= 0;
  }

  // --- table ----------------------------------------------------------------------------
  function compare(a, b) {
    const col = COLUMNS.find((c) => c.key === state.sortKey);
    const x = SUBJECTS[a][state.sortKey];
    const y = SUBJECTS[b][state.sortKey];
    const xe = x === null || x === undefined || x === "";
    const ye = y === null || y === undefined || y === "";
    if (xe || ye) return xe === ye ? a - b : xe ? 1 : -1; // empty cells last
    const d = col.numeric ? x - y : String(x).localeCompare(String(y));
    return d === 0 ? a - b : d * state.sortDir;
  }

  function initHeader() {
    const row = document.querySelector("#subjects thead tr");
    COLUMNS.forEach((c) => {
      const th = document.createElement("th");
      th.textContent = c.title;
      th.dataset.key = c.key;
      th.title = "sort by " + c.title;
      th.addEventListener("click", () => {
        state.sortDir = state.sortKey === c.key ? -state.sortDir : 1;
        state.sortKey = c.key;
        render();
      });
      row.appendChild(th);
    });
  }

  function render() {
    const keep = state.current >= 0 ? state.view[state.current] : -1;
    let idx = SUBJECTS.map((_, i) => i).filter((i) => matches(SUBJECTS[i]));
    if (state.sortKey) idx = idx.sort(compare);
    state.view = idx;
    document.querySelectorAll("#subjects th").forEach((th) => {
      th.classList.toggle("sorted-asc", th.dataset.key === state.sortKey && state.sortDir > 0);
      th.classList.toggle("sorted-desc", th.dataset.key === state.sortKey && state.sortDir < 0);
    });
    const body = document.createElement("tbody");
    const withPending = new Set(pending.map((r) => r.subject));
    idx.forEach((i, pos) => {
      const s = SUBJECTS[i];
      const tr = document.createElement("tr");
      tr.dataset.subject = s.subject;
      tr.dataset.pos = pos;
      if (withPending.has(s.subject)) tr.classList.add("has-pending");
      COLUMNS.forEach((c) => {
        const td = document.createElement("td");
        td.textContent = c.key === "flags" ? s.flag_codes.join(", ") : text(s[c.key]);
        if (c.numeric) td.className = "num";
        if (c.key === "flags") {
          td.className = "flags";
          td.title = text(s.flags);
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    $("subjects").replaceChild(body, $("subjects").tBodies[0]);
    $("count").textContent = idx.length + " of " + SUBJECTS.length + " subjects";
    select(keep >= 0 && idx.indexOf(keep) >= 0 ? idx.indexOf(keep) : idx.length ? 0 : -1);
  }

  // --- the selected subject -------------------------------------------------------------
  function select(pos) {
    const rows = $("subjects").tBodies[0].rows;
    if (state.current >= 0 && rows[state.current]) rows[state.current].classList.remove("current");
    state.current = pos;
    if (pos < 0) {
      $("detail-title").textContent = "no subject matches the filters";
      $("override-form").hidden = true;
      return;
    }
    $("override-form").hidden = false;
    rows[pos].classList.add("current");
    rows[pos].scrollIntoView({ block: "nearest" });
    const s = SUBJECTS[state.view[pos]];
    $("detail-title").textContent = s.subject + ": " + s.status;
    const image = DATA.images[s.subject];
    $("qc-image").hidden = !image;
    $("qc-missing").hidden = !!image;
    if (image) $("qc-image").src = image;
    $("qc-link").href = s.qc_link || "#";
    const dl = $("detail-fields");
    dl.textContent = "";
    DATA.details.forEach((key) => {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = text(s[key]);
      dl.append(dt, dd);
    });
    const from = $("rename-from");
    from.textContent = "";
    s.labels.forEach((name) => option(from, name));
    syncRenameTo();
    $("form-error").textContent = "";
  }

  function move(step) {
    if (!state.view.length) return;
    const next = Math.min(Math.max(state.current + step, 0), state.view.length - 1);
    select(next);
  }

  // --- the form -------------------------------------------------------------------------
  function syncAction() {
    const action = $("action").value;
    document.querySelectorAll("#override-form [data-for]").forEach((el) => {
      el.hidden = el.dataset.for !== action;
    });
  }

  function syncRenameTo() {
    // a vertebra is renamed to a vertebra, a disc to a disc
    const from = $("rename-from").value;
    const disc = from.indexOf("-") >= 0;
    const to = $("rename-to");
    const keep = to.value;
    to.textContent = "";
    DATA.schema_names.filter((n) => (n.indexOf("-") >= 0) === disc).forEach((n) => option(to, n));
    if (keep && Array.from(to.options).some((o) => o.value === keep)) to.value = keep;
    else if (from) to.value = from;
  }

  function clean(value) {
    return text(value).replace(/[\t\r\n]+/g, " ").trim();
  }

  function addOverride(event) {
    event.preventDefault();
    if (state.current < 0) return;
    const s = SUBJECTS[state.view[state.current]];
    const action = $("action").value;
    let value = "";
    if (action === "set_status") value = $("status-value").value;
    if (action === "rename_from") value = $("rename-from").value + "=" + $("rename-to").value;
    if (action === "exclude") value = clean($("exclude-reason").value);
    if (action === "rename_from" && !$("rename-from").value) {
      $("form-error").textContent = "this subject has no named level to rename";
      return;
    }
    if (action === "exclude" && !value) {
      $("form-error").textContent = "an exclusion needs a reason";
      return;
    }
    pending.push({
      subject: s.subject,
      action: action,
      value: value,
      reviewer: clean($("reviewer").value),
      note: clean($("note").value),
      date: new Date().toISOString().slice(0, 10),
    });
    $("note").value = "";
    $("exclude-reason").value = "";
    $("form-error").textContent = "";
    showPending();
    render();
  }

  function showPending() {
    const list = $("pending");
    list.textContent = "";
    pending.forEach((row, i) => {
      const li = document.createElement("li");
      li.textContent =
        row.subject + " " + row.action + (row.value ? " " + row.value : "") +
        (row.note ? " (" + row.note + ")" : "") + (row.fromFile ? " [file]" : "");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "remove";
      remove.addEventListener("click", () => {
        pending.splice(i, 1);
        showPending();
        render();
      });
      li.appendChild(remove);
      list.appendChild(li);
    });
    $("pending-count").textContent = String(pending.length);
  }

  function tsv() {
    const cols = DATA.override_columns;
    const lines = [cols.join("\t")];
    pending.forEach((row) => lines.push(cols.map((c) => clean(row[c])).join("\t")));
    return lines.join("\n") + "\n";
  }

  function download() {
    const blob = new Blob([tsv()], { type: "text/tab-separated-values" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "overrides.tsv";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // --- wiring ---------------------------------------------------------------------------
  function onKey(event) {
    const tag = event.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (event.key === "j" || event.key === "ArrowDown") move(1);
    else if (event.key === "k" || event.key === "ArrowUp") move(-1);
    else return;
    event.preventDefault();
  }

  DATA.statuses.forEach((s) => option($("status-value"), s));
  initHeader();
  initFilters();
  $("action").addEventListener("change", syncAction);
  $("rename-from").addEventListener("change", syncRenameTo);
  $("override-form").addEventListener("submit", addOverride);
  $("download").addEventListener("click", download);
  $("subjects").addEventListener("click", (event) => {
    const tr = event.target.closest("tbody tr");
    if (tr) select(Number(tr.dataset.pos));
  });
  document.addEventListener("keydown", onKey);
  syncAction();
  showPending();
  render();
  document.body.dataset.ready = "true";
})();
