"""Input checks shared by scoring and thresholds: same grid, binary masks, crops."""

import numpy as np
import SimpleITK as sitk

RESAMPLE_HINT = ("resample it onto the CT grid first, e.g. "
                 "sitk.Resample(mask, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)")


def check_same_grid(a, b, name_a="CT", name_b="mask", tol=1e-4):
    """Raise a ValueError naming the difference when ``a`` and ``b`` are not on one grid."""
    for what, fa, fb in (("size", a.GetSize, b.GetSize), ("spacing", a.GetSpacing, b.GetSpacing),
                         ("origin", a.GetOrigin, b.GetOrigin),
                         ("direction", a.GetDirection, b.GetDirection)):
        va, vb = np.asarray(fa(), float), np.asarray(fb(), float)
        if va.shape != vb.shape or not np.allclose(va, vb, atol=tol * max(1.0, np.abs(va).max())):
            raise ValueError(f"the {name_b} does not share the {name_a}'s grid ({what} "
                             f"{tuple(np.round(vb, 4))} vs {tuple(np.round(va, 4))}); {RESAMPLE_HINT}")


def label_values(arr):
    """Distinct values of an integer label array (bincount for small unsigned types: fast)."""
    if arr.dtype in (np.uint8, np.bool_):
        return np.flatnonzero(np.bincount(arr.ravel().view(np.uint8), minlength=2))
    return np.unique(arr)


def as_mask(image, name="mask"):
    """Boolean array of a binary (0/1 or 0/255) mask; a clear error for label maps."""
    arr = sitk.GetArrayViewFromImage(image)
    mask = arr != 0
    hi = arr.max() if arr.size else 0
    if arr.min() < 0 or np.count_nonzero(mask) != np.count_nonzero(arr == hi) and hi != 0:
        values = label_values(arr)
        raise ValueError(f"the {name} must be binary (0 and one foreground value), found values "
                         f"{values[:8].tolist()}; pass e.g. labels == 2 for model A's calcification")
    return mask


def crop_box(mask, pad=1):
    """Array slices of the bounding box of ``mask``, padded by ``pad`` voxels (one number,
    or one per axis) and kept inside the array; ``None`` when it is empty."""
    if not np.any(mask):
        return None
    pads = np.broadcast_to(np.asarray(pad, int), (mask.ndim,))
    box = []
    for ax, q in enumerate(pads):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        nz = np.flatnonzero(np.any(mask, axis=other))
        box.append(slice(max(nz[0] - q, 0), min(nz[-1] + 1 + q, mask.shape[ax])))
    return tuple(box)


def binary_image(mask, reference):
    """A uint8 SimpleITK image of a boolean array on ``reference``'s grid."""
    img = sitk.GetImageFromArray(np.asarray(mask, np.uint8))
    img.CopyInformation(reference)
    return img


def on_grid(img, reference):
    """``img`` itself when it shares ``reference``'s grid (size, origin, spacing, direction),
    else resampled onto it by nearest neighbour (label maps)."""
    same = img.GetSize() == reference.GetSize() and all(
        np.allclose(f(img), f(reference), atol=tol) for f, tol in (
            (sitk.Image.GetOrigin, 1e-3), (sitk.Image.GetSpacing, 1e-4),
            (sitk.Image.GetDirection, 1e-4)))
    return img if same else sitk.Resample(img, reference, sitk.Transform(),
                                          sitk.sitkNearestNeighbor, 0)


def to_lps(img):
    """``img`` in LPS voxel order (array x to the patient's left, y to the back, z to the
    head): the canonical orientation every step of the pipeline works in.  Axes are only
    permuted and flipped (no interpolation), so the voxels are the same; an oblique image
    gets the order closest to LPS and keeps its obliquity.  ``img`` itself when it is
    already in that order."""
    D = np.array(img.GetDirection(), float).reshape(3, 3)
    if np.all(np.diag(D) > 0) and np.allclose(np.abs(D), np.eye(3), atol=1e-6):
        return img
    return sitk.DICOMOrient(img, "LPS")


def onto(img, reference):
    """``img`` (labels) carried onto ``reference``'s grid by nearest neighbour: exact, voxel
    for voxel, when the two grids hold the same voxel centres in another order (as
    :func:`to_lps` makes them); ``img`` itself when the grids are the same."""
    return on_grid(img, reference)
