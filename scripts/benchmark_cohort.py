#!/usr/bin/env python3
"""Benchmark: cohort throughput (cases/minute), local processes and Dask, in one run.

    python scripts/benchmark_cohort.py [--cases 8] [--spacing 1.0 1.0 1.5] [--no-dask]

Writes 8 phantom CTAs (vessel field of view) with their artery groups, then runs the
cohort command's engine (CalciumScoringLib.cohort.runner.run_cohort: QC, plausibility,
shortening, adaptive threshold calcification, scoring, NIfTI + .seg.nrrd + .mrb + PNG per
case) into fresh output folders: with 1 and 2 local worker processes (``--workers``), then
through a Dask LocalCluster of 1 and 2 workers (``--scheduler local:N``, cluster start-up
included), and prints cases/minute and the ratios to ``--workers 1``.
"""

import argparse
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

from CalciumScoringLib.cohort.runner import Case, Options, run_cohort
from CalciumScoringLib.phantoms.generator import make_phantom


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--spacing", type=float, nargs=3, default=[1.0, 1.0, 1.5])
    ap.add_argument("--no-dask", action="store_true")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vc-bench-"))
    cases = []
    for i in range(a.cases):
        ph = make_phantom(200 + i, spacing=tuple(a.spacing), fov="vessels")
        ct, g = root / f"case{i}.nii.gz", root / f"case{i}_groups.nii.gz"
        sitk.WriteImage(ph.ct, str(ct))
        sitk.WriteImage(ph.groups, str(g))
        cases.append(Case(f"case{i}", str(ct), str(g)))
    print(f"{a.cases} phantom cases of {ph.ct.GetSize()} voxels at {tuple(a.spacing)} mm in {root}")
    runs = [("--workers 1", dict(workers=1)), ("--workers 2", dict(workers=2))]
    if not a.no_dask:
        runs += [("--scheduler local:1", dict(scheduler="local:1")),
                 ("--scheduler local:2", dict(scheduler="local:2"))]
    run_cohort(cases[:1], root / "warm-up", Options(threads=1), log=lambda m: None)  # imports
    rates = {}
    for i, (name, how) in enumerate(runs):
        t = time.perf_counter()
        res = run_cohort(cases, root / f"out{i}", Options(threads=1), log=lambda m: None, **how)
        dt = time.perf_counter() - t
        ok = sum(r["status"] == "ok" for r in res)
        rates[name] = ok / dt * 60
        print(f"{name:22s}: {ok}/{len(cases)} ok in {dt:6.1f} s -> {rates[name]:5.2f} cases/minute"
              f"  (ratio to --workers 1: {rates[name] / rates['--workers 1']:.2f})")


if __name__ == "__main__":  # guard needed: worker processes import this file
    main()
