#!/usr/bin/env python3
"""Same scan, same answer? The calcium of each real scan (and phantoms) under changes of
storage and reconstruction that do not change the patient.

    python scripts/reproducibility.py calcium OUT.json [--scans NAME ...] [--methods M ...]
    python scripts/reproducibility.py pipeline OUT.json [--scans NAME ...]

Variants of each CT (every one physically the same patient):

- ``ras``: stored in RAS voxel order (x and y flipped, direction diag(-1, -1, 1));
- ``shift``: resampled half a voxel over along every axis (linear);
- ``oblique``: resampled onto a grid turned 20 degrees about the head-foot axis (linear);
- ``noise+50``: Gaussian noise added so the lumen's noise SD is 1.5 times its own;
- ``noise-50``: Gaussian smoothing that halves the lumen's noise SD;
- ``smooth``: Gaussian smoothing, sigma 0.7 mm;
- ``slices1``, ``slices3``: reconstructed at 1 mm and at 3 mm slices (3 mm: slabs
  averaged along z, as a scanner reconstructs thick slices).

``calcium`` mode holds the artery groups fixed (the bundled network's, found once on the
original and carried onto each variant by nearest neighbour) and measures only the
calcium decision (``--methods``: names of :data:`CalciumScoringLib.scoring.thresholds.METHODS`
or ``name:key=value,...``), so each rule's own spread is seen; ``pipeline`` mode runs the
whole pipeline (networks included, the defaults) per variant, as a user would.
Printed and written: per scan and variant, the calcium per group and combined, and the
change from the scan's own value.  Not installed into Slicer.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
GROUPS = {1: "aorta", 2: "iliac", 3: "mesenteric", 4: "renal"}
VARIANTS = ("ras", "shift", "oblique", "noise+50", "noise-50", "smooth", "slices1", "slices3")


def scans(names=None):
    """(name, CT) of every real scan in ``../shared/data`` (and phantom seeds ``phantomN``)."""
    from CalciumScoringLib.cohort.runner import read_ct

    out = []
    files = {"ts_abdomen_ct": DATA / "ts_abdomen_ct" / "ct.nii.gz",
             "ts_dicom_series": DATA / "ts_dicom_series" / "dicom",
             "ircad01_abdomen": DATA / "ircad01_abdomen" / "ct.nii.gz",
             "ircad07_abdomen": DATA / "ircad07_abdomen" / "ct.nii.gz"}
    for name, path in files.items():
        if (names is None or name in names) and path.exists():
            out.append((name, read_ct(path)))
    stent = DATA / "stent_cta" / "stent.npz"
    if (names is None or "stent_cta" in names) and stent.exists():
        ct = sitk.GetImageFromArray(np.load(stent)["arr_0"].astype(np.int16))
        ct.SetSpacing((0.85, 0.85, 0.85))  # not stored in the file
        out.append(("stent_cta", ct))
    for name in names or ():
        if name.startswith("phantom"):
            from CalciumScoringLib.phantoms.generator import make_phantom

            out.append((name, make_phantom(int(name[7:]), spacing=(0.8, 0.8, 1.0)).ct))
    return out


def noise_sd(ct, groups):
    """The CT's noise: robust SD (1.4826 MAD) of the differences of neighbouring voxels
    (along x) in the aorta's core (or the groups' core), over sqrt(2): the lumen's own
    variation along its length and its edges do not count."""
    from scipy import ndimage

    g = sitk.GetArrayViewFromImage(groups)
    m = g == 1 if (g == 1).any() else g > 0
    core = ndimage.binary_erosion(m, iterations=2)
    core = core if core.sum() > 100 else m
    a = sitk.GetArrayViewFromImage(ct).astype(np.float32)
    d = (a[:, :, 1:] - a[:, :, :-1])[core[:, :, 1:] & core[:, :, :-1]]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def _resample(ct, size, origin, spacing, direction, interp=sitk.sitkLinear):
    return sitk.Resample(ct, [int(v) for v in size], sitk.Transform(), interp,
                         [float(v) for v in origin], [float(v) for v in spacing],
                         [float(v) for v in direction], -1024.0, sitk.sitkFloat32)


def variant(ct, kind, groups=None, seed=0):
    """The CT ``kind`` (see the module docstring), as a new image."""
    D = np.array(ct.GetDirection()).reshape(3, 3)
    sp, size = np.array(ct.GetSpacing()), np.array(ct.GetSize())
    if kind == "ras":
        a = sitk.GetArrayFromImage(ct)[:, ::-1, ::-1]
        out = sitk.GetImageFromArray(np.ascontiguousarray(a))
        out.SetSpacing(ct.GetSpacing())
        out.SetOrigin(ct.TransformIndexToPhysicalPoint([int(size[0] - 1), int(size[1] - 1), 0]))
        out.SetDirection((D @ np.diag([-1.0, -1.0, 1.0])).ravel().tolist())
        return out
    if kind == "shift":
        origin = np.array(ct.GetOrigin()) + D @ (0.5 * sp)
        return _resample(ct, size, origin, sp, D.ravel(), sitk.sitkLinear)
    if kind == "oblique":
        t = np.deg2rad(20.0)
        R = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]) @ D
        centre = np.array(ct.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
        origin = centre - R @ ((size - 1) / 2 * sp)
        return _resample(ct, size, origin, sp, R.ravel(), sitk.sitkLinear)
    if kind in ("noise+50", "noise-50"):
        sd = noise_sd(ct, groups)
        if kind == "noise+50":
            rng = np.random.default_rng(seed)
            a = sitk.GetArrayFromImage(ct).astype(np.float32)
            a += rng.normal(0.0, sd * np.sqrt(1.5 ** 2 - 1), a.shape).astype(np.float32)
            out = sitk.GetImageFromArray(a)
            out.CopyInformation(ct)
            return out
        lo, hi = 0.05, 2.0  # sigma (mm) halving the noise SD, by bisection
        for _ in range(8):
            mid = (lo + hi) / 2
            s = noise_sd(sitk.SmoothingRecursiveGaussian(sitk.Cast(ct, sitk.sitkFloat32), mid), groups)
            lo, hi = (mid, hi) if s > sd / 2 else (lo, mid)
        return sitk.SmoothingRecursiveGaussian(sitk.Cast(ct, sitk.sitkFloat32), (lo + hi) / 2)
    if kind == "smooth":
        return sitk.SmoothingRecursiveGaussian(sitk.Cast(ct, sitk.sitkFloat32), 0.7)
    if kind in ("slices1", "slices3"):
        z = 1.0 if kind == "slices1" else 3.0
        src = sitk.Cast(ct, sitk.sitkFloat32)
        if z > sp[2]:  # a thick slice averages the thin ones it covers
            n = max(int(round(z / sp[2])), 1)
            a = sitk.GetArrayFromImage(src)
            from scipy import ndimage

            a = ndimage.uniform_filter1d(a, n, axis=0, mode="nearest")
            src = sitk.GetImageFromArray(a)
            src.CopyInformation(ct)
        new = sp.copy()
        new[2] = z
        nsize = size.copy()
        nsize[2] = max(int(np.floor((size[2] - 1) * sp[2] / z)) + 1, 2)
        return _resample(src, nsize, ct.GetOrigin(), new, D.ravel(), sitk.sitkLinear)
    raise ValueError(kind)


def per_group(ct, groups, calcium):
    """mm3 of calcium inside each group and combined."""
    g = sitk.GetArrayViewFromImage(groups)
    c = sitk.GetArrayViewFromImage(calcium) > 0
    vv = float(np.prod(ct.GetSpacing()))
    out = {name: round(float(np.count_nonzero(c & (g == v))) * vv, 1) for v, name in GROUPS.items()}
    out["combined"] = round(float(np.count_nonzero(c & (g > 0))) * vv, 1)
    return out


def method(spec):
    """``(label, function(ct, mask))`` of a method spec ``name[:key=value,...]``."""
    from CalciumScoringLib.scoring import thresholds

    name, _, rest = spec.partition(":")
    kw = {k: _value(v) for k, v in (p.split("=") for p in rest.split(",") if p)}
    fn = thresholds.METHODS[name]
    return spec, lambda ct, m: thresholds.without_metal(ct, fn(ct, m, **kw))[0]


def _value(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def run_calcium(args):
    from CalciumScoringLib.segmentation.engine import segment
    from CalciumScoringLib.segmentation.models import bundled_model

    results = {}
    cache = ROOT / "output" / "repro-groups"
    cache.mkdir(parents=True, exist_ok=True)
    methods = [method(m) for m in args.methods]
    for name, ct in scans(args.scans):
        f = cache / f"{name}.nii.gz"
        if f.exists():
            groups = sitk.ReadImage(str(f))
        else:
            groups = segment(ct, bundled_model("artery-groups"), threads=2)
            sitk.WriteImage(groups, str(f))
        res = results[name] = {}
        for label, fn in methods:
            own = per_group(ct, groups, fn(ct, groups > 0))
            res[label] = {"original": own}
            print(f"{name} {label}: original {own}", flush=True)
        for kind in VARIANTS:
            v = variant(ct, kind, groups)
            gv = sitk.Resample(groups, v, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
            for label, fn in methods:
                got = per_group(v, gv, fn(v, gv > 0))
                res[label][kind] = got
                own = res[label]["original"]["combined"]
                print(f"  {kind:9s} {label}: combined {got['combined']:9.1f} mm3 "
                      f"({_change(got['combined'], own)})", flush=True)
    return results


def _change(value, own):
    return "n/a" if not own else f"{100.0 * (value - own) / own:+.1f} %"


def run_pipeline(args):
    import pandas as pd

    from CalciumScoringLib.cohort.runner import Case, Options, process_case

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, ct in scans(args.scans):
            res = results[name] = {}
            groups = None
            for kind in ("original",) + VARIANTS:
                if kind == "original":
                    v = ct
                else:
                    v = variant(ct, kind, groups)
                path = tmp / f"{name}-{kind}.nrrd"
                sitk.WriteImage(v, str(path), True)
                t = time.perf_counter()
                s = process_case(Case(f"{name}-{kind}", str(path)), tmp / "out",
                                 Options(threads=2, scene=False))
                if s["status"] != "ok":
                    res[kind] = {"error": s.get("error")}
                    print(f"{name} {kind}: {s.get('error')}", flush=True)
                    continue
                table = pd.read_csv(tmp / "out" / f"{name}-{kind}" / "scores.csv").set_index("region")
                res[kind] = {r: {"calcium_mm3": _num(table.loc[r, "calcium_volume_mm3"]),
                                 "artery_mm3": _num(table.loc[r, "artery_volume_mm3"])}
                             for r in ("aorta", "iliac", "mesenteric", "renal", "combined")}
                res[kind]["qc"] = str(table.loc["combined", "qc_flags"])
                if kind == "original":
                    groups = sitk.ReadImage(str(tmp / "out" / f"{name}-{kind}" / "arteries_full.nii.gz"))
                c, own = res[kind]["combined"], res["original"]["combined"]
                print(f"{name} {kind:9s}: calcium {c['calcium_mm3']} mm3 "
                      f"({_change(c['calcium_mm3'], own['calcium_mm3'])}), arteries "
                      f"{c['artery_mm3']} mm3 ({_change(c['artery_mm3'], own['artery_mm3'])}), "
                      f"{time.perf_counter() - t:.0f} s; QC {res[kind]['qc']}", flush=True)
    return results


def _num(v):
    v = float(v)
    return None if not np.isfinite(v) else round(v, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("calcium", "pipeline"))
    ap.add_argument("output", help="JSON file of the results")
    ap.add_argument("--scans", nargs="+", help="names (default: every real scan found)")
    ap.add_argument("--methods", nargs="+", default=["adaptive"])
    args = ap.parse_args(argv)
    if not DATA.is_dir() and not any(s.startswith("phantom") for s in args.scans or ()):
        sys.exit(f"{DATA} not found: the real scans are needed (or give --scans phantomN)")
    res = run_calcium(args) if args.mode == "calcium" else run_pipeline(args)
    Path(args.output).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
