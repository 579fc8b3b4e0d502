"""The calcium label re-decided at the CT's own resolution from its HU (card ``refine_by_hu``).

The network sees the CT on its 1 mm grid, so the edge of a plaque on the input grid is
where a resampled probability crosses one half: the corners of small plaques are cut and
their edges are off by up to half a model voxel (a perfect 1 mm model reaches a
calcification Dice of about 0.87 on 0.75-0.95 mm grids).  The CT itself shows the edge at
its resolution: a voxel is calcium when its HU lies above about half way between the
plaque's peak and what surrounds it (the contrast lumen on one side, the wall and fat on
the other).  A small per-voxel classifier (a perceptron with two hidden layers, fitted on
training phantoms by ``training/fit_refiner.py``) makes that decision from the features
below, in a band around the calcium the network found (two voxels beyond it, plus where
its calcium probability exceeds 0.1) and around the artery voxels brighter than the lumen
by ``CANDIDATE_HU`` that the network left out (it can miss a plaque only ~100 HU above
the lumen); voxels outside the band keep their label.  The classifier may be an ensemble of
such perceptrons (fitted from different seeds; their probabilities are averaged), steadier
than any one of them.
"""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..imagecheck import crop_box

#: classifier inputs, in order (HU features relative to the lumen ``L`` = median of the
#: reference label's core, in units of 100 HU; the plaque ``peak`` = the maximum of the
#: smoothed HU over the voxel's band component)
FEATURES = ("calcium logit", "reference logit", "hu - L", "smoothed hu - L",
            "local max - L", "peak - L", "raw peak - L", "(hu - L) / (peak - L)",
            "(hu - 40) / (peak - 40)", "(smoothed hu - L) / (peak - L)", "local min - L",
            "(hu - local min) / (peak - local min)", "L", "lumen noise / 10",
            "slice spacing mm", "in-plane spacing mm", "distance outside calcium mm",
            "depth inside calcium mm", "labelled calcium", "depth inside artery mm",
            "bright candidate")
#: artery voxels (and their neighbours) whose smoothed HU exceeds the lumen by this join
#: the band even where the network saw no calcium
CANDIDATE_HU = 50.0
#: the voxel spacings of the training phantoms (mm); a CT outside them is given the nearest
SLICES_MM, IN_PLANE_MM = (0.625, 3.0), (0.7, 1.0)
_FULL = np.ones((3, 3, 3), bool)


def lumen_level(hu, labels, reference=1, erode=2, min_voxels=1):
    """(median, SD) of the HU in the core of ``reference`` (eroded by ``erode`` voxels),
    or ``None`` when the core has fewer than ``min_voxels`` voxels."""
    core = labels == reference
    if erode:
        core = ndimage.binary_erosion(core, _FULL, iterations=erode)
    if np.count_nonzero(core) < max(min_voxels, 1):
        return None
    v = hu[core].astype(np.float32)
    return float(np.median(v)), float(np.std(v))


