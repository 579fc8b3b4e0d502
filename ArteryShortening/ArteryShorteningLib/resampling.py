"""Label-map resampling between an input grid and the isotropic working grid.

Step 1 of the shortening resamples the artery-group label map to isotropic
spacing (nearest neighbour, same origin and direction, so "superior" keeps its
meaning); step 5 maps the result back.  Mapping back does not resample the
result's labels (that would erode or grow the arteries at their border on
anisotropic input): every input voxel keeps its own label and only takes the
*decision* (kept or trimmed) of the nearest isotropic voxel that carries the same
label.  The output is therefore always a subset of the input with the same values.
"""

import numpy as np
import SimpleITK as sitk
from scipy.spatial import cKDTree


def is_isotropic(image, spacing_mm, tol=1e-6):
    return all(abs(s - spacing_mm) < tol for s in image.GetSpacing())


def to_isotropic(labels, spacing_mm=1.0):
    """Nearest-neighbour resampling of ``labels`` to ``spacing_mm`` (origin and direction kept)."""
    if is_isotropic(labels, spacing_mm):
        return labels
    size = [max(int(np.ceil(n * s / spacing_mm)), 1)
            for n, s in zip(labels.GetSize(), labels.GetSpacing())]
    f = sitk.ResampleImageFilter()
    f.SetOutputSpacing([spacing_mm] * 3)
    f.SetSize(size)
    f.SetOutputOrigin(labels.GetOrigin())
    f.SetOutputDirection(labels.GetDirection())
    f.SetInterpolator(sitk.sitkNearestNeighbor)
    f.SetDefaultPixelValue(0)
    return f.Execute(labels)


def physical_z(image, shape=None):
    """Superior (LPS z) coordinate of every voxel centre, as a broadcastable (k, j, i) array."""
    D = np.array(image.GetDirection()).reshape(3, 3)
    s, o = np.array(image.GetSpacing()), np.array(image.GetOrigin())
    nk, nj, ni = shape or sitk.GetArrayViewFromImage(image).shape
    i = np.arange(ni)[None, None, :] * (D[2, 0] * s[0])
    j = np.arange(nj)[None, :, None] * (D[2, 1] * s[1])
    k = np.arange(nk)[:, None, None] * (D[2, 2] * s[2])
    return o[2] + i + j + k


def voxel_points(image, index_kji):
    """LPS coordinates (N, 3) of voxel indices given as (k, j, i) arrays."""
    k, j, i = index_kji
    D = np.array(image.GetDirection()).reshape(3, 3)
    idx = np.column_stack([i, j, k]).astype(float) * np.array(image.GetSpacing())
    return np.array(image.GetOrigin()) + idx @ D.T


def map_side_decisions(original, iso, iso_labels, iso_keep, side_labels):
    """Boolean (k, j, i) array on ``original``'s grid: side-artery voxels that are kept.

    ``iso_labels``/``iso_keep`` are the isotropic label array and the kept-voxel
    mask of the side arteries.  Each input voxel of label L takes the decision of
    the nearest isotropic voxel whose label is also L.
    """
    orig = sitk.GetArrayViewFromImage(original)
    keep = np.zeros(orig.shape, bool)
    if original is iso:
        for L in side_labels:
            keep |= (orig == L) & iso_keep
        return keep
    D = np.array(iso.GetDirection()).reshape(3, 3)
    s_iso, o_iso = np.array(iso.GetSpacing()), np.array(iso.GetOrigin())
    shape_iso = np.array(iso_labels.shape)
    for L in side_labels:
        where = np.nonzero(orig == L)
        if len(where[0]) == 0:
            continue
        pts = voxel_points(original, where)
        cont = ((pts - o_iso) @ D) / s_iso  # continuous (i, j, k) on the isotropic grid
        ijk = np.rint(cont).astype(int)
        inside = np.all((ijk >= 0) & (ijk < shape_iso[::-1]), axis=1)
        ijk_c = np.clip(ijk, 0, shape_iso[::-1] - 1)
        lab = iso_labels[ijk_c[:, 2], ijk_c[:, 1], ijk_c[:, 0]]
        dec = iso_keep[ijk_c[:, 2], ijk_c[:, 1], ijk_c[:, 0]]
        ok = inside & (lab == L)
        if not ok.all():
            cand = np.nonzero(iso_labels == L)
            if len(cand[0]):
                tree = cKDTree(np.column_stack(cand[::-1]))
                _, nn = tree.query(cont[~ok])
                dec = dec.copy()
                dec[~ok] = iso_keep[cand[0][nn], cand[1][nn], cand[2][nn]]
            else:
                dec = dec & ok
        keep[where] = dec
    return keep
