"""The cohort review page: which cases to look at first.

Every cohort run writes ``OUTPUT/index.html`` and ``OUTPUT/review_queue.csv``, rewritten
atomically as cases finish.  The page is static and works offline (its script and style
are inside it; no server, no network): one row per case with a thumbnail of its report,
the burden and state of each group, its QC flags, time, and links to ``scene.mrb``
(opens in Slicer), ``scores.csv`` and ``report.png``; a failed case with its error.

Rows are ordered by need of review (:func:`priority`): failed, implausible arteries,
groups not found, calcium unsure (a calcium network that does not recognise the
arteries, calcium that is not reproducible, metal), other scores not valid, then the
rest.  The page filters by flag and sorts by any column (click a header); the address
may carry the choice (``index.html#sort=burden_renal&dir=desc&flag=metal``).  At the top:
the burden per group as a strip plot, and the cases per flag and per state.
"""

import html
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .claims import write_atomic

GROUPS = ("aorta", "iliac", "mesenteric", "renal")
#: review order: the first rule a case meets gives its priority (lower = look first)
PRIORITIES = (
    ("failed", lambda r: r["status"] == "failed"),
    ("arteries implausible", lambda r: "arteries_implausible" in r["flags"]),
    ("groups not found", lambda r: "groups_not_found" in r["flags"]),
    ("calcium unsure or metal", lambda r: bool({"calcium_network_unsure", "calcium_not_reproducible",
                                                "metal_not_calcium", "metal"} & set(r["flags"]))),
    ("scores not valid", lambda r: r.get("scores_valid") is False),
    ("measured", lambda r: True),
)
#: colour-blind safe (Okabe-Ito) colours of the groups in the strip plot
COLOURS = {"aorta": "#D55E00", "iliac": "#0072B2", "mesenteric": "#009E73", "renal": "#CC79A7"}
THUMB_WIDTH = 200


def priority(row):
    """``(rank, reason)`` of a case row (see :data:`PRIORITIES`)."""
    for rank, (reason, rule) in enumerate(PRIORITIES):
        if rule(row):
            return rank, reason
    return len(PRIORITIES), ""


def thumbnail(report, out):
    """A small PNG of ``report`` (``THUMB_WIDTH`` pixels wide); returns ``out`` or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    try:
        img = mpimg.imread(str(report))
    except (OSError, ValueError, SyntaxError):
        return None
    step = max(int(np.ceil(img.shape[1] / THUMB_WIDTH)), 1)
    small = img[::step, ::step]
    mpimg.imsave(str(out), small)
    return out


def case_row(out_root, case_id, summary=None):
    """What the page shows of one case, read from its folder (or its error record)."""
    out_root = Path(out_root)
    folder = out_root / case_id
    row = {"case_id": case_id, "status": (summary or {}).get("status", "pending"), "flags": [],
           "scores_valid": None, "seconds": None, "error": "", "thumb": "", "report": "",
           "scene": "", "scores": ""}
    for g in GROUPS:
        row[f"burden_{g}"], row[f"state_{g}"] = None, ""
    rec_path = folder / "scores.json"
    err_path = out_root / f"{case_id}.error.json"
    if rec_path.exists() and row["status"] != "failed":  # this run's failure wins over old outputs
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            rec = None
        if rec is not None:
            row["status"] = "ok" if row["status"] == "pending" else row["status"]
            row["flags"] = [f["code"] for f in rec.get("qc", [])]
            row["scores_valid"] = rec.get("scores_valid")
            row["seconds"] = rec.get("seconds")
            scores = {r["region"]: r for r in rec.get("scores", [])}
            for g in GROUPS:
                row[f"burden_{g}"] = (scores.get(g) or {}).get("burden")
                row[f"state_{g}"] = (rec.get("states", {}).get(g) or {}).get("state", "")
            for key, name in (("report", "report.png"), ("scene", "scene.mrb"),
                              ("scores", "scores.csv")):
                if (folder / name).exists():
                    row[key] = f"{case_id}/{name}"
            if row["report"]:
                thumb = folder / "thumb.png"
                if not thumb.exists() or thumb.stat().st_mtime < (folder / "report.png").stat().st_mtime:
                    thumbnail(folder / "report.png", thumb)
                if thumb.exists():
                    row["thumb"] = f"{case_id}/thumb.png"
    elif err_path.exists() or row["status"] == "failed":
        row["status"] = "failed"
        try:
            row["error"] = json.loads(err_path.read_text()).get("error", "")
        except (OSError, ValueError):
            row["error"] = (summary or {}).get("error", "")
        row["error"] = row["error"] or (summary or {}).get("error", "")
    row["rank"], row["reason"] = priority(row)
    return row


def queue(rows):
    """The rows in review order (priority, then case id)."""
    return sorted(rows, key=lambda r: (r["rank"], r["case_id"]))


def write_queue(out_root, rows):
    """``OUTPUT/review_queue.csv`` in the page's order (written whole or not at all)."""
    cols = ["case_id", "rank", "reason", "status", "scores_valid", "qc_flags", "seconds", "error"] + \
        [f"{k}_{g}" for g in GROUPS for k in ("state", "burden")] + ["scene", "scores", "report"]
    table = pd.DataFrame([dict(r, qc_flags=";".join(r["flags"])) for r in rows], columns=cols)
    return write_atomic(Path(out_root) / "review_queue.csv", lambda p: table.to_csv(p, index=False))


