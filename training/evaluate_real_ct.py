#!/usr/bin/env python3
"""The artery-groups network on every real scan of ``../shared/data``: Dice per group
against the references, the plausibility check, and a picture per scan.

    python training/evaluate_real_ct.py MODEL_FOLDER_OR_NAME [--figures docs/figures]
        [--tag NAME] [--json out.json] [--grid-mm MM]

References: ``ts_dicom_series/aorta.nii.gz`` (corrected aorta, portal-venous series), the
team's IRCAD references in ``docs/references/`` (``ircad01_abdomen_<group>.nii.gz``:
aorta, mesenteric = SMA + celiac trunk, renal),
the expert artery mask of ``ircad07_abdomen`` grouped by ``artery_tree.group_expert``
(arteries of no group count as artery for the 5 mm share only),
``ts_abdomen_ct/groups.nii.gz`` (aorta, iliac; this scan's anatomy is in the synthesis
of the real-anatomy network, so it is not a held-out measure for that one).  Besides
Dice: the share of predicted artery voxels more than 5 mm from any labelled artery (an
upper bound where the reference does not label every artery: it lists which do), and
for the mesenteric and renal arteries the Dice within 30 mm of the reference aorta, per
group and pooled (``dice_branches_30mm``: a voxel agrees where both give it the same
group).

Pictures: an axial and a coronal CT slice through the aorta with the network's groups
(filled) and the reference (white outline), and a 3D-like view (the groups seen from the
front, shaded by depth).  The IRCAD scans are licensed for use, not redistribution:
their pictures show the masks only, never their voxels.  Not installed into Slicer.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from CalciumScoringLib.cohort.runner import read_ct
from CalciumScoringLib.qc.plausibility import check_arteries
from CalciumScoringLib.segmentation.engine import segment
from CalciumScoringLib.segmentation.models import find_model
from CalciumScoringLib.validation.evaluate import overlap
from recipes import ROOT

DATA = ROOT.parent / "shared" / "data"
REFS = ROOT / "docs" / "references"
NO_VOXELS = {"ircad01_abdomen", "ircad07_abdomen"}
OTHER = 5  # in a reference: an artery of no group (lumbar, IMA, the celiac trunk's far branches)
GROUPS = {1: "aorta", 2: "iliac", 3: "mesenteric", 4: "renal"}
COLOURS = {1: (0.85, 0.2, 0.2), 2: (0.2, 0.7, 0.3), 3: (0.2, 0.4, 0.9), 4: (0.95, 0.75, 0.1)}
PHASE = {"ts_abdomen_ct": "non-contrast (aorta ~40 HU)",
         "ts_dicom_series": "portal-venous (aorta ~151 HU)",
         "ircad01_abdomen": "late arterial / portal-venous (aorta ~190 HU)",
         "ircad07_abdomen": "portal-venous (median HU in the expert arteries 166)",
         "stent_cta": "arterial CTA with a stent graft (HU clipped 0-2000, spacing assumed)"}


def cases(only=None):
    """(name, CT, reference groups image or None, labelled group values) per real scan;
    ``only``: the names wanted (default all)."""
    out = []
    want = lambda name: (only is None or name in only) and (DATA / name).is_dir()  # noqa: E731
    if want("ts_abdomen_ct"):
        ct = read_ct(DATA / "ts_abdomen_ct" / "ct.nii.gz")
        ref = sitk.Cast(sitk.ReadImage(str(DATA / "ts_abdomen_ct" / "groups.nii.gz")), sitk.sitkUInt8)
        out.append(("ts_abdomen_ct", ct, ref, (1, 2)))
    if want("ts_dicom_series"):
        ct = read_ct(DATA / "ts_dicom_series" / "dicom")
        ref = sitk.ReadImage(str(DATA / "ts_dicom_series" / "aorta.nii.gz"))
        ref = sitk.Resample(sitk.Cast(ref > 0, sitk.sitkUInt8), ct, sitk.Transform(),
                            sitk.sitkNearestNeighbor, 0)
        out.append(("ts_dicom_series", ct, ref, (1,)))
    if want("ircad01_abdomen"):
        ct = read_ct(DATA / "ircad01_abdomen" / "ct.nii.gz")
        arr = np.zeros(ct.GetSize()[::-1], np.uint8)
        have = []
        for v, g in GROUPS.items():
            p = REFS / f"ircad01_abdomen_{g}.nii.gz"
            if p.exists():
                arr[sitk.GetArrayFromImage(sitk.ReadImage(str(p))) > 0] = v
                have.append(v)
        ref = sitk.GetImageFromArray(arr)
        ref.CopyInformation(ct)
        out.append(("ircad01_abdomen", ct, ref, tuple(have)))
    if want("ircad07_abdomen") and (DATA / "ircad07_abdomen" / "artery.nii.gz").exists():
        from artery_tree import group_expert

        ct = read_ct(DATA / "ircad07_abdomen" / "ct.nii.gz")
        artery = sitk.ReadImage(str(DATA / "ircad07_abdomen" / "artery.nii.gz"))
        arr = group_expert(artery, ct)[0]
        arr[(arr == 0) & (sitk.GetArrayFromImage(artery) > 0)] = OTHER  # arteries of no group
        ref = sitk.GetImageFromArray(arr)
        ref.CopyInformation(ct)
        out.append(("ircad07_abdomen", ct, ref, tuple(v for v in GROUPS if (arr == v).any())))
    if want("stent_cta") and (DATA / "stent_cta" / "stent.npz").exists():
        a = np.load(DATA / "stent_cta" / "stent.npz")["arr_0"].astype(np.int16)
        ct = sitk.GetImageFromArray(a)  # HU clipped to 0..2000 in the file (fat reads 0)
        ct.SetSpacing((0.85, 0.85, 0.85))  # not stored; roughly 0.7-1 mm
        out.append(("stent_cta", ct, None, ()))
    return out


def far_share(pred, ref, spacing, mm=5.0):
    """Share of predicted artery voxels more than ``mm`` from any reference artery voxel."""
    if not pred.any():
        return 0.0
    if not ref.any():
        return 1.0
    d = ndimage.distance_transform_edt(~ref, sampling=spacing[::-1])
    return float((d[pred] > mm).mean())


def measure(name, ct, ref, labelled, groups):
    a = sitk.GetArrayFromImage(groups)
    res = {"phase": PHASE.get(name, "")}
    if ref is not None:
        b = sitk.GetArrayFromImage(ref)
        near = None
        both = total = 0  # side branches pooled: each voxel counts where its group agrees
        for v in labelled:
            res[f"dice_{GROUPS[v]}"] = round(overlap(a == v, b == v)["dice"], 3)
            if v in (3, 4) and (b == 1).any():  # side branches within 30 mm of the aorta
                if near is None:
                    near = ndimage.distance_transform_edt(b != 1, sampling=ct.GetSpacing()[::-1]) <= 30
                res[f"dice_{GROUPS[v]}_30mm"] = round(overlap((a == v) & near, (b == v) & near)["dice"], 3)
                both += int(np.count_nonzero((a == v) & (b == v) & near))
                total += int(np.count_nonzero((a == v) & near)) + int(np.count_nonzero((b == v) & near))
        if total:  # the team's bar: side branches within 30 mm of the aorta, Dice >= 0.50
            res["dice_branches_30mm"] = round(2 * both / total, 3)
        if labelled:
            res["far_5mm"] = round(far_share(a > 0, b > 0, ct.GetSpacing()), 3)
            res["labelled_groups"] = [GROUPS[v] for v in labelled]
    p = check_arteries(ct, groups)
    res["plausible"] = bool(p.ok)
    res["failed_checks"] = [c.message for c in p.failed]
    vox = float(np.prod(ct.GetSpacing()))
    res["volume_mm3"] = {GROUPS[v]: round(float((a == v).sum()) * vox) for v in GROUPS}
    return res


def calcium_inside(ct, groups, model="arteries-calcium", masks=None):
    """Calcium found inside the artery groups by the calcium network (as the pipeline runs
    it: on the groups as its region of interest) and by the adaptive threshold (the
    default), each without its metal as the pipeline scores it
    (``thresholds.without_metal``): mm3 of each, the mm3 taken out as metal, and the part
    left at >= 1,500 HU (stent metal the rule missed, in the stent graft CTA; there is no
    calcium reference for any real scan); the share of the groups the network labels artery
    or calcium (``CalciumScoringLib.qc.checks``: below 0.5 the pipeline flags it); the Dice
    of the two calcium masks. ``masks`` (a dict), when given, receives the two masks kept
    (``network``, ``adaptive``) as arrays."""
    from CalciumScoringLib.imagecheck import binary_image
    from CalciumScoringLib.qc.checks import calcium_network_coverage
    from CalciumScoringLib.scoring.thresholds import adaptive, without_metal

    roi = sitk.GetArrayFromImage(groups) > 0
    if not roi.any():
        return {}
    hu = sitk.GetArrayViewFromImage(ct)
    vox = float(np.prod(ct.GetSpacing()))
    lab = segment(ct, find_model(model), threads=2, roi=groups > 0)
    out = {"network_artery_coverage": round(calcium_network_coverage(lab, groups), 4)}
    masks = {} if masks is None else masks
    for k, found in (("network", binary_image(sitk.GetArrayFromImage(lab) == 2, ct)),
                     ("adaptive", adaptive(ct, groups > 0))):
        kept, metal = without_metal(ct, found)
        m = masks[k] = (sitk.GetArrayFromImage(kept) > 0) & roi
        out[f"{k}_mm3"] = round(float(m.sum()) * vox, 1)
        out[f"{k}_metal_excluded_mm3"] = metal["metal_excluded_mm3"]
        out[f"{k}_over_1500hu_mm3"] = round(float((m & (hu >= 1500)).sum()) * vox, 1)
    dice = overlap(masks["network"], masks["adaptive"])["dice"]
    out["dice_network_adaptive"] = round(dice, 3) if dice == dice else None  # None: both empty
    return out


def _depth_view(lab, spacing):
    """RGB of the groups seen from the front (LPS: along +y), nearer voxels brighter."""
    fg = lab > 0
    any_fg = fg.any(1)
    first = np.argmax(fg, axis=1)
    val = np.take_along_axis(lab, first[:, None, :], 1)[:, 0]
    depth = first * spacing[1]
    span = max(np.ptp(depth[any_fg]) if any_fg.any() else 1, 1)
    shade = 1 - 0.6 * (depth - (depth[any_fg].min() if any_fg.any() else 0)) / span
    rgb = np.ones(val.shape + (3,))
    for v, c in COLOURS.items():
        rgb[val == v] = np.array(c) * shade[val == v, None]
    rgb[~any_fg] = 0.08
    return rgb[::-1]


def calcium_figure(path, name, ct, groups, masks, title):
    """The calcium network's calcium (red) and the adaptive threshold's (yellow; both:
    orange) inside the groups (grey): an axial slice through the most network calcium, and
    the masks projected from the front and from the side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hu = sitk.GetArrayFromImage(ct).astype(np.float32)
    if name in NO_VOXELS:
        hu[:] = -1000
    g = sitk.GetArrayFromImage(groups) > 0
    net, ada = masks["network"], masks["adaptive"]
    sp = ct.GetSpacing()
    per_slice = net.sum((1, 2)) if net.any() else ada.sum((1, 2))
    z = int(np.argmax(per_slice)) if per_slice.any() else int(np.argwhere(g)[:, 0].mean())

    def colour(gm, nm, am):
        rgb = np.full(gm.shape + (3,), 0.08)
        rgb[gm] = 0.45
        rgb[am] = (0.95, 0.85, 0.1)
        rgb[nm] = (0.9, 0.15, 0.15)
        rgb[nm & am] = (1.0, 0.55, 0.0)
        return rgb

    box = np.argwhere(g)
    (_, y0, x0), (_, y1, x1) = box.min(0), box.max(0) + 1
    m = 15
    y0, x0 = max(y0 - m, 0), max(x0 - m, 0)
    y1, x1 = min(y1 + m, g.shape[1]), min(x1 + m, g.shape[2])
    fig, ax = plt.subplots(1, 3, figsize=(17, 6.2))
    ax[0].imshow(hu[z, y0:y1, x0:x1], cmap="gray", vmin=-160, vmax=600)
    over = np.zeros((y1 - y0, x1 - x0, 4))
    sl = (z, slice(y0, y1), slice(x0, x1))
    over[ada[sl]] = (0.95, 0.85, 0.1, 0.8)
    over[net[sl]] = (0.9, 0.15, 0.15, 0.8)
    over[net[sl] & ada[sl]] = (1.0, 0.55, 0.0, 0.8)
    ax[0].imshow(over)
    if g[sl].any():
        ax[0].contour(g[sl], levels=[0.5], colors="cyan", linewidths=0.6)
    ax[0].set_title(f"axial slice {z} (groups outlined cyan)")
    front = colour(g.any(1), net.any(1), ada.any(1))[::-1, x0:x1]
    side = colour(g.any(2), net.any(2), ada.any(2))[::-1, y0:y1]
    ax[1].imshow(front, aspect=sp[2] / sp[0])
    ax[1].set_title("projected from the front")
    ax[2].imshow(side, aspect=sp[2] / sp[1])
    ax[2].set_title("projected from the side")
    for a in ax:
        a.axis("off")
    names = ["artery groups", "adaptive threshold", "calcium network", "both"]
    cols = [(0.45,) * 3, (0.95, 0.85, 0.1), (0.9, 0.15, 0.15), (1.0, 0.55, 0.0)]
    fig.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in cols], names, loc="lower center",
               ncol=4)
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=10)
    fig.savefig(path, dpi=70)
    plt.close(fig)


