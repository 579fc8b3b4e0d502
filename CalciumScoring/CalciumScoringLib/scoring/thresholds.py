"""Calcification from intensity thresholds inside the arteries (baselines and fallback).

Every method has the form ``method(ct, arteries_mask, **params) -> SimpleITK.Image``
(binary uint8 on the CT grid); ``arteries_mask`` is any binary artery mask (e.g.
``groups > 0``).  The threshold used is stored in the image's metadata under
``"threshold_hu"``.

- :func:`fixed` — one global HU threshold (470 HU: the mean per-case optimum on the
  published training set, the "clinical" threshold).  Fails when the
  contrast-filled lumen itself exceeds it (the whole lumen is marked).
- :func:`display_8bit` — the 8-bit display-scale method of §2: window the CT to
  0-255 and keep values > 145.  The published window is not stated; the default
  (centre 300 HU, width 1500 HU) marks HU >= 408.8 (8-bit value >= 146).
- :func:`adaptive` — a per-case threshold from lumen statistics.  The lumen is the
  artery mask eroded by ``erode`` voxels (away from the wall); ``"robust"``
  (default): median + ``k`` x 1.4826 x MAD of the lumen (calcium barely moves the
  median and MAD); ``"mean_sd"``: mean + ``k`` x SD; ``"median_max"``:
  (median + max) / 2 of the lumen, as in SlicerVMTK's calcification
  pre-processor.  Never below ``floor_hu`` (130 HU).
- :func:`lumen_relative` (the default) — voxels at least ``margin_hu`` (130 HU) above the
  lumen's median, in 26-connected pieces of at least ``min_cluster_mm3`` (2 mm³).  The
  margin does not follow the image noise, so the calcium stays put when the same scan is
  resampled, smoothed or noisier (the adaptive rule's k x SD shrinks with the noise and
  its calcium grows: +10 to +138 % for half a voxel of resampling on the real scans;
  this rule -4 to +4 % where the scan holds more than a few mm³, see
  ``scripts/reproducibility.py`` and docs/validation.md).  The lumen noise is measured
  too (``noise_hu``): where it exceeds a quarter of the margin, noise reaches the
  threshold and the QC flag ``calcium_not_reproducible`` says so.
- :func:`idealised` — the per-case optimum (needs the reference calcification):
  thresholds at 1 % steps of the intensity range inside the arteries, keep the
  one with the highest Dice against the reference; an upper bound.
- :func:`otsu` — Otsu's threshold of the intensities inside the arteries.

:func:`without_metal` takes metal out of any calcification (a threshold's or a network's):
a 26-connected piece that reaches :data:`METAL_HU` anywhere, or touches metal through the
strut's own bright blur (:data:`METAL_BRIDGE_FRACTION`), is a stent strut, clip or coil
with its blooming, not calcium.
"""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..imagecheck import as_mask, binary_image, check_same_grid, crop_box


#: calcium does not reach this in CT; a calcification piece that does is metal
#: (the QC flag ``metal`` counts voxels above it near the arteries)
METAL_HU = 2500.0
#: a CT clipped below METAL_HU (an export windowed to 0-2000 HU, say) shows metal at its
#: clip level: it is taken for the metal level when at least CLIPPED_MIN_VOXELS voxels sit
#: exactly at the volume's maximum and that maximum is at least CLIPPED_MIN_HU (lower clip
#: levels cut bone and calcium too: ircad01_abdomen is clipped at 1023 HU)
CLIPPED_MIN_HU, CLIPPED_MIN_VOXELS = 1500.0, 50
#: a piece is metal too when it is 26-connected to a voxel at the metal level through
#: voxels at least this fraction of that level (a network labels a strut's blurred rim
#: calcium and leaves its core out: in the stent-graft CTA, clipped at 2000 HU, pieces
#: peaking at 1,560-1,880 HU sat 5-6 mm from the struts, joined to them by voxels
#: >= 1,000 HU; bridging at 1,250 HU joined none of them)
METAL_BRIDGE_FRACTION = 0.5
#: how far (mm) around the calcification the bridge is followed
METAL_BRIDGE_MM = 15.0
#: calcium kept within this distance (mm) of metal is reported (``metal_near_mm3``): a
#: stent's thinnest wire neither reaches the metal level nor joins it (on the stent-graft
#: CTA most of the adaptive threshold's 255 mm3 left draws the graft's zig-zag wire; within
#: 5, 10, 15, 20 and 30 mm of its clip-level voxels lie 6, 98, 177, 216 and 255 mm3)
METAL_NEAR_MM = 20.0


