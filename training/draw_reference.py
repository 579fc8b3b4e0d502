#!/usr/bin/env python3
"""Draw the team's reference aorta of ``ircad01_abdomen`` (3D-IRCADb-01 patient 1), which
comes without artery labels, by tracking the lumen slice by slice from one seed.

    python training/draw_reference.py [--out docs/references/ircad01_abdomen_aorta.nii.gz]

How: from a seed in the descending aorta (slice 107, row 265, column 290 of the CT turned
to LPS; 178 HU there), each axial slice keeps the 2D piece above the half-way level
between the lumen (followed along the aorta) and soft tissue (40 HU), below 500 HU, that
lies nearest to the previous slice's centre, inside a disc of 1.1 times (+ 2 pixels) the aorta's
recent radius, opened by a 2.9 mm disc; bone (> 400 HU, closed and filled, larger than 150 pixels) and 3 pixels
around it are left out, holes are filled.  Tracking stops where the piece shrinks below
45 % of the recent area: at the bifurcation below, at the top of the field of view above.
What it draws: the aorta's lumen and wall (not the iliac, celiac, SMA or renal arteries:
they are for a later reference).  Checked by eye on axial, coronal and sagittal views
(``docs/references/README.md``) and by the plausibility check (all checks pass).

The CT is never copied into the project (its licence forbids redistribution); only this
mask, made by the team, is.
"""

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
CT = ROOT.parent / "shared" / "data" / "ircad01_abdomen" / "ct.nii.gz"
SEED = (107, 265, 290)  # slice, row, column of the LPS-oriented CT
#: opening element: a disc of 5 pixels (2.9 mm) radius; the first version (a 2-pixel
#: cross) let pieces of the crus and of the vertebra's front join the aorta on slices 72-82
DISC = np.hypot(*np.mgrid[-5:6, -5:6]) <= 5


def _slice_piece(hu, centre, radius, lumen, px):
    """The lumen piece of one slice nearest ``centre`` inside a disc, or None."""
    yy, xx = np.mgrid[:hu.shape[0], :hu.shape[1]]
    disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2
    bone = ndimage.binary_fill_holes(ndimage.binary_closing(hu > 400, iterations=3))
    labels, n = ndimage.label(bone)
    sizes = ndimage.sum(bone, labels, range(1, n + 1))
    bone = np.isin(labels, 1 + np.flatnonzero(sizes > 150))  # not calcified plaques
    m = (hu > (lumen + 40) / 2) & (hu < 500) & disc & ~ndimage.binary_dilation(bone, iterations=3)
    comp, n = ndimage.label(ndimage.binary_opening(m, DISC))  # cuts thin attachments
    if n == 0:
        return None
    idx = ndimage.distance_transform_edt(comp == 0, return_indices=True)[1]
    cy, cx = int(round(centre[0])), int(round(centre[1]))
    return ndimage.binary_fill_holes(comp == comp[idx[0][cy, cx], idx[1][cy, cx]])


def track(hu, seed, px):
    """Aorta mask of ``hu`` (LPS array, smoothed) tracked from ``seed`` both ways."""
    lab = np.zeros(hu.shape, np.uint8)
    k0, y0, x0 = seed
    start = float(np.median(hu[k0, y0 - 4:y0 + 5, x0 - 4:x0 + 5]))
    for ks in (range(k0, -1, -1), range(k0 + 1, hu.shape[0])):
        centre, lumen, radius, areas = (y0, x0), start, 30.0, []
        for k in ks:
            piece = _slice_piece(hu[k], centre, radius, lumen, px)
            if piece is None:
                break
            area = piece.sum() * px * px
            if areas and area < 0.45 * np.median(areas[-5:]):
                break
            areas.append(area)
            lab[k][piece] = 1
            py, pxs = np.nonzero(piece)
            centre = (py.mean(), pxs.mean())
            core = ndimage.binary_erosion(piece, iterations=3)
            lumen = 0.8 * lumen + 0.2 * float(np.median(hu[k][core if core.any() else piece]))
            radius = 1.1 * np.sqrt(np.median(areas[-9:]) / np.pi) / px + 2
    return lab


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "references" / "ircad01_abdomen_aorta.nii.gz"))
    a = ap.parse_args()
    ct = sitk.ReadImage(str(CT))
    lps = sitk.DICOMOrient(ct, "LPS")
    hu = ndimage.median_filter(sitk.GetArrayFromImage(lps).astype(np.float32), size=(1, 3, 3))
    lab = sitk.GetImageFromArray(track(hu, SEED, lps.GetSpacing()[0]))
    lab.CopyInformation(lps)
    lab = sitk.Resample(lab, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)  # CT's grid
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(lab, a.out, useCompression=True)
    arr = sitk.GetArrayViewFromImage(lab)
    print(f"{a.out}: {int(arr.sum())} voxels, {arr.sum() * np.prod(ct.GetSpacing()):.0f} mm3, "
          f"slices {np.flatnonzero(arr.any(axis=(1, 2)))[[0, -1]].tolist()}")


if __name__ == "__main__":
    main()