def figure(path, name, ct, groups, ref, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    orient = lambda im: sitk.DICOMOrient(im, "LPS")  # noqa: E731
    c, g = orient(ct), orient(groups)
    hu = sitk.GetArrayFromImage(c).astype(np.float32)
    if name in NO_VOXELS:
        hu[:] = -1000
    lab = sitk.GetArrayFromImage(g)
    rl = None if ref is None else sitk.GetArrayFromImage(orient(ref))
    sp = c.GetSpacing()
    anchor = rl if rl is not None and (rl == 1).any() else lab
    pts = np.argwhere(anchor == 1) if (anchor == 1).any() else np.argwhere(anchor > 0)
    cz, cy, cx = (np.median(pts, 0).astype(int) if len(pts) else np.array(hu.shape) // 2)
    body = np.argwhere((hu > -500).any(0)) if name not in NO_VOXELS else np.argwhere((lab > 0).any(0))
    if rl is not None:
        body = np.concatenate([body, np.argwhere((rl > 0).any(0))])
    (y0, x0), (y1, x1) = (body.min(0), body.max(0) + 1) if len(body) else ((0, 0), hu.shape[1:])
    y0, x0 = max(y0 - 10, 0), max(x0 - 10, 0)
    hu, lab = hu[:, y0:y1 + 10, x0:x1 + 10], lab[:, y0:y1 + 10, x0:x1 + 10]
    rl = None if rl is None else rl[:, y0:y1 + 10, x0:x1 + 10]
    cy, cx = cy - y0, cx - x0
    fig, ax = plt.subplots(1, 3, figsize=(17, 6.2))
    views = [(hu[cz], lab[cz], None if rl is None else rl[cz], 1.0, f"axial slice {cz}"),
             (hu[:, cy][::-1], lab[:, cy][::-1], None if rl is None else rl[:, cy][::-1],
              sp[2] / sp[0], f"coronal slice {cy}")]
    for a, (img, lb, rf, aspect, t) in zip(ax, views):
        a.imshow(img, cmap="gray", vmin=-160, vmax=340, aspect=aspect)
        rgba = np.zeros(lb.shape + (4,))
        for v, col in COLOURS.items():
            rgba[lb == v] = (*col, 0.45)
        a.imshow(rgba, aspect=aspect)
        if rf is not None and rf.any():
            a.contour(rf > 0, levels=[0.5], colors="white", linewidths=0.8)
        a.set_title(t)
        a.axis("off")
    ax[2].imshow(_depth_view(lab, sp), aspect=sp[2] / sp[0])
    ax[2].set_title("3D view from the front (network), nearer = brighter")
    ax[2].axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLOURS[v]) for v in GROUPS]
    fig.legend(handles + [plt.Line2D([], [], color="k")], list(GROUPS.values()) + ["reference (white)"],
               loc="lower center", ncol=5)
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=10)
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--figures")
    ap.add_argument("--tag", default="")
    ap.add_argument("--json")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--calcium", action="store_true", help="also the calcium found inside the "
                    "groups by the calcium network and by the adaptive threshold")
    ap.add_argument("--calcium-model", default="arteries-calcium",
                    help="calcium network (name or folder) for --calcium")
    ap.add_argument("--grid-mm", type=float, help="run the network on this isotropic grid "
                    "instead of its card's (a diagnostic of scale: real arteries then look "
                    "wider or thinner to it); the results and pictures are tagged with it")
    ap.add_argument("--branches", help="branch network (name or folder) to run after the "
                    "model near its aorta (segmentation/branches.py); replaces the card's own")
    ap.add_argument("--band-mm", type=float, default=35.0, help="band of --branches (mm)")
    ap.add_argument("--wall-mm", type=float, help="with --branches: side-group pieces within "
                    "this distance of the aorta go to it (branches.wall_pieces_to_aorta)")
    ap.add_argument("--no-branches", action="store_true", help="without the card's branch network")
    ap.add_argument("--trim-to-lumen", action="store_true", help="with --branches: cut the side "
                    "branches to the lumen the CT shows (segmentation/lumen.trim_to_lumen)")
    a = ap.parse_args()
    info = find_model(a.model)
    post = dict(info.card.get("postprocessing", {}))
    what = ""  # the branch network named in the figures' titles
    if a.branches or a.no_branches:
        post.pop("branches", None)
        if a.branches:
            b = find_model(a.branches)
            post["branches"] = {"model": str(b.folder.resolve()), "band_mm": a.band_mm,
                                "trim_to_lumen": a.trim_to_lumen}
            if a.wall_mm:
                post["branches"]["wall_mm"] = a.wall_mm
            a.tag = a.tag or f"{info.card['version']}+{b.name}{b.version}{'trim' * a.trim_to_lumen}"
            what = f" with branches {b.name} {b.version}"
        info = dataclasses.replace(info, card={**info.card, "postprocessing": post})
    if a.grid_mm:
        info = dataclasses.replace(info, card={**info.card, "spacing_mm": [a.grid_mm] * 3})
        a.tag = a.tag or f"{info.card['version']}_grid{a.grid_mm:g}mm"
    out = {}
    for name, ct, ref, labelled in cases(a.only):
        t = time.time()
        groups = segment(ct, info, threads=2)
        res = measure(name, ct, ref, labelled, groups)
        res["seconds"] = round(time.time() - t, 1)
        if a.calcium:
            masks = {}
            res["calcium"] = c = calcium_inside(ct, groups, a.calcium_model, masks)
            if a.figures and c:
                cm = find_model(a.calcium_model).card
                calcium_figure(
                    Path(a.figures) / f"real_calcium_{name}_{cm['version']}.png", name, ct,
                    groups, masks,
                    f"{name} ({res['phase']}): calcium inside {info.card['name']} "
                    f"{info.card['version']}'s groups: {cm['name']} {cm['version']} "
                    f"{c['network_mm3']:g} mm3 (covers {c['network_artery_coverage']:.0%} of "
                    f"the groups as artery), adaptive threshold {c['adaptive_mm3']:g} mm3; "
                    f"metal left out {c['network_metal_excluded_mm3']:g} / "
                    f"{c['adaptive_metal_excluded_mm3']:g} mm3; no calcium reference exists")
        out[name] = res
        print(name, json.dumps(res), flush=True)
        if a.figures:
            dice = ", ".join(f"{k[5:]} Dice {v:.2f}" for k, v in res.items() if k.startswith("dice_"))
            grid = f" on a {a.grid_mm:g} mm grid" if a.grid_mm else ""
            title = (f"{name} ({res['phase']}): {info.card['name']} {info.card['version']}{what}{grid}"
                     f"{' - ' + dice if dice else ''}; plausibility "
                     f"{'passed' if res['plausible'] else 'FAILED: ' + '; '.join(res['failed_checks'])[:160]}")
            figure(Path(a.figures) / f"real_{name}_{a.tag or info.card['version']}.png", name, ct,
                   groups, ref, title)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
