"""Artery masks grown to the lumen edge the CT shows (card ``grow_by_hu``): localise with
the network, delineate with the HU.

The artery-groups network works on a 2 mm grid and, on real scans, is often right about
*where* the arteries are but unsure at their edges: its mask lies inside the vessel and
thins out where the scan differs from what it learned (measured on a real portal-venous
series: every predicted aorta voxel inside the reference, half of the reference missed).
The CT itself shows the lumen edge at its own resolution.  The lumen level ``L`` is read
in the core of the network's aorta, the surroundings ``T`` in a shell 3-6 mm outside it;
each group then takes in the unlabelled voxels within ``reach_mm`` of its own mask that
are brighter than half way between them (smoothed by 0.5 mm) and not brighter than the
lumen allows (bone, metal, calcium outside the mask stay out), connected to the group.
The rule only adds voxels: the network's mask (wall, thrombus, calcium) is kept.  Where the
lumen is not at least ``min_contrast_hu`` above the surroundings (an unenhanced scan) the
edge cannot be seen and nothing is changed.  So too where the network's mask is thinner than
the lumen by more than 3 mm all along (the shell then lies in the lumen): the rule completes
slices where the network found part of the aorta, not an aorta it found nowhere whole.

The same threshold says which side-branch pieces are arteries at all (``need_lumen``): in
a contrast scan an artery holds lumen, so a piece of a side group whose brightest tenth
(smoothed) stays below it is soft tissue the network took for a vessel (measured: the
oesophagus at the hiatus of a real portal-venous CT, called mesenteric) and is removed.  A
piece that holds lumen is kept whole, wall and all.
"""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..imagecheck import crop_box
from .refine import lumen_level

_FULL = np.ones((3, 3, 3), bool)


def lumen_and_surroundings(hu, aorta, spacing_zyx, erode=2):
    """(lumen median, lumen SD, surroundings median) around an aorta mask, or ``None``.
    The lumen is read in the mask's core (:func:`.refine.lumen_level`), or in the whole
    mask where the core has fewer than 10 voxels."""
    level = lumen_level(hu, aorta, True, erode, 10) or lumen_level(hu, aorta, True, 0, 10)
    if level is None:
        return None
    dist = ndimage.distance_transform_edt(~aorta, sampling=spacing_zyx)
    shell = (dist >= 3) & (dist <= 6)
    s = hu[shell & (hu > -200) & (hu < 1000)]
    if s.size < 10:
        return None
    return level[0], level[1], float(np.median(s))


def _grow_round(out, hu, ref, sp, thr, top, scale):
    """Per axial slice: unlabelled lumen-bright voxels inside a disc around the reference's
    centre in that slice (radius ``scale`` times the reference's typical radius + 1 mm),
    connected in the slice to the reference."""
    zs = np.flatnonzero(ref.any(axis=(1, 2)))
    radii = np.sqrt(ref[zs].sum(axis=(1, 2)) * sp[1] * sp[2] / np.pi)
    r = scale * float(np.percentile(radii, 75)) + 1.0
    grown = np.zeros(ref.shape, bool)
    for z in zs:
        cy, cx = np.argwhere(ref[z]).mean(0)
        # the slice's work: the disc's bounding box, plus a margin for the smoothing
        y0, y1 = (int(np.clip(cy + d * (r / sp[1] + 3), 0, ref.shape[1])) for d in (-1, 1))
        x0, x1 = (int(np.clip(cx + d * (r / sp[2] + 3), 0, ref.shape[2])) for d in (-1, 1))
        yy, xx = np.ogrid[y0:y1, x0:x1]
        disc = ((yy - cy) * sp[1]) ** 2 + ((xx - cx) * sp[2]) ** 2 <= r * r
        h = ndimage.gaussian_filter(hu[z, y0:y1, x0:x1].astype(np.float32), 0.5 / sp[1:])
        cand = disc & (out[z, y0:y1, x0:x1] == 0) & (h >= thr) & (h <= top)
        rz = ref[z, y0:y1, x0:x1]
        comp, _ = ndimage.label(cand | rz)
        keep = np.unique(comp[rz])
        grown[z, y0:y1, x0:x1] = np.isin(comp, keep[keep > 0]) & cand
    return grown


