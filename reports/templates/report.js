/* pytest-aie report: renders the case rows from the embedded JSON, one page at a time.
   Model output, prompts, reasons and ids are untrusted: they are only ever written with
   textContent or as attribute values, never parsed as HTML. */
(function () {
  "use strict";
  var dataEl = document.getElementById("aie-data");
  if (!dataEl) { return; }
  var blob = JSON.parse(dataEl.textContent);
  var suites = blob.suites || [];
  var cases = blob.cases || [];
  var pageSize = blob.page_size || 200;

  function $(id) { return document.getElementById(id); }
  var filterEl = $("aie-filter"), failEl = $("aie-failures-only"), countEl = $("aie-count");
  var tableEl = $("aie-cases"), rowsEl = $("aie-case-rows"), pagerEl = $("aie-pager");
  var prevEl = $("aie-prev"), nextEl = $("aie-next"), infoEl = $("aie-page-info");

  var state = { terms: [], failuresOnly: false, page: 0, open: Object.create(null) };
  var matches = [];
  var hay = new Array(cases.length);

  // Record status -> CSS class and badge text; "scored" is neither a pass nor a failure.
  var STATUS = { passed: "pass", failed: "fail", scored: "scored", unmeasured: "unmeasured" };
  function status(c) {
    var st = c.st || (c.passed === true ? "passed" : (c.passed === false ? "failed" : "unmeasured"));
    return STATUS[st] || "unmeasured";
  }
  function asText(v) {
    if (v === undefined || v === null) { return ""; }
    return typeof v === "string" ? v : JSON.stringify(v, null, 2);
  }
  function haystack(i) {
    var h = hay[i];
    if (h === undefined) {
      var c = cases[i];
      h = [suites[c.s], c.id, c.nodeid, (c.tags || []).join(" "), c.metric, c.reason, c.output]
        .map(asText).join("\n").toLowerCase();
      hay[i] = h;
    }
    return h;
  }
  function score(v) {
    if (typeof v !== "number") { return v === undefined || v === null ? "—" : String(v); }
    if (Number.isInteger(v)) { return String(v); }
    var a = Math.abs(v);
    return (a >= 1e4 || a < 1e-3) ? v.toExponential(2) : String(Number(v.toPrecision(3)));
  }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function applyFilter() {
    var terms = state.terms, only = state.failuresOnly;
    matches = [];
    for (var i = 0; i < cases.length; i++) {
      if (only && status(cases[i]) !== "fail") { continue; }
      if (terms.length) {
        var h = haystack(i), ok = true;
        for (var t = 0; t < terms.length; t++) {
          if (h.indexOf(terms[t]) === -1) { ok = false; break; }
        }
        if (!ok) { continue; }
      }
      matches.push(i);
    }
    state.page = 0;
    render();
  }

  function caseRow(i) {
    var c = cases[i], st = status(c);
    var tr = el("tr", "case-row " + st);
    tr.dataset.index = String(i);
    tr.dataset.caseId = asText(c.id);
    tr.tabIndex = 0;
    tr.setAttribute("aria-expanded", state.open[i] ? "true" : "false");
    if (state.open[i]) { tr.classList.add("open"); }
    var tdStatus = el("td", "case-status");
    tdStatus.appendChild(el("span", "caret", state.open[i] ? "▾" : "▸"));
    tdStatus.appendChild(el("span", "badge " + st, st));
    tr.appendChild(tdStatus);
    var suite = asText(suites[c.s]);
    var tdSuite = el("td", "case-suite", suite);
    tdSuite.title = suite;
    tr.appendChild(tdSuite);
    var tdId = el("td", "case-id", asText(c.id));
    tdId.title = asText(c.nodeid || c.id);
    tr.appendChild(tdId);
    var tdTags = el("td", "case-tags");
    (c.tags || []).forEach(function (tag) { tdTags.appendChild(el("span", "tag", tag)); });
    tr.appendChild(tdTags);
    tr.appendChild(el("td", "num case-score", score(c.value)));
    var reason = asText(c.reason);
    var tdReason = el("td", "case-reason", reason);
    tdReason.title = reason.length > 500 ? reason.slice(0, 500) + "…" : reason;
    tr.appendChild(tdReason);
    return tr;
  }

  function block(title, value) {
    var div = el("div", "block");
    div.appendChild(el("h4", null, title));
    var text = asText(value);
    div.appendChild(el("pre", value === undefined || value === null ? "muted" : null,
      text === "" && value !== "" ? "(none)" : (value === "" ? "(empty string)" : text)));
    return div;
  }
  function fact(parent, label, value) {
    if (value === undefined || value === null || value === "") { return; }
    var span = el("span");
    span.appendChild(el("b", null, label));
    span.appendChild(document.createTextNode(String(value)));
    parent.appendChild(span);
  }
  function detailRow(i) {
    var c = cases[i];
    var tr = el("tr", "detail-row");
    tr.dataset.index = String(i);
    var td = el("td");
    td.colSpan = 6;
    var grid = el("div", "detail");
    grid.appendChild(block("Prompt", c.prompt));
    grid.appendChild(block("Output", c.output));
    grid.appendChild(block(c.expected_label || "Expected", c.expected));
    if (c.reason && c.reason.length > 80) { grid.appendChild(block("Reason", c.reason)); }
    if (c.judge) { grid.appendChild(block("Judge", c.judge)); }
    if (c.ranking) { grid.appendChild(block("Ranking (Bradley-Terry, Elo scale, interval)", c.ranking)); }
    if (c.retrieved) { grid.appendChild(block("Retrieved passages (best first)", c.retrieved)); }
    if (c.trajectory) { grid.appendChild(block("Agent trajectory, step by step", c.trajectory)); }
    if (c.flags) { grid.appendChild(block("Flagged: the output tries to instruct the judge", c.flags)); }
    var facts = el("div", "facts");
    fact(facts, "node", c.nodeid);
    fact(facts, "metric", c.metric);
    fact(facts, "score", c.value === undefined ? undefined : score(c.value));
    fact(facts, "source", c.source);
    fact(facts, "engine", c.engine);
    fact(facts, "model", c.model);
    fact(facts, "cached", c.cached === undefined ? undefined : (c.cached ? "yes" : "no"));
    fact(facts, "completion tokens", c.tokens);
    var tm = c.timings || {};
    fact(facts, "e2e", typeof tm.e2e_s === "number" ? tm.e2e_s.toFixed(3) + " s" : undefined);
    fact(facts, "ttft", typeof tm.ttft_s === "number" ? tm.ttft_s.toFixed(3) + " s" : undefined);
    fact(facts, "tpot", typeof tm.tpot_s === "number" ? (1000 * tm.tpot_s).toFixed(1) + " ms" : undefined);
    fact(facts, "batch", tm.batch_size);
    grid.appendChild(facts);
    td.appendChild(grid);
    tr.appendChild(td);
    return tr;
  }

  function render() {
    var pages = Math.max(1, Math.ceil(matches.length / pageSize));
    if (state.page >= pages) { state.page = pages - 1; }
    if (state.page < 0) { state.page = 0; }
    var start = state.page * pageSize, end = Math.min(start + pageSize, matches.length);
    var frag = document.createDocumentFragment();
    for (var k = start; k < end; k++) {
      var i = matches[k];
      frag.appendChild(caseRow(i));
      if (state.open[i]) { frag.appendChild(detailRow(i)); }
    }
    if (!matches.length) {
      var tr = el("tr", "empty-row"), td = el("td", "empty muted",
        cases.length ? "No cases match the filter." : "No cases were scored in this run.");
      td.colSpan = 6;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    rowsEl.replaceChildren(frag);
    var all = matches.length === cases.length ? "" : " (" + cases.length + " in all)";
    countEl.textContent = matches.length
      ? "Showing " + (start + 1) + "–" + end + " of " + matches.length + " cases" + all
      : "0 of " + cases.length + " cases";
    infoEl.textContent = "Page " + (state.page + 1) + " of " + pages;
    prevEl.disabled = state.page === 0;
    nextEl.disabled = state.page >= pages - 1;
    pagerEl.hidden = pages <= 1;
  }

  function toggle(tr) {
    var i = Number(tr.dataset.index);
    var open = !state.open[i];
    if (open) { state.open[i] = true; } else { delete state.open[i]; }
    tr.classList.toggle("open", open);
    tr.setAttribute("aria-expanded", open ? "true" : "false");
    tr.querySelector(".caret").textContent = open ? "▾" : "▸";
    var next = tr.nextElementSibling;
    if (open) {
      rowsEl.insertBefore(detailRow(i), next);
    } else if (next && next.classList.contains("detail-row")) {
      rowsEl.removeChild(next);
    }
  }

  rowsEl.addEventListener("click", function (ev) {
    if (ev.target.closest(".detail-row")) { return; }
    var tr = ev.target.closest("tr.case-row");
    if (tr) { toggle(tr); }
  });
  rowsEl.addEventListener("keydown", function (ev) {
    if ((ev.key === "Enter" || ev.key === " ") && ev.target.classList.contains("case-row")) {
      ev.preventDefault();
      toggle(ev.target);
    }
  });

  var timer = null;
  function onFilter() {
    state.terms = filterEl.value.toLowerCase().split(/\s+/).filter(Boolean);
    applyFilter();
  }
  filterEl.addEventListener("input", function () {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(onFilter, cases.length > 5000 ? 200 : 60);
  });
  filterEl.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") { if (timer) { clearTimeout(timer); } onFilter(); }
  });
  failEl.addEventListener("change", function () {
    state.failuresOnly = failEl.checked;
    applyFilter();
  });
  prevEl.addEventListener("click", function () { state.page -= 1; render(); });
  nextEl.addEventListener("click", function () { state.page += 1; render(); });
  Array.prototype.forEach.call(document.querySelectorAll("a.suite-link"), function (a) {
    a.addEventListener("click", function () {
      filterEl.value = a.dataset.suite;
      onFilter();
    });
  });

  $("aie-controls").hidden = false;
  tableEl.hidden = false;
  // A reload keeps form state in some browsers: start from what the controls show.
  state.failuresOnly = failEl.checked;
  state.terms = filterEl.value.toLowerCase().split(/\s+/).filter(Boolean);
  applyFilter();
}());
