"""Classical calcium scores: Agatston, volume and mass scores, risk categories.

Definitions (../shared/METHOD.md §3-5):

- A *lesion* is a connected region (8-connected by default) of calcification
  voxels with CT >= ``threshold_hu`` (130 HU) on one slice; lesions with an area
  below ``min_area_mm2`` (1 mm²) are dropped as noise.
- Lesion score = area (mm²) x weight of its peak HU (1: 130-199, 2: 200-299,
  3: 300-399, 4: >= 400); the Agatston score is the sum.
- Slices are the image's own slices (the third array axis), whatever the
  direction matrix: an oblique volume is scored on its own (oblique) slices, as a
  scanner's reconstruction would be; the pixel area is ``spacing[0] * spacing[1]``.
- Normalisation to 3 mm: the score was defined on contiguous 3 mm slices.  With
  ``normalize=True`` each slice counts ``slice_increment / 3`` of a 3 mm slice,
  where the increment is the slice spacing (the distance between slice centres),
  not the nominal thickness: overlapping slices (spacing < thickness) would
  otherwise count the same calcium twice.  ``slice_thickness_mm`` is recorded and
  a warning is given when it differs from the spacing.
- Volume score = sum of lesion voxel volumes (mm³); mass score (mg) = calibration
  factor x mean HU x volume, per lesion, summed.  The calibration factor is
  scanner specific (phantom measurement); the default 0.001 mg/(mm³·HU) is the
  nominal value for which 200 mg/cm³ hydroxyapatite reads 200 HU.
"""

import numpy as np
from scipy import ndimage

WEIGHT_EDGES = (130.0, 200.0, 300.0, 400.0)
RISK_5 = ((0, "0"), (10, "1-10"), (100, "11-100"), (400, "101-400"), (np.inf, ">400"))
RISK_4 = ((0, "0"), (100, "1-100"), (300, "101-300"), (np.inf, ">300"))


def weight(peak_hu):
    """Agatston weight (0-4) of a lesion's peak HU."""
    return int(np.searchsorted(WEIGHT_EDGES, peak_hu, side="right"))


def risk_category(score, scheme="5-tier"):
    """Risk category label of an Agatston score (``"5-tier"``: 0/1-10/11-100/101-400/>400,
    ``"4-tier"``: 0/1-100/101-300/>300)."""
    if scheme not in ("5-tier", "4-tier"):
        raise ValueError("scheme must be '5-tier' or '4-tier'")
    tiers = RISK_5 if scheme == "5-tier" else RISK_4
    s = float(score)
    if s <= 0:
        return tiers[0][1]
    return next(label for upper, label in tiers[1:] if s <= upper)


def lesions(ct, calcium, spacing, threshold_hu=130.0, min_area_mm2=1.0, connectivity=8):
    """Per-slice lesions of a (k, j, i) calcification mask.

    Returns ``(labels, table)``: an int32 lesion-id array and a dict of per-lesion
    numpy arrays ``slice``, ``area_mm2``, ``peak_hu``, ``mean_hu``, ``voxels``,
    ``weight``; only lesions >= ``min_area_mm2`` are kept (ids are 1..n).
    """
    if connectivity not in (4, 8):
        raise ValueError("connectivity must be 4 or 8 (in-plane)")
    mask = calcium & (ct >= threshold_hu)
    st = np.zeros((3, 3, 3), bool)
    st[1] = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    lab, n = ndimage.label(mask, st)
    empty = {k: np.zeros(0) for k in ("slice", "area_mm2", "peak_hu", "mean_hu", "voxels", "weight")}
    if n == 0:
        return lab, empty
    idx = np.arange(1, n + 1)
    voxels = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    area = voxels * float(spacing[0] * spacing[1])
    keep = area >= min_area_mm2 - 1e-9
    peak = ndimage.maximum(ct, lab, idx)
    mean = ndimage.mean(ct, lab, idx)
    sl = np.array([s[0].start for s in ndimage.find_objects(lab)])
    remap = np.zeros(n + 1, np.int32)
    remap[idx[keep]] = np.arange(1, keep.sum() + 1)
    table = {"slice": sl[keep], "area_mm2": area[keep], "peak_hu": np.asarray(peak)[keep],
             "mean_hu": np.asarray(mean)[keep], "voxels": voxels[keep]}
    table["weight"] = np.searchsorted(WEIGHT_EDGES, table["peak_hu"], side="right")
    return remap[lab], table


def scores(table, spacing, normalize=True, calibration_mg_per_hu_mm3=0.001, select=None):
    """Agatston, volume score (mm³) and mass score (mg) of the lesions ``select``ed (bool)."""
    sel = np.ones(len(table["area_mm2"]), bool) if select is None else select
    factor = spacing[2] / 3.0 if normalize else 1.0
    agat = float(np.sum(table["area_mm2"][sel] * table["weight"][sel]) * factor)
    vol = table["voxels"][sel] * float(np.prod(spacing))
    mass = float(np.sum(calibration_mg_per_hu_mm3 * table["mean_hu"][sel] * vol))
    return agat, float(vol.sum()), mass
