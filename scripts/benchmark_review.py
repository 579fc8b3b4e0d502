#!/usr/bin/env python3
"""How the cohort review page scales: a generated cohort of 1,000 finished cases (and one
of 10 as the reference, in the same process), the page written and rendered in headless
chromium: Python time to read the cases and write the page, page size, the browser's
time to render the table on load and after a sort (``data-render-ms``), and the ratios
1,000 / 10.

    python scripts/benchmark_review.py [--cases 1000]
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def fake_cohort(root, n, seed=0):
    """``n`` finished cases with scores.json, scores.csv, scene.mrb and report.png (a tiny
    PNG), flags and states drawn at random; one in 20 failed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg

    from CalciumScoringLib.cohort.review import GROUPS

    rng = np.random.default_rng(seed)
    png = root / "_report.png"
    mpimg.imsave(str(png), rng.random((120, 600, 3)))
    flags = ["metal_not_calcium", "groups_not_found", "side_arteries_short", "aorta_truncated",
             "arteries_implausible", "calcium_not_reproducible"]
    for i in range(n):
        cid = f"case{i:04d}"
        if i % 20 == 7:
            (root / f"{cid}.error.json").write_text(json.dumps({"error": "InputError: broken"}))
            continue
        d = root / cid
        d.mkdir()
        shutil.copy(png, d / "report.png")
        for name in ("scene.mrb", "scores.csv"):
            (d / name).write_bytes(b"x")
        qc = [{"code": f} for f in flags if rng.random() < 0.08]
        states = {g: {"state": "measured" if rng.random() < 0.9 else "not found"} for g in GROUPS}
        scores = [{"region": g, "burden": None if states[g]["state"] != "measured"
                   else float(rng.gamma(1.0, 0.01))} for g in GROUPS]
        (d / "scores.json").write_text(json.dumps({"qc": qc, "states": states, "scores": scores,
                                                   "scores_valid": rng.random() < 0.9,
                                                   "seconds": float(rng.uniform(30, 60))}))
    return [f"case{i:04d}" for i in range(n)]


def render_ms(browser, page, fragment="", key="load-ms"):
    r = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--virtual-time-budget=5000", "--dump-dom", page.as_uri() + fragment],
                       capture_output=True, text=True, timeout=300)
    m = re.search(rf'data-{key}="([\d.]+)"', r.stdout)
    return float(m.group(1)) if m else float("nan"), len(re.findall(r"<tr data-case=", r.stdout))


def measure(n, browser):
    from CalciumScoringLib.cohort.review import case_row, write_review

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = fake_cohort(root, n)
        t = time.perf_counter()
        page = write_review(root, [case_row(root, c, {"status": "ok"}) for c in ids])
        build = time.perf_counter() - t
        size = page.stat().st_size
        load = render_ms(browser, page) if browser else (float("nan"), 0)
        sort = render_ms(browser, page, "#sort=burden_renal&dir=desc&resort=case_id", "resort-ms") \
            if browser else (float("nan"), 0)
    return {"cases": n, "build_s": build, "page_kb": size / 1024, "render_ms": load[0],
            "sort_ms": sort[0], "rows": load[1]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=1000)
    args = ap.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found: only the Python side is measured")
    ref, big = measure(10, browser), measure(args.cases, browser)
    for r in (ref, big):
        print(f"{r['cases']:5d} cases: page written in {r['build_s']:.2f} s ({r['page_kb']:.0f} KiB of HTML), "
              f"rendered in {r['render_ms']:.0f} ms ({r['rows']} rows), "
              f"sorted again in {r['sort_ms']:.0f} ms")
    print(f"ratio {args.cases} / 10 cases: write x{big['build_s'] / ref['build_s']:.0f}, render "
          f"x{big['render_ms'] / max(ref['render_ms'], 0.1):.0f}, sort "
          f"x{big['sort_ms'] / max(ref['sort_ms'], 0.1):.0f}; a sort of {args.cases} rows "
          f"{'under' if big['sort_ms'] < 200 else 'OVER'} 200 ms (no visible lag)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
