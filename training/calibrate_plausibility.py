#!/usr/bin/env python3
"""Measure the artery plausibility check (CalciumScoringLib.qc.plausibility) on masks that
must pass, to calibrate its limits, and report the bundled network on the real scans.

    python training/calibrate_plausibility.py [--phantoms 24] [--network]

Must pass: the truth of training-distribution phantoms (seeds 300000 and up, drawn like
the networks' training data by ``recipes.random_options``, abdomen and vessel fields of
view), the reference labels of ``ts_abdomen_ct`` and ``ts_dicom_series`` in
``../shared/data`` and TotalSegmentator's labels there.  Prints, per measurement, the
range over them beside the limit; ``--network`` adds the bundled artery-groups network
on every real scan (which checks fail).  Not installed into Slicer.
"""

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from CalciumScoringLib.phantoms.generator import make_phantom
from CalciumScoringLib.qc.plausibility import LIMITS, check_arteries
from CalciumScoringLib.segmentation.totalsegmentator import load_groups
from recipes import ROOT, random_options

DATA = ROOT.parent / "shared" / "data"
SEED0 = 300000
#: licensed for use, not redistribution: pictures show the masks only, never its voxels
NO_VOXELS = {"ircad01_abdomen", "ircad07_abdomen"}


def real_cases():
    """(name, CT, {source: groups image}) of each real scan in ../shared/data: the
    references of ``evaluate_real_ct.cases`` and, where the scan has one, TotalSegmentator's
    labels."""
    from evaluate_real_ct import cases

    classes = DATA / "totalsegmentator_total_classes.json"
    out = []
    for name, ct, ref, labelled in cases():
        sources = {"reference": ref} if labelled else {}
        ts = DATA / name / "totalsegmentator_total.nii.gz"
        if ts.exists():  # ts_dicom_series's file needs the class names beside it
            sources["TotalSegmentator"] = load_groups(
                ts, ct, classes if name == "ts_dicom_series" else None).image
        out.append((name, ct, sources))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantoms", type=int, default=24)
    ap.add_argument("--network", action="store_true")
    ap.add_argument("--figures", help="folder for a picture of the network's groups per real scan")
    a = ap.parse_args()
    rows = []
    for i in range(a.phantoms):
        seed = SEED0 + i
        o = random_options(np.random.default_rng(seed))
        o["fov"] = "abdomen" if i % 2 else "vessels"
        spacing = o.pop("spacing")
        ph = make_phantom(seed, spacing=spacing, **o)
        p = check_arteries(ph.ct, ph.groups)
        rows.append((f"phantom {seed}", p))
        print(f"phantom {seed} {o['fov']:8s} ok={p.ok} {[c.message for c in p.failed]}", flush=True)
    real = real_cases() if DATA.is_dir() else []
    for name, ct, sources in real:
        for source, groups in sources.items():
            p = check_arteries(ct, groups, missing=("mesenteric", "renal")
                               if source == "TotalSegmentator" else ())
            rows.append((f"{name} {source}", p))
            print(f"{name} {source}: ok={p.ok} {[c.message for c in p.failed]}", flush=True)
    keys = sorted({k for _, p in rows for k, v in p.measurements.items()
                   if isinstance(v, float) and "_z_mm" not in k})
    print("\nmeasurement: min / median / max over the must-pass masks (limit)")
    for k in keys:
        v = np.array([p.measurements[k] for _, p in rows if k in p.measurements], float)
        lim = LIMITS.get(k, LIMITS.get(k.replace("iliac_", "side_").replace("mesenteric_", "side_")
                                       .replace("renal_", "side_"), ""))
        print(f"  {k:28s} {v.min():10.2f} {np.median(v):10.2f} {v.max():10.2f}   {lim}")
    if a.network:
        from CalciumScoringLib.segmentation.engine import segment
        from CalciumScoringLib.segmentation.models import bundled_model

        net = bundled_model("artery-groups")
        print(f"\nbundled artery-groups network {net.version} on the real scans:")
        for name, ct, sources in real:
            groups = segment(ct, net, threads=2)
            p = check_arteries(ct, groups)
            ref = sources.get("reference")
            dice = ""
            if ref is not None:
                net_aorta = sitk.GetArrayViewFromImage(groups) == 1
                ref_aorta = sitk.GetArrayViewFromImage(ref) == 1
                both = (net_aorta & ref_aorta).sum()
                dice = f", aorta Dice {2 * both / max(net_aorta.sum() + ref_aorta.sum(), 1):.2f}"
            print(f"  {name}: ok={p.ok}{dice}")
            if a.figures:
                from CalciumScoringLib.cohort.figures import case_figure
                from CalciumScoringLib.qc.plausibility import review_line

                shown = ct
                if name in NO_VOXELS:  # an empty CT of the same grid: masks only
                    shown = sitk.Image(ct.GetSize(), sitk.sitkInt16) - 1000
                    shown.CopyInformation(ct)
                case_figure(Path(a.figures) / f"plausibility_{name}_artery-groups.png", shown, groups,
                            title=f"{name}: bundled artery-groups {net.version}{dice}",
                            alert=None if p.ok else review_line(p, 150))
            for c in p.checks:
                print(f"    {'pass' if c.passed else 'FAIL'} {c.name} {c.value:.2f} {c.message}")


if __name__ == "__main__":
    main()