def _drop_unlit(out, hu, sp, g, thr):
    """Remove the 26-connected pieces of label ``g`` whose brightest tenth (HU smoothed by
    0.5 mm) stays below ``thr`` (in place); returns the voxels removed."""
    m = out == g
    box = crop_box(m, pad=2)
    if box is None:
        return 0
    sub = out[box]
    pieces, n = ndimage.label(m[box], _FULL)
    h = ndimage.gaussian_filter(hu[box].astype(np.float32), 0.5 / sp)
    removed = 0
    for i, sl in enumerate(ndimage.find_objects(pieces), start=1):
        piece = pieces[sl] == i
        if np.percentile(h[sl][piece], 90) < thr:
            sub[sl][piece] = 0
            removed += int(piece.sum())
    return removed


def _levels(labels, hu, sp, reference, min_contrast_hu, bright_sd, bright_hu):
    """(threshold, top, info) from the ``reference`` label's lumen and surroundings, or
    (None, None, info with ``skipped``) where the edge cannot be seen."""
    ref = labels == reference
    box = crop_box(ref, pad=int(np.ceil(10 / sp.min())))
    if box is None:
        return None, None, {"skipped": "no reference label"}
    levels = lumen_and_surroundings(hu[box].astype(np.float32), ref[box], sp)
    if levels is None:
        return None, None, {"skipped": "reference label too small"}
    lumen, sd, tissue = levels
    info = {"lumen_hu": round(lumen, 1), "surroundings_hu": round(tissue, 1)}
    if lumen - tissue < min_contrast_hu:
        return None, None, dict(info, skipped=f"lumen only {lumen - tissue:.0f} HU above the surroundings")
    thr = (lumen + tissue) / 2
    info["threshold_hu"] = round(thr, 1)
    return thr, lumen + max(bright_sd * sd, bright_hu), info


def grow_by_hu(labels, hu, spacing, reference=1, groups=None, reach_mm=3.0,
               min_contrast_hu=60.0, bright_sd=4.0, bright_hu=150.0, disc_scale=None,
               need_lumen=None):
    """Label array with each group grown to the lumen edge the HU show (a new array).

    Parameters
    ----------
    labels : ndarray of int (z, y, x)
        The network's labels on the CT grid.
    hu : ndarray (z, y, x)
        The CT in HU.
    spacing : sequence of 3 floats
        Voxel spacing (x, y, z) in mm, SimpleITK order.
    reference : int
        The label whose core gives the lumen level (the aorta).
    groups : sequence of int, optional
        Labels to grow by ``reach_mm`` (default: every label present).  With
        ``disc_scale`` the reference grows by the disc rule and only the other labels
        listed here grow by ``reach_mm`` (none by default).
    reach_mm : float
        How far beyond its mask a group may grow.
    min_contrast_hu : float
        Lumen minus surroundings below this: nothing is changed.
    bright_sd, bright_hu : float
        Voxels brighter than ``L + max(bright_sd * SD, bright_hu)`` are not lumen.
    disc_scale : float, optional
        Grow the reference (the aorta) slice by slice instead, inside a disc around its
        centre in that slice of ``disc_scale`` times its typical radius (75th percentile
        over slices) + 1 mm: a round vessel, so a slice where the network found only a
        piece of it is completed and a touching vein is not followed beyond the disc.
    need_lumen : sequence of int, optional
        Labels (side branches) whose pieces must hold lumen: a piece whose brightest 10 %
        stays below the threshold is removed (the only voxels this rule removes).

    Returns
    -------
    out : ndarray
        Same dtype as ``labels``.
    info : dict
        ``lumen_hu``, ``surroundings_hu``, ``threshold_hu``, ``added_voxels``,
        ``removed_voxels`` (or ``skipped``: why nothing was changed).
    """
    out = labels.copy()
    sp = np.asarray(spacing, float)[::-1]
    ref = labels == reference
    thr, top, info = _levels(labels, hu, sp, reference, min_contrast_hu, bright_sd, bright_hu)
    if thr is None:
        return out, info
    removed = sum(_drop_unlit(out, hu, sp, g, thr) for g in need_lumen or [])
    added = 0
    if disc_scale:
        grown = _grow_round(out, hu, ref, sp, thr, top, disc_scale)
        out[grown] = reference
        added += int(grown.sum())
        groups = [g for g in (groups or []) if g != reference]
    elif not groups:
        groups = [int(v) for v in np.unique(labels) if v]
    for g in groups:
        m = out == g  # without the pieces need_lumen removed
        gbox = crop_box(m, pad=int(np.ceil(reach_mm / sp.min())) + 1)
        if gbox is None:
            continue
        sub_hu = ndimage.gaussian_filter(hu[gbox].astype(np.float32), 0.5 / sp)
        sub_m = m[gbox]
        near = ndimage.distance_transform_edt(~sub_m, sampling=sp) <= reach_mm
        cand = near & (out[gbox] == 0) & (sub_hu >= thr) & (sub_hu <= top)
        comp, _ = ndimage.label(cand | sub_m, _FULL)
        keep = np.unique(comp[sub_m])
        grown = np.isin(comp, keep[keep > 0]) & cand
        out[gbox][grown] = g
        added += int(grown.sum())
    info["added_voxels"], info["removed_voxels"] = added, removed
    return out, info