def _inputs(ct, arteries_mask):
    check_same_grid(ct, arteries_mask, "CT", "artery mask")
    m = as_mask(arteries_mask, "artery mask")
    return sitk.GetArrayViewFromImage(ct), m


def _result(ct, arr, mask, threshold, strict=False):
    above = arr > threshold if strict else arr >= threshold
    out = binary_image(mask & above, ct)
    out.SetMetaData("threshold_hu", f"{float(threshold):.6g}")
    return out


def fixed(ct, arteries_mask, threshold_hu=470.0):
    """Voxels >= ``threshold_hu`` inside the arteries."""
    arr, m = _inputs(ct, arteries_mask)
    return _result(ct, arr, m, threshold_hu)


def display_8bit(ct, arteries_mask, threshold=145, window_center=300.0, window_width=1500.0):
    """Window the CT to 0-255 (``window_center``/``window_width`` in HU); keep values > ``threshold``."""
    if window_width <= 0 or not 0 <= threshold <= 255:
        raise ValueError("window_width must be > 0 and threshold within 0-255")
    arr, m = _inputs(ct, arteries_mask)
    lo = window_center - window_width / 2.0
    hu = lo + (threshold + 1) * window_width / 255.0  # lowest HU whose 8-bit value exceeds it
    disp = np.clip(np.floor((arr.astype(np.float32) - lo) * 255.0 / window_width), 0, 255)
    out = binary_image(m & (disp > threshold), ct)
    out.SetMetaData("threshold_hu", f"{hu:.6g}")
    return out


def _lumen(m, erode):
    """``(box, mask in box, lumen in box)``: the artery mask's bounding box (padded), the
    mask there, and its core eroded by ``erode`` voxels (the whole mask when the core holds
    fewer than 10 voxels)."""
    box = crop_box(m, pad=erode + 1)
    if box is None:
        raise ValueError("the artery mask is empty: no lumen to adapt the threshold to")
    mm = m[box]
    lumen = ndimage.binary_erosion(mm, iterations=erode) if erode else mm
    if lumen.sum() < 10:
        lumen = mm
    return box, mm, lumen


def lumen_threshold(arr, m, method="robust", k=4.0, erode=1, floor_hu=130.0):
    """The adaptive threshold (HU) of :func:`adaptive`, from arrays."""
    box, mm, lumen = _lumen(m, erode)
    v = arr[box][lumen].astype(np.float64)
    med = float(np.median(v))
    if method == "robust":
        thr = med + k * 1.4826 * float(np.median(np.abs(v - med)))
    elif method == "mean_sd":
        thr = float(v.mean() + k * v.std())
    elif method == "median_max":
        thr = (med + float(v.max())) / 2.0
    else:
        raise ValueError("method must be 'robust', 'mean_sd' or 'median_max'")
    return max(thr, floor_hu)


def adaptive(ct, arteries_mask, method="robust", k=4.0, erode=1, floor_hu=130.0):
    """Per-case threshold from the lumen intensities (see the module docstring)."""
    arr, m = _inputs(ct, arteries_mask)
    return _result(ct, arr, m, lumen_threshold(arr, m, method, k, erode, floor_hu))


