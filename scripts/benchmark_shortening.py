#!/usr/bin/env python3
"""Benchmark: production shortening vs the literal full-volume reference, in one run.

    python scripts/benchmark_shortening.py [--size 400 400 500]

Builds a 1 mm label map with all four artery groups (phantom generator), runs the
literal reference (Testing/shortening_reference.py: full-volume dilations, exactly
the published steps) and the production implementation (both growth modes), checks
that the dilation-mode outputs are identical and prints the times and ratios.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

from ArteryShorteningLib.shortening import shorten_array  # noqa: E402
from ArteryShorteningLib.stumps import Params  # noqa: E402
from CalciumScoringLib.phantoms.generator import make_group_labels  # noqa: E402
from shortening_reference import reference_shorten  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, nargs=3, default=[400, 400, 500])
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()
    img = make_group_labels(a.seed, a.size, accessory_renal=True)
    lab = sitk.GetArrayFromImage(img)
    print(f"label map {tuple(a.size)} voxels at 1 mm, counts per label "
          f"{np.bincount(lab.ravel(), minlength=5)[1:].tolist()}", flush=True)
    t = time.perf_counter()
    ref = reference_shorten(lab, img, growth="dilation")
    t_ref = time.perf_counter() - t
    print(f"reference (literal, full volume): {t_ref:8.2f} s", flush=True)
    t = time.perf_counter()
    out, *_ = shorten_array(lab, img, Params(growth="dilation"))
    t_dil = time.perf_counter() - t
    same = np.array_equal(out, ref)
    print(f"production, growth='dilation':     {t_dil:8.2f} s  identical to reference: {same}")
    t = time.perf_counter()
    shorten_array(lab, img, Params(growth="geodesic"))
    t_geo = time.perf_counter() - t
    print(f"production, growth='geodesic':     {t_geo:8.2f} s")
    print(f"speed-up dilation mode: {t_ref / t_dil:6.1f}x   geodesic mode: {t_ref / t_geo:6.1f}x")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
