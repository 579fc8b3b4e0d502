#!/usr/bin/env python3
"""The side-artery stumps the scores are made of, on the real scans with expert arteries.

    python training/evaluate_stumps.py [--model artery-groups] [--json out.json]
        [--figures docs/figures]

For ``ircad01_abdomen`` and ``ircad07_abdomen`` (expert artery masks without group labels)
the expert arteries are grouped, by where each branch leaves the aorta, into the team's
reference groups (``artery_tree.group_expert``, a rule written down, not drawn by hand).

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
from artery_tree import GROUPS, group_expert
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCANS = ("ircad01_abdomen", "ircad07_abdomen")


def _image(arr, ref):
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.CopyInformation(ref)
    return img


def figure(path, title, ct, ref_short, net_short):
    """The expert stumps beside the network's, seen from the front (labels only: no voxel of
    the CT is drawn, as the IRCAD licence asks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evaluate_real_ct import COLOURS as colours

    lps = lambda a: sitk.GetArrayFromImage(sitk.DICOMOrient(_image(a, ct), "LPS"))  # noqa: E731
    sp = sitk.DICOMOrient(ct, "LPS").GetSpacing()
    labs = [lps(ref_short), lps(net_short)]
    box = np.argwhere((labs[0] > 0) | (labs[1] > 0))
    if len(box):  # the stumps and the aorta's cut part, 15 voxels round
        lo, hi = np.maximum(box.min(0) - 15, 0), box.max(0) + 16
        labs = [lab[lo[0]:hi[0], :, lo[2]:hi[2]] for lab in labs]
    fig, ax = plt.subplots(1, 2, figsize=(11, 6.5))
    for a, lab, name in zip(ax, labs, ("expert arteries, grouped", "network")):
        depth = np.argmax(lab > 0, axis=1)  # the first labelled voxel from the front (y: posterior)
        seen = np.take_along_axis(lab, depth[:, None, :], axis=1)[:, 0, :]
        rgb = np.ones(seen.shape + (3,))
        for v, c in colours.items():
            rgb[seen == v] = c
        a.imshow(rgb[::-1], aspect=sp[2] / sp[0])
        a.set_title(f"{name}: 25 mm stumps, from the front", fontsize=9)
        a.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[v]) for v in GROUPS]
    fig.legend(handles, list(GROUPS.values()), loc="lower center", ncol=4)
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(title, 120)), fontsize=9)
    fig.subplots_adjust(top=0.84, bottom=0.08)
    fig.savefig(path, dpi=70)
    plt.close(fig)


def measure(ct, artery, network_groups, keep=None):
    """Per-stump shares and Dice of ``network_groups`` against the grouped expert arteries;
    ``keep`` (a dict) receives the two shortened label arrays."""
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
    if keep is not None:
        keep.update(ref_short=ref_short, net_short=net_short)
    for v in (2, 3, 4):
        a, b = ref_short == v, net_short == v
        if a.any() or b.any():
            out[f"stump_dice_{GROUPS[v]}"] = round(overlap(a, b)["dice"], 3)
    return out


def measure_scans(model, figures=None):
    """``{scan: measure(...)}`` of the groups model ``model`` (name, folder or ModelInfo) on
    every scan of :data:`SCANS` in ``DATA`` (absent ones left out), with a picture per scan
    in the folder ``figures`` if given."""
    from CalciumScoringLib.cohort.runner import read_ct
    from CalciumScoringLib.segmentation.engine import segment
    from CalciumScoringLib.segmentation.models import find_model

    info = find_model(model)
    out = {}
    for scan in SCANS:
        folder = DATA / scan
        if not (folder / "artery.nii.gz").exists():
            continue
        ct = read_ct(folder / "ct.nii.gz")
        arrays = {}
        res = out[scan] = measure(ct, sitk.ReadImage(str(folder / "artery.nii.gz")),
                                  segment(ct, info, threads=2), arrays)
        if figures:
            shares = ", ".join(f"{x['name']} {x['share_found']:.0%}" for x in res["stumps"])
            figure(Path(figures) / f"stumps_{scan}_{info.version}.png",
                   f"{scan}: {info.name} {info.version}; pooled stump Dice "
                   f"{res['stump_dice_pooled']}; share of each expert stump found with its group: "
                   f"{shares}", ct, arrays["ref_short"], arrays["net_short"])
    return out


def main(argv=None):
    from CalciumScoringLib.segmentation.models import bundled_model, find_model

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="groups model (default: the bundled one)")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--figures", help="folder for a picture per scan (labels only)")
    args = ap.parse_args(argv)
    info = find_model(args.model) if args.model else bundled_model("artery-groups")
    results = {"model": f"{info.name} {info.version}"}
    for scan in SCANS:
        if not (DATA / scan / "artery.nii.gz").exists():
            print(f"{scan}: not found in {DATA}, skipped")
    results.update(measure_scans(info, args.figures))
    for scan in SCANS:
        if scan not in results:
            continue
        res = results[scan]
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