def lumen_noise(arr, lumen):
    """The CT's noise in HU: the robust SD (1.4826 MAD) of the differences between
    neighbouring lumen voxels along x, over sqrt(2).  Unlike the SD of the lumen itself it
    leaves out the lumen's slow changes and its edges; NaN for fewer than 20 pairs."""
    pair = lumen[:, :, 1:] & lumen[:, :, :-1]
    if np.count_nonzero(pair) < 20:
        return float("nan")
    a = arr.astype(np.float32, copy=False)
    d = (a[:, :, 1:] - a[:, :, :-1])[pair]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def lumen_relative(ct, arteries_mask, margin_hu=130.0, erode=1, floor_hu=130.0,
                   smooth_mm=0.0, min_cluster_mm3=2.0, noise_k=0.0):
    """Voxels at least ``margin_hu`` above the lumen's median HU (never below ``floor_hu``),
    or ``noise_k`` times the lumen noise (:func:`lumen_noise`) where that is more,
    optionally on the CT smoothed by a Gaussian of ``smooth_mm`` (sigma, mm), keeping
    26-connected pieces of at least ``min_cluster_mm3``.  The metadata hold
    ``threshold_hu``, ``lumen_hu`` and ``noise_hu``."""
    arr, m = _inputs(ct, arteries_mask)
    box, mm, lumen = _lumen(m, erode)
    hu = arr[box].astype(np.float32)
    noise = lumen_noise(hu, lumen)
    if smooth_mm > 0:
        sigma = [smooth_mm / s for s in ct.GetSpacing()[::-1]]
        hu = ndimage.gaussian_filter(hu, sigma, mode="nearest")
    med = float(np.median(hu[lumen]))
    step = max(margin_hu, noise_k * noise) if np.isfinite(noise) else margin_hu
    thr = max(med + step, floor_hu)
    found = np.zeros(m.shape, bool)
    found[box] = mm & (hu >= thr)
    if min_cluster_mm3 > 0 and found.any():
        pieces, _ = ndimage.label(found[box], np.ones((3, 3, 3)))
        vv = float(np.prod(ct.GetSpacing()))
        small = np.flatnonzero(np.bincount(pieces.ravel())[1:] * vv < min_cluster_mm3) + 1
        found[box] &= ~np.isin(pieces, small)
    out = binary_image(found, ct)
    for key, v in (("threshold_hu", thr), ("lumen_hu", med), ("noise_hu", noise),
                   ("margin_hu", margin_hu), ("min_cluster_mm3", min_cluster_mm3)):
        out.SetMetaData(key, f"{v:.6g}")
    return out


def idealised_threshold(ct, arteries_mask, reference, steps=100):
    """``(threshold_hu, dice)`` maximising Dice with ``reference`` over 1/steps of the range."""
    arr, m = _inputs(ct, arteries_mask)
    check_same_grid(ct, reference, "CT", "reference calcification")
    ref = as_mask(reference, "reference calcification") & m
    box = crop_box(m)
    if box is None:
        raise ValueError("the artery mask is empty")
    v = arr[box][m[box]].astype(np.float64)
    r = ref[box][m[box]]
    lo, hi = float(v.min()), float(v.max())
    order = np.argsort(v)
    vs, rs = v[order], r[order]
    cum_ref = np.concatenate([[0], np.cumsum(rs[::-1])])[::-1]  # reference voxels at index >= i
    n_ref = int(rs.sum())
    best = (hi, -1.0)
    for t in lo + (hi - lo) * np.arange(steps + 1) / steps:
        i = int(np.searchsorted(vs, t, side="left"))
        pred = len(vs) - i
        tp = int(cum_ref[i])
        dice = 2.0 * tp / (pred + n_ref) if pred + n_ref else 1.0
        if dice > best[1] + 1e-12:
            best = (float(t), dice)
    return best


def idealised(ct, arteries_mask, reference, steps=100):
    """Calcification at the per-case optimal threshold (needs the reference calcification)."""
    thr, _ = idealised_threshold(ct, arteries_mask, reference, steps)
    return fixed(ct, arteries_mask, thr)


def otsu(ct, arteries_mask):
    """Voxels above Otsu's threshold of the intensities inside the arteries (strictly above,
    as scikit-image defines it)."""
    from skimage.filters import threshold_otsu

    arr, m = _inputs(ct, arteries_mask)
    box = crop_box(m)
    if box is None:
        raise ValueError("the artery mask is empty")
    return _result(ct, arr, m, float(threshold_otsu(arr[box][m[box]])), strict=True)


def metal_level(ct, metal_hu=METAL_HU):
    """The HU from which a calcification piece is metal: ``metal_hu``, or the CT's clip
    level where the CT is clipped below it (see :data:`CLIPPED_MIN_HU`)."""
    arr = sitk.GetArrayViewFromImage(ct)
    top = float(arr.max())
    if CLIPPED_MIN_HU <= top < metal_hu and np.count_nonzero(arr == top) >= CLIPPED_MIN_VOXELS:
        return top
    return float(metal_hu)