def band_features(hu, labels, p_label, p_reference, spacing, lumen, label=2):
    """Band voxels (flat indices into the arrays) and their features (n, len(FEATURES)).

    Parameters
    ----------
    hu : ndarray (z, y, x)
        CT in HU.
    labels : ndarray of int
        The network's labels on the same grid.
    p_label, p_reference : ndarray of float
        The network's probabilities of ``label`` and of the reference label, resampled.
    spacing : sequence of 3 floats
        Voxel spacing (x, y, z) in mm, SimpleITK order.
    lumen : tuple of float
        (median, SD) of the reference core, from :func:`lumen_level`.
    """
    hu = hu.astype(np.float32)
    calc = labels == label
    level, noise = lumen
    sp = np.asarray(spacing, float)[::-1]
    smooth = ndimage.gaussian_filter(hu, 0.6 / sp)
    art = labels > 0
    near_artery = ndimage.binary_dilation(art, _FULL)
    cand = bright_candidates(smooth, near_artery, level)
    loose = (p_label > 0.1) | cand
    seed = ndimage.binary_dilation(calc, _FULL, iterations=2) | loose
    band = seed & near_artery | loose
    idx = np.flatnonzero(band.ravel())
    if idx.size == 0:
        return idx, np.zeros((0, len(FEATURES)), np.float32)
    comps, n = ndimage.label(seed, _FULL)
    peaks = np.asarray(ndimage.maximum(smooth, comps, np.arange(1, n + 1)))
    raw = np.asarray(ndimage.maximum(hu, comps, np.arange(1, n + 1)))
    cid = comps.ravel()[idx] - 1  # every band voxel lies in a seed component
    pk, pkr = peaks[cid], raw[cid]
    h, hs = hu.ravel()[idx], smooth.ravel()[idx]
    hmax = ndimage.maximum_filter(smooth, [2 * int(round(1.0 / v)) + 1 for v in sp]).ravel()[idx]
    hmin = ndimage.minimum_filter(smooth, [2 * int(round(1.6 / v)) + 1 for v in sp]).ravel()[idx]
    q = np.clip(p_label.ravel()[idx], 1e-3, 1 - 1e-3)  # labels_on_grid drops p < 1e-3
    r = np.clip(p_reference.ravel()[idx], 1e-3, 1 - 1e-3)
    if calc.any():
        outside = ndimage.distance_transform_edt(~calc, sampling=sp).ravel()[idx]
        inside = ndimage.distance_transform_edt(calc, sampling=sp).ravel()[idx]
    else:
        outside, inside = np.full(idx.size, 9.0), np.zeros(idx.size)
    depth = (np.minimum(ndimage.distance_transform_edt(art, sampling=sp).ravel()[idx], 5.0)
             - np.minimum(ndimage.distance_transform_edt(~art, sampling=sp).ravel()[idx], 5.0))
    den = np.maximum(pk - level, 30.0)
    const = np.ones(idx.size, np.float32)
    X = np.stack([
        np.log(q / (1 - q)), np.log(r / (1 - r)),
        (h - level) / 100, (hs - level) / 100, (hmax - level) / 100, (pk - level) / 100,
        (pkr - level) / 100, np.clip((h - level) / den, -3, 3),
        np.clip((h - 40) / np.maximum(pk - 40.0, 30.0), -3, 3), np.clip((hs - level) / den, -3, 3),
        (hmin - level) / 100, np.clip((h - hmin) / np.maximum(pk - hmin, 30.0), -3, 3),
        const * level / 100, const * noise / 10, const * np.clip(spacing[2], *SLICES_MM),
        const * np.clip(spacing[0], *IN_PLANE_MM),
        np.minimum(outside, 5.0), np.minimum(inside, 5.0), calc.ravel()[idx], depth,
        cand.ravel()[idx],
    ], 1).astype(np.float32)
    return idx, X


def bright_candidates(smooth, near_artery, level):
    """Voxels of ``near_artery`` whose smoothed HU lies ``CANDIDATE_HU`` above ``level``."""
    return near_artery & (smooth > level + CANDIDATE_HU)


def mlp_probability(X, params):
    """Probability of calcium per row of ``X`` from the perceptron ``params`` (numpy arrays
    ``mean``, ``scale``, ``w0``, ``b0``, ``w1``, ``b1``, ``w2``, ``b2``; weights as in
    ``torch.nn.Linear``).  An ensemble stacks its members' weights along a first axis
    (``w0`` of shape (members, hidden, features), ...); their probabilities are averaged."""
    one = params["w0"].ndim == 2  # a single perceptron: an ensemble of one
    w = {k: params[k][None] if one else params[k] for k in REFINER_KEYS[2:]}
    a0 = (X - params["mean"]) / params["scale"]
    total = np.zeros(len(X), np.float64)
    for m in range(len(w["w0"])):
        a = a0
        for k in (0, 1):
            a = np.maximum(a @ w[f"w{k}"][m].T + w[f"b{k}"][m], 0.0)
        z = (a @ w["w2"][m].T + w["b2"][m])[:, 0]
        total += 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
    return total / len(w["w0"])


def refine_label(hu, labels, p_label, p_reference, spacing, params, label=2, reference=1,
                 threshold=0.5, lumen=None):
    """``labels`` (a copy) with the band around ``label`` re-decided by the classifier.

    A band voxel the classifier calls calcium becomes ``label``; a ``label`` voxel it does
    not becomes ``reference`` (it stays artery).  ``lumen`` (median, SD) defaults to
    :func:`lumen_level` of these labels; unchanged when ``reference`` has no core (no lumen
    level to compare with).
    """
    out = labels.copy()
    lumen = lumen or lumen_level(hu, labels, reference)
    if lumen is None:
        return out
    idx, X = band_features(hu, labels, p_label, p_reference, spacing, lumen, label)
    if idx.size == 0:
        return out
    relabel_band(out.reshape(-1), idx, mlp_probability(X, params) > threshold, label, reference)
    return out