def trim_to_lumen(labels, hu, spacing, groups, reference=1, box=None, min_contrast_hu=60.0,
                  calcium_mm=2.0, bright_sd=4.0, bright_hu=150.0):
    """Label array with the voxels of ``groups`` that the CT does not show as lumen removed
    (a new array): those whose HU (smoothed by 0.5 mm) lie below the threshold half way
    between the lumen and the surroundings of the ``reference`` (as :func:`grow_by_hu`).

    For side branches re-decided on a network grid coarser than the CT's: a 3-6 mm artery
    is a few grid voxels wide and its label, resampled, overlaps the fat and the veins
    beside it.  Voxels brighter than the lumen (calcium) stay, and calcium in the wall
    within ``calcium_mm`` of the cut lumen is given to it, so that a threshold inside the
    masks still finds it.  Nothing changes where the lumen is not at least
    ``min_contrast_hu`` above the surroundings (unenhanced scan).

    Parameters
    ----------
    labels : ndarray of int (z, y, x)
    hu : ndarray (z, y, x)
    spacing : sequence of 3 floats
        Voxel spacing (x, y, z) in mm, SimpleITK order.
    groups : sequence of int
        Labels to trim.
    reference : int
        The label whose core and shell give the lumen and surroundings levels.
    box : tuple of slice, optional
        Trim only inside this box.
    calcium_mm : float
        Unlabelled voxels brighter than ``L + max(bright_sd * SD, bright_hu)`` (calcium,
        as in :func:`grow_by_hu`) this close to a trimmed group join its nearest voxel's group.

    Returns
    -------
    out : ndarray
    info : dict
        ``threshold_hu``, ``removed_voxels`` and ``calcium_voxels``, or ``skipped``: why
        nothing changed.
    """
    out = np.array(labels, copy=True)
    sp = np.asarray(spacing, float)[::-1]
    thr, top, levels = _levels(out, hu, sp, reference, min_contrast_hu, bright_sd, bright_hu)
    if thr is None:
        return out, {"skipped": levels["skipped"]}
    region = box if box is not None else tuple(slice(0, n) for n in out.shape)
    view, hu_view = out[region], hu[region]  # views: the work stays inside the box
    side = np.isin(view, groups)
    gbox = crop_box(side, pad=int(np.ceil(calcium_mm / sp.min())) + 2)
    removed = added = 0
    if gbox is not None:
        sub, sub_hu = view[gbox], np.asarray(hu_view[gbox], np.float32)
        dark = side[gbox] & (ndimage.gaussian_filter(sub_hu, 0.5 / sp) < thr)
        sub[dark] = 0
        removed = int(dark.sum())
        kept = side[gbox] & ~dark
        if kept.any() and calcium_mm > 0:
            dist, idx = ndimage.distance_transform_edt(~kept, sampling=sp, return_indices=True)
            calc = (sub == 0) & (sub_hu >= top) & (dist <= calcium_mm)
            sub[calc] = sub[tuple(i[calc] for i in idx)]
            added = int(calc.sum())
    return out, {"threshold_hu": round(thr, 1), "removed_voxels": removed, "calcium_voxels": added}


def grow_on_grid(labels_img, ct, **rule):
    """:func:`grow_by_hu` on SimpleITK images (labels on the CT's grid)."""
    lab = sitk.GetArrayFromImage(labels_img)
    grown, info = grow_by_hu(lab, sitk.GetArrayViewFromImage(ct), ct.GetSpacing(), **rule)
    img = sitk.GetImageFromArray(grown)
    img.CopyInformation(labels_img)
    return img, info
