#!/usr/bin/env python3
"""Team references of aortic side branches on ``ircad01_abdomen``, from waypoints read off
the scan by eye (committed below, voxel indices x, y, z).

    python training/draw_branch_reference.py [--check /tmp/branches.png]

Between consecutive waypoints the brightest path is found (minimal path through a cost
that is low in contrast-filled voxels); the branch is every voxel at least half way
between the lumen and the surrounding fat/soft tissue (HU smoothed by 0.6 mm) within
``RADIUS_MM`` of that path and connected to it; the aorta reference is left out.  Writes
``docs/references/ircad01_abdomen_<group>.nii.gz`` (uint8 masks only; the CT is never
copied).  ``--check`` draws the result over the CT for the person checking it (a local
picture: IRCAD voxels are not for redistribution, do not commit it).

How the waypoints were chosen: slice-by-slice lists of bright blobs in front of the
aorta (the SMA is the one 12-19 mm in front, 4-5 mm wide, at 170-190 HU, followed from
its origin at slice 88 to slice 44; the celiac trunk leaves the aorta at slice 92 and
turns up and to the left to slice 100), checked on sagittal maximum projections.

The renal arteries (2026-12-01; 2026-11-24 had left them out: in this late phase the renal
veins are as bright and as near) were told from the veins on coronal slab projections
that follow the aorta (slabs 5-10 mm thick at set depths behind and in front of its
centre) and on axial slices, by where each vessel ends and by its HU:

- left: a 4-5 mm tube leaves the aorta's left posterolateral wall at slice 75 (the bump
  of the aorta reference there) with its lumen continuous with the aortic lumen (no
  darker wall between them, 175-205 HU), and runs laterally, backwards and slightly down
  to the hilum, behind the 8-10 mm left renal vein, which crosses in front of the aorta
  to the IVC at slices 72-75 and does not open into the aorta.  Drawn for 31 mm.
- right: the right kidney is low (slices 0-45), and a 3-4 mm tube at 180-200 HU (the
  aortic lumen is 193 HU; the IVC 150-175 HU) was followed slice by slice from the hilum
  up to the aorta's right anterior wall, which it reaches at slices 75-78 through a
  calcified ostium (400-990 HU), passing behind the IVC.  Beside it runs a wider vessel
  that ends in the IVC at slices 58-68 (the right renal vein); the two touch below slice
  47, so the artery is drawn from its origin to slice 48 (83 mm).
- the tube searched around the path is 2.5 mm for them (4 mm for the SMA and celiac
  trunk), so that the vein beside an artery is not taken in.  No accessory renal artery
  was seen; segmental branches in the hila are not drawn.
"""

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.graph import route_through_array

ROOT = Path(__file__).resolve().parents[1]
CT = ROOT.parent / "shared" / "data" / "ircad01_abdomen" / "ct.nii.gz"
OUT = ROOT / "docs" / "references"
WAYPOINTS = {  # group: [(x, y, z) voxel indices], from the aorta outwards
    "mesenteric": [  # the superior mesenteric artery, origin to slice 44 (67 mm)
        [(291, 244, 88), (291, 238, 86), (289, 236, 82), (290, 232, 78), (291, 226, 72),
         (292, 224, 68), (294, 222, 60), (297, 220, 52), (299, 220, 44)],
        # the celiac trunk, origin to slice 100
        [(293, 246, 92), (294, 240, 94), (300, 234, 96), (309, 227, 98), (306, 223, 100)],
    ],
    "renal": [  # 2026-12-01, see the docstring
        # left: from the left posterolateral wall at slice 75, posterior to the left renal
        # vein, towards the hilum (31 mm)
        [(296, 260, 75), (304, 261, 75), (310, 263, 74), (316, 268, 73), (330, 286, 73),
         (340, 291, 72)],
        # right: from the calcified right anterior wall at slices 75-78, behind the IVC, down
        # to slice 48, where it joins the right renal vein on its way to the low kidney (83 mm)
        [(268, 243, 78), (264, 241, 74), (257, 240, 72), (250, 241, 69), (245, 243, 67),
         (239, 245, 64), (230, 246, 60), (222, 248, 56), (215, 251, 52), (208, 252, 48)],
    ],
}
#: the tube around the path searched for lumen: 4 mm for the SMA and celiac trunk; 2.5 mm
#: for the renal arteries, which run beside their veins (a wider tube takes in the vein)
RADIUS_MM = {"mesenteric": 4.0, "renal": 2.5}