def relabel_band(flat, idx, yes, label=2, reference=1):
    """In place: band voxels ``idx`` of the flat labels the classifier calls calcium
    (``yes``) become ``label``; ``label`` voxels it does not become ``reference``."""
    was = flat[idx] == label
    flat[idx[yes]] = label
    flat[idx[~yes & was]] = reference


def refine_problem(labels, ct, probs, lo, label, reference):
    """The part of the CT grid that :func:`refine_on_grid` re-decides.

    Returns ``(box, hu, labels, p_label, p_reference, lumen)``: ``box`` (z, y, x slices of
    ``ct``) covers ``label`` and where its probability exceeds 0.1, with 3 mm and two
    voxels of margin; the arrays are cut to it.  ``None`` when there is nothing to refine
    or no lumen to compare with.  ``probs``/``lo`` as returned by
    ``engine.labels_on_grid(..., keep=(label, reference))``.
    """
    lab = sitk.GetArrayViewFromImage(labels)
    hu = sitk.GetArrayViewFromImage(ct)
    region = tuple(slice(int(a), int(a) + n) for a, n in zip(lo[::-1], probs[label].shape))
    sub, p_lab = lab[region], probs[label]
    lumen = lumen_level(hu[region], sub, reference)
    if lumen is None:
        return None
    # the candidates' box from the raw HU: a smoothed voxel above the bar has a raw
    # neighbour above it within the kernel (< 2 mm), which the 3 mm margin covers
    raw = bright_candidates(hu[region], sub > 0, lumen[0])
    pad = [int(np.ceil(3.0 / v)) + 2 for v in ct.GetSpacing()[::-1]]
    inner = crop_box((sub == label) | (p_lab > 0.1) | raw, pad=pad)
    if inner is None:
        return None
    box = tuple(slice(r.start + i.start, r.start + min(i.stop, r.stop - r.start))
                for r, i in zip(region, inner))
    return (box, np.asarray(hu[box]), np.array(sub[inner]), p_lab[inner],
            probs[reference][inner], lumen)


def refine_on_grid(labels, ct, probs, lo, params, label, reference, threshold=0.5):
    """``labels`` (SimpleITK) with ``label`` re-decided by :func:`refine_label` over the
    box of :func:`refine_problem`."""
    problem = refine_problem(labels, ct, probs, lo, label, reference)
    if problem is None:
        return labels
    box, hu, sub, p_lab, p_ref, lumen = problem
    lab = sitk.GetArrayFromImage(labels)
    lab[box] = refine_label(hu, sub, p_lab, p_ref, ct.GetSpacing(), params, label, reference,
                            threshold, lumen)
    out = sitk.GetImageFromArray(lab)
    out.CopyInformation(labels)
    return out


#: weights of the ``refine_by_hu`` classifier sit in the model's safetensors under this prefix
REFINER_PREFIX = "refine."
REFINER_KEYS = ("mean", "scale", "w0", "b0", "w1", "b1", "w2", "b2")


def load_refiner(info):
    """The ``refine_by_hu`` classifier (numpy arrays) from the checked weights file."""
    from safetensors.numpy import load_file

    from .models import ModelError, verify_weights

    state = load_file(str(verify_weights(info.folder, info.card)))
    params = {k[len(REFINER_PREFIX):]: v for k, v in state.items() if k.startswith(REFINER_PREFIX)}
    missing = [k for k in REFINER_KEYS if k not in params]
    if missing:
        raise ModelError(f"{info.folder}: the card asks for refine_by_hu but the weights lack "
                         f"{[REFINER_PREFIX + k for k in missing]}; re-export the model "
                         "(training/fit_refiner.py) or drop refine_by_hu from the card")
    if params["mean"].shape != (len(FEATURES),):
        raise ModelError(f"{info.folder}: its refine_by_hu classifier takes "
                         f"{params['mean'].shape[-1]} features, this version computes "
                         f"{len(FEATURES)}; refit it (training/fit_refiner.py --export) or drop "
                         "refine_by_hu from the card")
    return params
