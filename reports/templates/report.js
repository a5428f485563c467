/* pytest-aie report: renders the case rows from the embedded data, one page at a time.
   The data is columnar and gzip-compressed (see pytest_aie/report/blob.py): the table once,
   the drill-down in chunks decompressed when a case of the chunk is shown.
   Model output, prompts, reasons and ids are untrusted: they are only ever written with
   textContent or as attribute values, never parsed as HTML. */
(function () {
  "use strict";
  var dataEl = document.getElementById("aie-data");
  if (!dataEl) { return; }
  performance.mark("aie-script");
  var blob = JSON.parse(dataEl.textContent);
  performance.mark("aie-blob");
  var pageSize = blob.page_size || 200, chunkSize = blob.chunk || 500;
  var FLAG = blob.flags || { cached: 1, truncated: 2, flaky: 4, error: 8 };
  var STATUS = { p: "pass", f: "fail", s: "scored", u: "unmeasured" };
  var T = null;  // the table, once decompressed
  var chunks = [];  // drill-down chunks: undefined, a promise, or the data

  function $(id) { return document.getElementById(id); }
  var filterEl = $("aie-filter"), failEl = $("aie-failures-only"), flakyEl = $("aie-flaky-only");
  var suiteEl = $("aie-suite"), metricEl = $("aie-metric"), tagEl = $("aie-tag"), modelEl = $("aie-model");
  var countEl = $("aie-count"), tableEl = $("aie-cases"), rowsEl = $("aie-case-rows");
  var pagerEl = $("aie-pager"), prevEl = $("aie-prev"), nextEl = $("aie-next"), infoEl = $("aie-page-info");

  var state = { terms: [], page: 0, open: Object.create(null) };
  var matches = [];
  var hay = null;

  function unpack(b64) {
    var bin = atob(b64), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) { bytes[i] = bin.charCodeAt(i); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }
  function chunk(k) {
    if (chunks[k] === undefined) {
      chunks[k] = unpack(blob.detail[k]).then(function (c) { chunks[k] = c; return c; });
    }
    return chunks[k];
  }
  function detailOf(i) {  // the drill-down of case i, if its chunk is loaded
    var c = chunks[Math.floor(i / chunkSize)];
    if (!c || typeof c.then === "function") { return null; }
    var d = c.rows[i % chunkSize], t = c.t;
    return { d: d, prompt: typeof d.p === "number" ? t[d.p] : d.p, output: typeof d.o === "number" ? t[d.o] : d.o };
  }

  function asText(v) {
    if (v === undefined || v === null) { return ""; }
    return typeof v === "string" ? v : JSON.stringify(v, null, 2);
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
  // Lowercase search text per case, built in slices after the first page is shown (so a
  // filter typed later only scans), or all at once when a filter needs it first.
  var hayBuilt = 0, lower = null;
  function buildHay(upTo) {
    if (!hay) {
      hay = new Array(T.n);
      lower = {};
      ["suites", "metrics", "models", "tags", "outputs", "reasons"].forEach(function (k) {
        lower[k] = T[k].map(function (s) { return String(s).toLowerCase(); });
      });
    }
    var tags = lower.tags;
    for (var i = hayBuilt; i < upTo; i++) {
      var tg = T.tg[i], tt = "";
      for (var k = 0; k < tg.length; k++) { tt += tags[tg[k]] + " "; }
      hay[i] = lower.suites[T.s[i]] + "\n" + String(T.id[i]).toLowerCase() + "\n" + tt + "\n" +
        lower.metrics[T.m[i]] + "\n" + lower.models[T.md[i]] + "\n" + lower.reasons[T.r[i]] + "\n" +
        lower.outputs[T.o[i]];
    }
    hayBuilt = Math.max(hayBuilt, upTo);
  }
  function haystack() {
    if (hayBuilt < T.n) { buildHay(T.n); }
    return hay;
  }
  function buildHayLater() {
    if (hayBuilt >= T.n) { document.body.dataset.searchReady = "true"; return; }
    buildHay(Math.min(T.n, hayBuilt + 5000));
    setTimeout(buildHayLater, 0);
  }
  function selected(sel) { return sel.value === "" ? -1 : Number(sel.value); }

  function applyFilter() {
    var terms = state.terms, only = failEl.checked, flaky = flakyEl.checked;
    var suite = selected(suiteEl), metric = selected(metricEl), tag = selected(tagEl), model = selected(modelEl);
    var st = T.st, f = T.f, s = T.s, m = T.m, md = T.md, tg = T.tg, h = terms.length ? haystack() : null;
    matches = [];
    for (var i = 0; i < T.n; i++) {
      if (only && st.charCodeAt(i) !== 102) { continue; }  // "f"
      if (flaky && !(f[i] & FLAG.flaky)) { continue; }
      if (suite >= 0 && s[i] !== suite) { continue; }
      if (metric >= 0 && m[i] !== metric) { continue; }
      if (model >= 0 && md[i] !== model) { continue; }
      if (tag >= 0 && tg[i].indexOf(tag) === -1) { continue; }
      if (h) {
        var hi = h[i], ok = true;
        for (var t = 0; t < terms.length; t++) {
          if (hi.indexOf(terms[t]) === -1) { ok = false; break; }
        }
        if (!ok) { continue; }
      }
      matches.push(i);
    }
    state.page = 0;
    render();
  }

  function caseRow(i) {
    var st = STATUS[T.st.charAt(i)] || "unmeasured", open = !!state.open[i];
    var tr = el("tr", "case-row " + st);
    tr.dataset.index = String(i);
    tr.dataset.caseId = asText(T.id[i]);
    tr.tabIndex = 0;
    tr.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) { tr.classList.add("open"); }
    var tdStatus = el("td", "case-status");
    tdStatus.appendChild(el("span", "caret", open ? "▾" : "▸"));
    tdStatus.appendChild(el("span", "badge " + st, st));
    var fl = T.f[i];
    if (fl & FLAG.flaky) { tdStatus.appendChild(el("span", "flag flaky", "flaky")); }
    if (fl & FLAG.truncated) { tdStatus.appendChild(el("span", "flag truncated", "cut")); }
    tr.appendChild(tdStatus);
    var suite = asText(T.suites[T.s[i]]);
    var tdSuite = el("td", "case-suite", suite);
    tdSuite.title = suite + " · " + asText(T.metrics[T.m[i]]) + (T.models.length > 1 ? " · " + asText(T.models[T.md[i]]) : "");
    tr.appendChild(tdSuite);
    tr.appendChild(el("td", "case-id", asText(T.id[i])));
    var tdTags = el("td", "case-tags");
    T.tg[i].forEach(function (k) { tdTags.appendChild(el("span", "tag", T.tags[k])); });
    tr.appendChild(tdTags);
    tr.appendChild(el("td", "num case-score", score(T.v[i])));
    tr.appendChild(el("td", "case-output", T.outputs[T.o[i]]));
    var reason = T.reasons[T.r[i]];
    var tdReason = el("td", "case-reason", reason);
    tdReason.title = reason;
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
  function seconds(v) { return typeof v === "number" ? v.toFixed(3) + " s" : undefined; }
  // Every record of one case (same suite, case id and model): one per metric. Indexed on the
  // first drill-down, so opening the page costs nothing.
  var siblings = null;
  function scoresOf(i) {
    if (!siblings) {
      siblings = new Map();
      for (var j = 0; j < T.n; j++) {
        var key = T.s[j] + "\u0000" + T.id[j] + "\u0000" + T.md[j], list = siblings.get(key);
        if (list) { list.push(j); } else { siblings.set(key, [j]); }
      }
    }
    return siblings.get(T.s[i] + "\u0000" + T.id[i] + "\u0000" + T.md[i]) || [i];
  }
  function scoresBlock(i) {
    var div = el("div", "block scores");
    div.appendChild(el("h4", null, "Every score of this case"));
    var table = el("table", "case-scores"), body = el("tbody");
    scoresOf(i).forEach(function (j) {
      var tr = el("tr", j === i ? "this" : null), st = STATUS[T.st.charAt(j)] || "unmeasured";
      tr.appendChild(el("td", null, T.metrics[T.m[j]]));
      var tdSt = el("td");
      tdSt.appendChild(el("span", "badge " + st, st));
      tr.appendChild(tdSt);
      tr.appendChild(el("td", "num", score(T.v[j])));
      tr.appendChild(el("td", null, T.reasons[T.r[j]]));
      body.appendChild(tr);
    });
    table.appendChild(body);
    div.appendChild(table);
    return div;
  }
  function fillDetail(tr, i) {
    var got = detailOf(i), td = tr.firstChild;
    td.replaceChildren();
    if (!got) { td.appendChild(el("p", "muted", "Loading…")); return; }
    var c = got.d, grid = el("div", "detail");
    grid.appendChild(block("Prompt", got.prompt));
    grid.appendChild(block("Output", got.output));
    grid.appendChild(block(c.xl || "Expected", c.x));
    if (c.reason) { grid.appendChild(block("Reason", c.reason)); }
    if (scoresOf(i).length > 1) { grid.appendChild(scoresBlock(i)); }
    if (c.error) { grid.appendChild(block("Error", c.error)); }
    if (c.judge) { grid.appendChild(block("Judge", c.judge)); }
    if (c.ranking) { grid.appendChild(block("Ranking (Bradley-Terry, Elo scale, interval)", c.ranking)); }
    if (c.retrieved) { grid.appendChild(block("Retrieved passages (best first)", c.retrieved)); }
    if (c.trajectory) { grid.appendChild(block("Agent trajectory, step by step", c.trajectory)); }
    if (c.samples) { grid.appendChild(block("Samples", c.samples)); }
    if (c.flags) { grid.appendChild(block("Flagged: the output tries to instruct the judge", c.flags)); }
    var facts = el("div", "facts"), fl = T.f[i], tm = c.timings || {};
    fact(facts, "node", c.nodeid);
    fact(facts, "metric", T.metrics[T.m[i]]);
    fact(facts, "model", T.models[T.md[i]]);
    fact(facts, "score", c.value === undefined ? undefined : String(c.value));
    fact(facts, "reason", c.reason ? undefined : T.reasons[T.r[i]]);
    fact(facts, "source", c.source);
    fact(facts, "engine", c.engine);
    fact(facts, "model id", c.model_id);
    fact(facts, "adapter", c.adapter);
    fact(facts, "cached", fl & FLAG.cached ? "yes" : "no");
    fact(facts, "finish", c.finish);
    fact(facts, "truncated by max tokens", fl & FLAG.truncated ? "yes" : undefined);
    fact(facts, "consistency", c.consistency);
    fact(facts, "prompt tokens", c.ptokens);
    fact(facts, "completion tokens", c.tokens);
    fact(facts, "e2e", seconds(tm.e2e_s));
    fact(facts, "ttft", seconds(tm.ttft_s));
    fact(facts, "tpot", typeof tm.tpot_s === "number" ? (1000 * tm.tpot_s).toFixed(1) + " ms" : undefined);
    fact(facts, "batch", tm.batch_size);
    grid.appendChild(facts);
    td.appendChild(grid);
    tr.classList.add("ready");
  }
  function detailRow(i) {
    var tr = el("tr", "detail-row");
    tr.dataset.index = String(i);
    var td = el("td");
    td.colSpan = 7;
    tr.appendChild(td);
    fillDetail(tr, i);
    if (!tr.classList.contains("ready")) {
      chunk(Math.floor(i / chunkSize)).then(function () { if (tr.isConnected) { fillDetail(tr, i); } });
    }
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
        T.n ? "No cases match the filter." : "No cases were scored in this run.");
      td.colSpan = 7;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    rowsEl.replaceChildren(frag);
    var all = matches.length === T.n ? "" : " (" + T.n + " in all)";
    countEl.textContent = matches.length
      ? "Showing " + (start + 1) + "–" + end + " of " + matches.length + " cases" + all
      : "0 of " + T.n + " cases";
    infoEl.textContent = "Page " + (state.page + 1) + " of " + pages;
    prevEl.disabled = state.page === 0;
    nextEl.disabled = state.page >= pages - 1;
    pagerEl.hidden = pages <= 1;
    // decompress the drill-down of the cases on this page ahead of a click
    if (end > start) {
      var first = Math.floor(matches[start] / chunkSize), last = Math.floor(matches[end - 1] / chunkSize);
      if (last - first < 4) { for (var c = first; c <= last; c++) { chunk(c); } }
    }
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

  function options(sel, names) {
    names.forEach(function (n, k) {
      var o = el("option", null, n);
      o.value = String(k);
      sel.appendChild(o);
    });
  }

  function start(table) {
    performance.mark("aie-table");
    T = table;
    options(suiteEl, T.suites);
    options(metricEl, T.metrics);
    options(tagEl, T.tags);
    options(modelEl, T.models);
    modelEl.hidden = T.models.length < 2;
    tagEl.hidden = T.tags.length === 0;

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
      if (timer) { clearTimeout(timer); timer = null; }
      state.terms = filterEl.value.toLowerCase().split(/\s+/).filter(Boolean);
      applyFilter();
    }
    filterEl.addEventListener("input", function () {
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(onFilter, T.n > 20000 ? 80 : 30);
    });
    filterEl.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { onFilter(); } });
    [failEl, flakyEl, suiteEl, metricEl, tagEl, modelEl].forEach(function (c) {
      c.addEventListener("change", applyFilter);
    });
    prevEl.addEventListener("click", function () { state.page -= 1; render(); });
    nextEl.addEventListener("click", function () { state.page += 1; render(); });
    Array.prototype.forEach.call(document.querySelectorAll("a.suite-link"), function (a) {
      a.addEventListener("click", function () {
        var k = T.suites.indexOf(a.dataset.suite);
        suiteEl.value = k >= 0 ? String(k) : "";
        applyFilter();
      });
    });

    $("aie-controls").hidden = false;
    tableEl.hidden = false;
    // A reload keeps form state in some browsers: start from what the controls show.
    state.terms = filterEl.value.toLowerCase().split(/\s+/).filter(Boolean);
    applyFilter();
    performance.mark("aie-ready");
    document.body.dataset.ready = "true";
    setTimeout(buildHayLater, 50);
  }

  countEl.textContent = "Loading cases…";
  if (typeof DecompressionStream !== "function") {
    countEl.textContent = "This browser cannot read the case table (it lacks DecompressionStream); the sections above are complete.";
    $("aie-controls").hidden = false;
    return;
  }
  unpack(blob.table).then(start, function (err) {
    countEl.textContent = "The case table could not be read: " + err;
    $("aie-controls").hidden = false;
  });
}());
