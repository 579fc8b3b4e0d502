#!/usr/bin/env python3
"""The side-artery stumps the scores are made of, on the real scans with expert arteries.

    python training/evaluate_stumps.py [--model artery-groups] [--json out.json]

For ``ircad01_abdomen`` and ``ircad07_abdomen`` (expert artery masks without group labels)
the expert arteries are grouped here, by where each branch leaves the aorta, into the
team's reference groups (:func:`group_expert`, a rule written down, not drawn by hand):

1. the aorta is the expert mask's thick part: an opening with a 5 mm ball keeps the
   aorta's core (branches are narrower; pieces of at least 2,000 mm3, since a waist of
   the drawing may split it), taken back to the expert voxels within 2 mm;
2. every other expert piece touching the aorta is a branch; its *ostium* is its part
   within 3 mm of the aorta, compared with the aorta's centre at that height (patient
   coordinates, LPS): ostia in the lowest 15 mm of the aorta are iliac when the aorta
   ends inside the field of view (else they are cut by its edge: no group); ostia more
   than 5 mm behind the centre are lumbar arteries (no group); ostia in front are
   mesenteric, the highest the celiac trunk and the next the SMA (lower ones, the IMA or
   variants: no group); ostia to the side are renal (left or right by x).

Both the reference groups and the network's are shortened with the project's own 25 mm
shortening; per stump (celiac trunk, SMA, left and right renal, left and right iliac) the
script reports the share of the reference stump that the network labels with its group
(the team's bar: >= 50 %), and the stump Dice per group and pooled (bar >= 0.60), the
aorta Dice, and the share of network artery voxels more than 5 mm from any expert artery
(bar <= 20 %).  No voxel or mask of these scans is written into the project
(CC BY-NC-ND); only numbers.  Not installed into Slicer.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCANS = ("ircad01_abdomen", "ircad07_abdomen")
GROUPS = {1: "aorta", 2: "iliac", 3: "mesenteric", 4: "renal"}


def _ball(radius_vox):
    r = np.ceil(radius_vox).astype(int)
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    return (zz / max(radius_vox[0], 1e-3)) ** 2 + (yy / radius_vox[1]) ** 2 + (xx / radius_vox[2]) ** 2 <= 1


def group_expert(artery, ct):
    """``(groups array, records, pieces)``: the expert artery mask grouped (see the module
    docstring), one record per branch (ostium LPS, group, name, its ``piece`` number) and
    the labelled branch pieces."""
    sp = np.array(ct.GetSpacing())[::-1]  # z, y, x mm
    m = sitk.GetArrayFromImage(artery) > 0
    ball = _ball(5.0 / sp)
    pad = [(b // 2, b // 2) for b in ball.shape]  # the aorta runs on beyond the field's edge
    core = ndimage.binary_opening(np.pad(m, pad, mode="edge"), ball)
    core = core[tuple(slice(a, a + n) for (a, _), n in zip(pad, m.shape))]
    lab, n = ndimage.label(core)
    if n == 0:
        raise ValueError("no aorta found in the expert mask")
    sizes = np.bincount(lab.ravel())[1:] * float(np.prod(sp))
    core = np.isin(lab, 1 + np.flatnonzero(sizes >= 2000.0))  # aorta pieces (a waist may split it)
    near = ndimage.distance_transform_edt(~core, sampling=sp)
    aorta = m & (near <= 2.0)
    groups = np.zeros(m.shape, np.uint8)
    groups[aorta] = 1
    rest = m & ~aorta
    pieces, k = ndimage.label(rest, np.ones((3, 3, 3)))
    dist = ndimage.distance_transform_edt(~aorta, sampling=sp)
    ks = np.flatnonzero(aorta.any(axis=(1, 2)))
    centre = {kk: np.argwhere(aorta[kk]).mean(0) for kk in ks}  # (y, x) per slice
    z_of = lambda kk: ct.TransformIndexToPhysicalPoint([0, 0, int(kk)])[2]  # noqa: E731
    bottom = min(ks, key=z_of)
    field_low = min(z_of(0), z_of(m.shape[0] - 1))
    ends_inside = z_of(bottom) > field_low + 5.0  # the bifurcation is in the field of view
    records = []
    for i in range(1, k + 1):
        piece = pieces == i
        ostium = piece & (dist <= 3.0)
        if not ostium.any() or piece.sum() * np.prod(sp) < 20:
            continue
        kz, yo, xo = np.argwhere(ostium).mean(0)
        kk = int(round(kz))
        kk = min(ks, key=lambda q: abs(q - kk))
        cy, cx = centre[kk]
        lps = np.array(ct.TransformContinuousIndexToPhysicalPoint([float(xo), float(yo), float(kz)]))
        c_lps = np.array(ct.TransformContinuousIndexToPhysicalPoint([float(cx), float(cy), float(kk)]))
        ant = c_lps[1] - lps[1]  # LPS y grows to the back
        lat = lps[0] - c_lps[0]  # LPS x grows to the left
        above_bottom = abs(z_of(kk) - z_of(bottom))
        if above_bottom <= 15.0:
            side = "iliac arteries (both, one piece)" if abs(lat) < 5.0 else \
                "left iliac" if lat > 0 else "right iliac"
            g, name = (2, side) if ends_inside else \
                (0, "cut by the field's lower edge")
        elif ant < -5.0:
            g, name = 0, "lumbar"
        elif ant >= abs(lat):
            g, name = 3, "mesenteric"
        else:
            g, name = 4, "left renal" if lat > 0 else "right renal"
        if g:
            groups[piece] = g
        records.append({"piece": i, "group": GROUPS.get(g, "none"), "name": name,
                        "ostium_lps": [round(float(v), 1) for v in lps],
                        "anterior_mm": round(float(ant), 1), "lateral_mm": round(float(lat), 1),
                        "volume_mm3": round(float(piece.sum() * np.prod(sp)), 1)})
    mes = sorted([r for r in records if r["group"] == "mesenteric"], key=lambda r: -r["ostium_lps"][2])
    for r, name in zip(mes, ("celiac trunk", "SMA")):
        r["name"] = name
    for r in mes[2:]:  # below the SMA, a front branch is the IMA or a variant: no group
        r["group"], r["name"] = "none", "other front branch"
        groups[pieces == r["piece"]] = 0
    return groups, records, pieces


def _image(arr, ref):
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.CopyInformation(ref)
    return img


def measure(ct, artery, network_groups):
    """Per-stump shares and Dice of ``network_groups`` against the grouped expert arteries."""
    from ArteryShorteningLib import shorten_arteries

    from CalciumScoringLib.validation.evaluate import overlap

    ref, records, pieces = group_expert(artery, ct)
    ref_short = sitk.GetArrayFromImage(shorten_arteries(_image(ref, ct)).labelmap)
    net = sitk.GetArrayFromImage(network_groups)
    net_short = sitk.GetArrayFromImage(shorten_arteries(network_groups).labelmap)
    sp = np.array(ct.GetSpacing())[::-1]
    vv = float(np.prod(sp))
    out = {"aorta_dice": round(overlap(net == 1, ref == 1)["dice"], 3), "stumps": []}
    expert = sitk.GetArrayFromImage(artery) > 0
    far = ndimage.distance_transform_edt(~expert, sampling=sp) > 5.0
    out["network_far_5mm"] = round(float((far & (net > 0)).sum() / max((net > 0).sum(), 1)), 3)
    for r in records:
        if r["group"] == "none":
            continue
        v = {g: k for k, g in GROUPS.items()}[r["group"]]
        stump = (ref_short == v) & (pieces == r["piece"])
        if not stump.any():
            continue
        around = ndimage.distance_transform_edt(~stump, sampling=sp) <= 5.0
        share = float((stump & (net == v)).sum() / stump.sum())
        d = overlap(stump, (net_short == v) & around)["dice"]
        out["stumps"].append(dict(r, stump_mm3=round(float(stump.sum() * vv), 1),
                                  share_found=round(share, 3), stump_dice_local=round(d, 3)))
    sides = (ref_short > 1)
    both = sum(int(((ref_short == v) & (net_short == v)).sum()) for v in (2, 3, 4))
    tot = int(sides.sum()) + int((net_short > 1).sum())
    out["stump_dice_pooled"] = round(2 * both / tot, 3) if tot else None
    for v in (2, 3, 4):
        a, b = ref_short == v, net_short == v
        if a.any() or b.any():
            out[f"stump_dice_{GROUPS[v]}"] = round(overlap(a, b)["dice"], 3)
    return out


def main(argv=None):
    from CalciumScoringLib.cohort.runner import read_ct
    from CalciumScoringLib.segmentation.engine import segment
    from CalciumScoringLib.segmentation.models import bundled_model, find_model

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="groups model (default: the bundled one)")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    info = find_model(args.model) if args.model else bundled_model("artery-groups")
    results = {"model": f"{info.name} {info.version}"}
    for scan in SCANS:
        folder = DATA / scan
        if not (folder / "artery.nii.gz").exists():
            print(f"{scan}: not found in {DATA}, skipped")
            continue
        ct = read_ct(folder / "ct.nii.gz")
        artery = sitk.ReadImage(str(folder / "artery.nii.gz"))
        net = segment(ct, info, threads=2)
        res = results[scan] = measure(ct, artery, net)
        print(f"{scan}: aorta Dice {res['aorta_dice']}, pooled stump Dice {res['stump_dice_pooled']}, "
              f"network voxels > 5 mm from an expert artery {res['network_far_5mm']:.1%}")
        for s in res["stumps"]:
            print(f"  {s['name']:13s} ostium {s['ostium_lps']} ({s['anterior_mm']:+.0f} mm front, "
                  f"{s['lateral_mm']:+.0f} mm left): stump {s['stump_mm3']:.0f} mm3, found with its "
                  f"group {s['share_found']:.0%}, local stump Dice {s['stump_dice_local']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "training"))
    sys.exit(main())
