"""The page template of :mod:`.review`: style and script inside, nothing fetched.

``@GLANCE@`` (the cohort at a glance), ``@FLAGS@`` (filter options) and ``@DATA@`` (the
rows as JSON) are filled in by :func:`.review.write_review`.  The script renders the
table from the rows, sorts by a clicked column (missing values last), filters by a flag,
and keeps the choice in the address (``#sort=COLUMN&dir=asc|desc&flag=CODE``); the time
the last rendering took is in ``document.body.dataset.renderMs`` (the first in ``loadMs``;
``#...&resort=COLUMN`` sorts once more after loading and keeps that time in ``resortMs``).
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>VascularCalcium cohort review</title>
<style>
body { font-family: sans-serif; margin: 1em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; }
.glance { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
table.counts { border-collapse: collapse; font-size: 0.9em; }
table.counts td, table.counts th { border: 1px solid #ccc; padding: 2px 6px; }
#cases { border-collapse: collapse; font-size: 0.85em; width: 100%; }
#cases th { position: sticky; top: 0; background: #eee; cursor: pointer; user-select: none;
  border: 1px solid #ccc; padding: 3px; }
#cases td { border: 1px solid #ddd; padding: 3px; vertical-align: top; max-width: 24em; }
#cases img { width: 160px; display: block; }
.failed { background: #fde0dc; } .review { background: #fff4d6; }
.nan { color: #b00020; font-weight: bold; } .flag { display: inline-block; margin: 1px;
  padding: 0 3px; background: #e8e8e8; border-radius: 3px; }
</style></head>
<body>
<h1>Cohort review: which cases to look at first</h1>
<div class="glance">@GLANCE@</div>
<h2>Cases <span id="shown"></span></h2>
<label>Only cases with flag <select id="flag"><option value="">(any)</option>@FLAGS@</select></label>
<table id="cases"><thead><tr></tr></thead><tbody></tbody></table>
<script>
"use strict";
const DATA = @DATA@;
const GROUPS = ["aorta", "iliac", "mesenteric", "renal"];
const COLUMNS = [["thumb", "report"], ["case_id", "case"], ["rank", "review"],
  ["status", "status"]].concat(GROUPS.map(g => ["burden_" + g, g + " burden"])).concat(
  [["flags", "QC flags"], ["seconds", "time (s)"], ["links", "files"]]);
let state = {sort: "rank", dir: "asc", flag: ""};

function readHash() {
  const h = new URLSearchParams(location.hash.replace(/^#/, ""));
  for (const k of ["sort", "dir", "flag"]) { if (h.get(k) !== null) state[k] = h.get(k); }
}
function value(r, key) {
  if (key === "flags") return r.flags.join(" ");
  if (key === "rank") return r.rank * 1e6 + 0;
  return r[key];
}
function compare(a, b) {
  const x = value(a, state.sort), y = value(b, state.sort);
  const nx = x === null || x === undefined || x === "", ny = y === null || y === undefined || y === "";
  if (nx || ny) return nx === ny ? a.case_id.localeCompare(b.case_id) : (nx ? 1 : -1);
  let c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
  if (c === 0) c = a.case_id.localeCompare(b.case_id);
  return state.dir === "desc" ? -c : c;
}
function cell(tr, html, cls) {
  const td = document.createElement("td");
  td.innerHTML = html;
  if (cls) td.className = cls;
  tr.appendChild(td);
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;"}[c]));
}
function makeRow(r) {
  const tr = document.createElement("tr");
  tr.dataset.case = r.case_id;
  tr.className = r.status === "failed" ? "failed" : (r.rank < 5 ? "review" : "");
  cell(tr, r.thumb ? `<a href="${esc(r.report)}"><img loading="lazy" src="${esc(r.thumb)}" alt="report of ${esc(r.case_id)}"></a>` : "");
  cell(tr, esc(r.case_id));
  cell(tr, esc(r.reason));
  cell(tr, esc(r.status) + (r.error ? "<br>" + esc(r.error) : "") +
    (r.scores_valid === false ? "<br><span class='nan'>not valid</span>" : ""));
  for (const g of GROUPS) {
    const b = r["burden_" + g], s = r["state_" + g];
    cell(tr, b === null || b === undefined ? `<span class="nan">${esc(s || "-")}</span>`
      : b.toFixed(4) + (s && s !== "measured" ? `<br><span class="nan">${esc(s)}</span>` : ""));
  }
  cell(tr, r.flags.map(f => `<span class="flag">${esc(f)}</span>`).join(" "));
  cell(tr, r.seconds === null || r.seconds === undefined ? "" : String(r.seconds));
  cell(tr, [["scene", "scene.mrb"], ["scores", "scores.csv"], ["report", "report.png"]]
    .filter(([k]) => r[k]).map(([k, l]) => `<a href="${esc(r[k])}">${l}</a>`).join("<br>"));
  return tr;
}
const BUILT = new Map();  // each row is built once; a sort or filter only moves rows
function rowOf(r) {
  if (!BUILT.has(r.case_id)) BUILT.set(r.case_id, makeRow(r));
  return BUILT.get(r.case_id);
}
function render() {
  const t0 = performance.now();
  const rows = DATA.filter(r => !state.flag || r.flags.includes(state.flag)).sort(compare);
  const head = document.querySelector("#cases thead tr");
  head.innerHTML = "";
  for (const [key, label] of COLUMNS) {
    const th = document.createElement("th");
    th.textContent = label + (state.sort === key ? (state.dir === "asc" ? " \\u25b2" : " \\u25bc") : "");
    th.dataset.key = key;
    th.onclick = () => {
      state.dir = state.sort === key && state.dir === "asc" ? "desc" : "asc";
      state.sort = key;
      location.hash = new URLSearchParams(state).toString();
    };
    head.appendChild(th);
  }
  const frag = document.createDocumentFragment();
  for (const r of rows) frag.appendChild(rowOf(r));
  document.querySelector("#cases tbody").replaceChildren(frag);
  document.getElementById("shown").textContent = `(${rows.length} of ${DATA.length})`;
  document.getElementById("flag").value = state.flag;
  document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
}
document.getElementById("flag").onchange = e => {
  state.flag = e.target.value;
  location.hash = new URLSearchParams(state).toString();
};
window.addEventListener("hashchange", () => { readHash(); render(); });
readHash();
render();
document.body.dataset.loadMs = document.body.dataset.renderMs;
const again = new URLSearchParams(location.hash.replace(/^#/, "")).get("resort");
if (again) {  // a second sort of the rendered table (benchmark_review.py times it)
  state.sort = again;
  render();
  document.body.dataset.resortMs = document.body.dataset.renderMs;
}
</script>
</body></html>
"""