def path_between(cost, a, b, pad=6):
    """Voxels (z, y, x) of the cheapest path from ``a`` to ``b`` inside their box."""
    lo = np.maximum(np.minimum(a, b) - pad, 0)
    hi = np.minimum(np.maximum(a, b) + pad + 1, cost.shape)
    sub = cost[tuple(slice(p, q) for p, q in zip(lo, hi))]
    idx, _ = route_through_array(sub, tuple(np.asarray(a) - lo), tuple(np.asarray(b) - lo),
                                 fully_connected=True, geometric=True)
    return np.asarray(idx) + lo


def draw(hu, aorta, spacing, chains, lumen, tissue, radius_mm):
    sp = np.asarray(spacing, float)[::-1]
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), 0.6 / sp)
    thr = (lumen + tissue) / 2
    cost = 1.0 + 50.0 / (1.0 + np.exp((smooth - thr) / 15.0))
    out = np.zeros(hu.shape, bool)
    for chain in chains:
        pts = [np.array(p[::-1]) for p in chain]
        line = np.zeros(hu.shape, bool)
        for a, b in zip(pts[:-1], pts[1:]):
            line[tuple(path_between(cost, a, b).T)] = True
        near = ndimage.distance_transform_edt(~line, sampling=sp) <= radius_mm
        cand = near & (smooth >= thr) & ~aorta | line & ~aorta
        lab, _ = ndimage.label(cand, np.ones((3, 3, 3)))
        keep = np.unique(lab[line & (lab > 0)])
        out |= np.isin(lab, keep[keep > 0])
    return out, thr


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check")
    a = ap.parse_args()
    ct = sitk.ReadImage(str(CT))
    hu = sitk.GetArrayFromImage(ct)
    aorta = sitk.GetArrayFromImage(sitk.ReadImage(str(OUT / "ircad01_abdomen_aorta.nii.gz"))) > 0
    core = ndimage.binary_erosion(aorta, iterations=3)
    lumen = float(np.median(hu[core]))
    shell = ndimage.binary_dilation(aorta, iterations=12) & ~ndimage.binary_dilation(aorta, iterations=6)
    tissue = float(np.median(hu[shell]))
    vox = float(np.prod(ct.GetSpacing()))
    masks = {}
    for group, chains in WAYPOINTS.items():
        m, thr = draw(hu, aorta, ct.GetSpacing(), chains, lumen, tissue, RADIUS_MM[group])
        masks[group] = m
        img = sitk.GetImageFromArray(m.astype(np.uint8))
        img.CopyInformation(ct)
        sitk.WriteImage(img, str(OUT / f"ircad01_abdomen_{group}.nii.gz"), True)
        zs = np.flatnonzero(m.any((1, 2)))
        print(f"{group}: {m.sum() * vox:.0f} mm3, slices {zs.min()}-{zs.max()}, lumen {lumen:.0f} HU, "
              f"surroundings {tissue:.0f} HU, threshold {thr:.0f} HU")
    if a.check:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        allm = np.zeros(hu.shape, np.uint8)
        allm[aorta] = 1
        for v, g in ((3, "mesenteric"), (4, "renal")):
            if g in masks:
                allm[masks[g]] = v
        x0 = int(np.argwhere(aorta).mean(0)[2])
        fig, ax = plt.subplots(1, 2, figsize=(16, 9))
        ax[0].imshow(hu[:, :, x0 - 12:x0 + 16].max(2)[::-1], cmap="gray", vmin=0, vmax=300, aspect=2.8)
        ax[0].contour(allm[:, :, x0 - 12:x0 + 16].max(2)[::-1], levels=[0.5, 2.5], colors=["r", "c"])
        ax[1].imshow(allm.max(1)[::-1], aspect=2.8, cmap="tab10", vmin=0, vmax=9)
        fig.savefig(a.check, dpi=60)


if __name__ == "__main__":
    main()
