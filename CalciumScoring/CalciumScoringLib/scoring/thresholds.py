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
- :func:`idealised` — the per-case optimum (needs the reference calcification):
  thresholds at 1 % steps of the intensity range inside the arteries, keep the
  one with the highest Dice against the reference; an upper bound.
- :func:`otsu` — Otsu's threshold of the intensities inside the arteries.
"""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..imagecheck import as_mask, binary_image, check_same_grid, crop_box


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


def lumen_threshold(arr, m, method="robust", k=4.0, erode=1, floor_hu=130.0):
    """The adaptive threshold (HU) of :func:`adaptive`, from arrays."""
    box = crop_box(m, pad=erode + 1)
    if box is None:
        raise ValueError("the artery mask is empty: no lumen to adapt the threshold to")
    mm = m[box]
    lumen = ndimage.binary_erosion(mm, iterations=erode) if erode else mm
    if lumen.sum() < 10:
        lumen = mm
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


METHODS = {"fixed": fixed, "display_8bit": display_8bit, "adaptive": adaptive, "otsu": otsu,
           "idealised": idealised}
