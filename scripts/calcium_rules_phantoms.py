#!/usr/bin/env python3
"""Calcium decision rules against the phantoms' truth: pooled calcified volume per group
(the calcium the CT shows, plaques >= 100 HU above the lumen, as
``training/evaluate_models.visible_calcium`` counts it) and Dice, inside the true groups.

    python scripts/calcium_rules_phantoms.py [--seeds test|wide] --methods M [M ...]

Methods as in ``scripts/reproducibility.py`` (``name:key=value,...``).  Not installed.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training"))
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None):
    from evaluate_models import visible_calcium
    from recipes import TEST_SEEDS, WIDE_TEST_SEEDS, held_out_options
    from reproducibility import method

    from CalciumScoringLib.phantoms.generator import make_phantom

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="test", choices=("test", "wide"))
    ap.add_argument("--methods", nargs="+", default=["adaptive"])
    args = ap.parse_args(argv)
    seeds = TEST_SEEDS if args.seeds == "test" else WIDE_TEST_SEEDS
    methods = [method(m) for m in args.methods]
    pooled = {m: {} for m, _ in methods}
    dice = {m: [] for m, _ in methods}
    for seed in seeds:
        o = held_out_options(seed)
        ph = make_phantom(seed, spacing=o.pop("spacing"), **o)
        for label, fn in methods:
            pred = sitk.GetArrayFromImage(fn(ph.ct, ph.groups > 0)) > 0
            d, _, vols = visible_calcium(ph, o["lumen_hu"], pred)
            dice[label].append(d)
            for g, (a, b) in vols.items():
                p = pooled[label].setdefault(g, [0.0, 0.0])
                p[0] += a
                p[1] += b
        print(f"seed {seed} done", flush=True)
    names = {1: "aorta", 2: "iliac", 3: "mesenteric", 4: "renal"}
    for label, _ in methods:
        errs = ", ".join(f"{names[g]} {100 * (a / b - 1):+.1f} %" for g, (a, b) in
                         sorted(pooled[label].items()) if b > 0)
        print(f"{label}: visible calcium pooled {errs}; Dice {np.nanmean(dice[label]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