def without_metal(ct, calcification, metal_hu=METAL_HU):
    """The calcification without its metal, and what was taken out.

    A 26-connected piece of ``calcification`` is removed whole when its brightest voxel
    reaches the metal level (:func:`metal_level`), or when it is 26-connected to a voxel at
    that level through voxels of at least :data:`METAL_BRIDGE_FRACTION` of it (followed up
    to :data:`METAL_BRIDGE_MM`, or :data:`METAL_NEAR_MM` if larger, around the
    calcification): a stent strut or clip and the blooming around it, which a threshold or
    a network would otherwise score as calcium.

    Parameters
    ----------
    ct : SimpleITK.Image
        The CT in HU.
    calcification : SimpleITK.Image
        Binary calcification on the CT's grid (not changed).
    metal_hu : float
        Metal level of an unclipped CT.

    Returns
    -------
    image : SimpleITK.Image
        A new binary uint8 image (the input's metadata kept).
    info : dict
        ``metal_hu`` (the level used), ``metal_excluded_mm3``, ``metal_pieces``, and
        ``metal_near_mm3``: the calcium kept within :data:`METAL_NEAR_MM` of a metal voxel
        (0 without metal).
    """
    check_same_grid(ct, calcification, "CT", "calcification")
    m = as_mask(calcification, "calcification")
    level = metal_level(ct, metal_hu)
    info = {"metal_hu": level, "metal_excluded_mm3": 0.0, "metal_pieces": 0,
            "metal_near_mm3": 0.0}
    box = crop_box(m)
    out = m.copy()
    if box is not None:
        reach = max(METAL_BRIDGE_MM, METAL_NEAR_MM)
        pad = [int(np.ceil(reach / s)) for s in ct.GetSpacing()[::-1]]
        box = tuple(slice(max(b.start - p, 0), min(b.stop + p, n))
                    for b, p, n in zip(box, pad, m.shape))
        arr = sitk.GetArrayViewFromImage(ct)[box]
        pieces, n = ndimage.label(m[box], np.ones((3, 3, 3)))
        metal_vox = arr >= level
        if n and metal_vox.any():
            # pieces joined to metal through the strut's bright blur (or touching it)
            joined, _ = ndimage.label(m[box] | (arr >= METAL_BRIDGE_FRACTION * level),
                                      np.ones((3, 3, 3)))
            metal_parts = np.unique(joined[metal_vox])
            metal = np.unique(pieces[np.isin(joined, metal_parts) & (pieces > 0)])
        else:
            metal = np.zeros(0, int)
        if metal.size:
            gone = np.isin(pieces, metal)
            out[box] &= ~gone
            info["metal_excluded_mm3"] = round(float(gone.sum() * np.prod(ct.GetSpacing())), 2)
            info["metal_pieces"] = int(metal.size)
        if metal_vox.any() and out[box].any():
            sp = ct.GetSpacing()[::-1]
            near = ndimage.distance_transform_edt(~metal_vox, sampling=sp) <= METAL_NEAR_MM
            info["metal_near_mm3"] = round(float((out[box] & near).sum() * np.prod(sp)), 2)
    img = binary_image(out, ct)
    for key in calcification.GetMetaDataKeys():
        img.SetMetaData(key, calcification.GetMetaData(key))
    return img, info


def threshold_record(img):
    """What a threshold method stored in its result's metadata, as numbers (for provenance):
    ``threshold_hu`` and, where given, ``lumen_hu``, ``noise_hu``, ``margin_hu``."""
    out = {}
    for key in ("threshold_hu", "lumen_hu", "noise_hu", "margin_hu", "min_cluster_mm3"):
        if img.HasMetaDataKey(key):
            out[key] = float(img.GetMetaData(key))
    return out


METHODS = {"fixed": fixed, "display_8bit": display_8bit, "adaptive": adaptive, "otsu": otsu,
           "lumen_relative": lumen_relative,
           "idealised": idealised}
