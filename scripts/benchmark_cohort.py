#!/usr/bin/env python3
"""Benchmark: cohort throughput (cases/minute) with 1 and 2 workers, in one run.

    python scripts/benchmark_cohort.py [--cases 8] [--spacing 1.0 1.0 1.5]

Writes 8 phantom CTAs (vessel field of view) with their artery groups, then runs the
cohort command's engine (CalciumScoringLib.cohort.runner.run_cohort: QC, shortening, adaptive
threshold calcification, scoring, NIfTI + .seg.nrrd + .mrb + PNG per case) into two
fresh output folders, once with 1 worker and once with 2, and prints cases/minute.
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
    rates = {}
    for workers in (1, 2):
        t = time.perf_counter()
        res = run_cohort(cases, root / f"out{workers}", Options(threads=1), workers=workers,
                         log=lambda m: None)
        dt = time.perf_counter() - t
        ok = sum(r["status"] == "ok" for r in res)
        rates[workers] = ok / dt * 60
        print(f"workers={workers}: {ok}/{len(cases)} ok in {dt:6.1f} s -> {rates[workers]:5.2f} cases/minute")
    print(f"speed-up with 2 workers: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