def strip_plot(rows, width=520, height=180):
    """An SVG strip plot of the burden per group (one dot a measured case)."""
    pad, top = 40, 24
    vals = [r[f"burden_{g}"] for r in rows for g in GROUPS if r[f"burden_{g}"] is not None]
    hi = max(vals + [1e-3])
    out = [f'<svg width="{width}" height="{height}" '
           f'role="img" aria-label="burden per group">']
    col = (width - pad) / len(GROUPS)
    rng = np.random.default_rng(0)
    for i, g in enumerate(GROUPS):
        x0 = pad + col * (i + 0.5)
        out.append(f'<text x="{x0:.0f}" y="{height - 4}" text-anchor="middle" font-size="11">{g}</text>')
        for r in rows:
            v = r[f"burden_{g}"]
            if v is None:
                continue
            y = top + (height - 30 - top) * (1 - v / hi)
            x = x0 + rng.uniform(-col * 0.3, col * 0.3)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLOURS[g]}" '
                       f'fill-opacity="0.7"><title>{html.escape(r["case_id"])}: {v:.4f}</title></circle>')
    for frac in (0, 0.5, 1):
        y = top + (height - 30 - top) * (1 - frac)
        out.append(f'<text x="{pad - 4}" y="{y + 4:.0f}" text-anchor="end" font-size="10">'
                   f'{hi * frac:.3g}</text><line x1="{pad}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#ddd"/>')
    out.append('<text x="4" y="12" font-size="10">burden (calcified / artery volume)</text></svg>')
    return "".join(out)


def counts(rows):
    """``({flag: cases}, {state: cases})`` over the finished cases."""
    flags, states = {}, {}
    for r in rows:
        for f in set(r["flags"]):
            flags[f] = flags.get(f, 0) + 1
        for g in GROUPS:
            s = r[f"state_{g}"]
            if s:
                states[s] = states.get(s, 0) + 1
    return dict(sorted(flags.items(), key=lambda kv: -kv[1])), states


def write_review(out_root, rows):
    """Write ``index.html`` and ``review_queue.csv`` of ``rows`` (from :func:`case_row`),
    each atomically; returns the page's path."""
    rows = queue(rows)
    write_queue(out_root, rows)
    page = _page(rows)
    return write_atomic(Path(out_root) / "index.html", lambda p: Path(p).write_text(page))


def _page(rows):
    from .review_page import PAGE

    flags, states = counts(rows)
    failed = sum(r["status"] == "failed" for r in rows)
    glance = (f'<p>{len(rows)} cases: {len(rows) - failed} finished, {failed} failed.</p>'
              + strip_plot([r for r in rows if r["status"] != "failed"])
              + "<table class='counts'><tr><th>flag</th><th>cases</th></tr>"
              + ("".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in flags.items())
                 or "<tr><td colspan='2'>none</td></tr>")
              + "</table><table class='counts'><tr><th>group state</th><th>groups</th></tr>"
              + "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in states.items())
              + "</table>")
    data = json.dumps(rows, default=lambda v: None).replace("</", "<\\/")
    return PAGE.replace("@GLANCE@", glance).replace("@DATA@", data).replace(
        "@FLAGS@", "".join(f'<option value="{html.escape(f)}">{html.escape(f)}</option>'
                           for f in flags))


class ReviewPage:
    """The page of one run, kept up to date as cases finish: each case's row is read once,
    when it reports, and the page is rewritten (atomically) at most every ``every_s``
    seconds and at the end.  A shard (``--shard i/N``) writes no page: it sees only its own
    cases; a last run without ``--shard`` skips every finished case and writes it."""

    def __init__(self, out_root, cases, shard=None, every_s=5.0):
        self.out_root, self.every_s, self.enabled = Path(out_root), every_s, not shard
        self.rows = {c.case_id: case_row(out_root, c.case_id, {"status": "pending"})
                     for c in cases} if self.enabled else {}
        self.last = 0.0

    def update(self, summary):
        if not self.enabled:
            return
        self.rows[summary["case_id"]] = case_row(self.out_root, summary["case_id"], summary)
        if time.perf_counter() - self.last >= self.every_s:
            self.write()

    def write(self):
        """Write the page now; returns its path (None without a page or when it cannot be
        written: the page is a view of the outputs, never a reason to stop the run)."""
        if not self.enabled:
            return None
        self.last = time.perf_counter()
        try:
            return write_review(self.out_root, list(self.rows.values()))
        except OSError:
            return None
