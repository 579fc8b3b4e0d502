"""Side branches re-decided on a finer grid near the aorta: localise, then delineate.

The artery-groups network works on a 2 mm grid over the whole CT; there a 3-5 mm renal
artery is one or two voxels wide, beside a renal vein as bright as itself in the
portal-venous phase.  A model card may name a second network (``"branches"``:
``{"model": NAME, "band_mm": MM, "trim_to_lumen": BOOL}``) that is run on its own finer grid only in the box
around the aorta the first one found (``band_mm`` wider on every side).  Inside that box
its mesenteric and renal labels replace the first network's; with ``"keep_first": [3]``
the first network's mesenteric labels stay where the branch network finds no side branch
(the two networks miss different parts: on IRCAD07 the first found 80 % of the SMA's
stump and the branch network 47 %, the branch network 96 % of a renal stump the first
missed).  The aorta and the iliac arteries stay the first network's everywhere.  A side-branch piece is kept only where it
is connected (26-neighbourhood) to the aorta or the iliac arteries, as a branch must be.
With ``"trim_to_lumen": true`` the side branches in the box are then cut to the lumen the
CT shows at its own resolution (:func:`.lumen.trim_to_lumen`: the network's grid is
coarser than the CT's, so a thin artery's label spills into the fat and veins beside
it), and the pieces the cut leaves unattached are removed.  With ``"wall_mm": MM`` a
side-group piece that never gets farther than ``MM`` from the aorta is given to the
aorta (:func:`wall_pieces_to_aorta`): a branch leaves the aorta, a piece that hugs it is
calcified aortic wall or a stent strut's blur, whose calcium belongs to the aorta's score.

>>> from CalciumScoringLib.segmentation.branches import merge_branches  # doctest: +SKIP
"""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..imagecheck import crop_box
from .lumen import trim_to_lumen

AORTA = 1
TRUNK = (1, 2)  # aorta and iliac arteries: always the first network's
SIDE = (3, 4)  # mesenteric and renal: the branch network's inside its box


def branch_box(groups, band_mm):
    """Index slices (z, y, x) of the box around the aorta of ``groups`` (SimpleITK label
    map), ``band_mm`` wider on every side; ``None`` when there is no aorta."""
    pad = [int(np.ceil(band_mm / s)) for s in groups.GetSpacing()[::-1]]
    return crop_box(sitk.GetArrayViewFromImage(groups) == AORTA, pad=pad)


def merge_branches(groups, branches, box, side=SIDE, trunk=TRUNK, keep_first=()):
    """Label array: ``groups`` with its side groups inside ``box`` replaced by those of
    ``branches`` (both arrays on one grid), side pieces not connected to the trunk
    (aorta, iliac arteries) removed.  The side labels of ``groups`` listed in
    ``keep_first`` stay where ``branches`` has no side label (the union; ``branches`` wins
    where both label a side group).

    Parameters
    ----------
    groups, branches : ndarray of int
        Label maps of the first network and of the branch network.
    box : tuple of slice
        Where the branch network ran (:func:`branch_box`).
    side, trunk : tuple of int
        Labels taken from ``branches`` inside the box, and labels never changed.
    keep_first : sequence of int
        Side labels of ``groups`` kept where ``branches`` finds no side label.

    Returns
    -------
    ndarray of uint8
        The merged labels; outside ``box`` they are ``groups``.
    """
    out = np.asarray(groups).astype(np.uint8, copy=True)
    g, b = out[box], np.asarray(branches)[box]
    is_trunk = np.isin(g, trunk)
    take = np.isin(b, side) & ~is_trunk
    g[np.isin(g, side) & ~np.isin(g, keep_first)] = 0
    g[take] = b[take]
    drop_unattached(g, side, trunk)
    return out


def drop_unattached(labels, side=SIDE, trunk=TRUNK):
    """Remove (in place) the side-group voxels not 26-connected to a trunk label."""
    sides = np.isin(labels, side)
    if sides.any():
        is_trunk = np.isin(labels, trunk)
        lab, _ = ndimage.label(sides | is_trunk, np.ones((3, 3, 3), bool))
        anchored = np.unique(lab[is_trunk])
        labels[sides & ~np.isin(lab, anchored[anchored > 0])] = 0
    return labels


def wall_pieces_to_aorta(labels, spacing, wall_mm, side=SIDE, aorta=AORTA):
    """Give to the aorta (in place) every side-group piece lying wholly within ``wall_mm``
    of it; returns ``labels`` and the number of voxels moved.

    Parameters
    ----------
    labels : ndarray of int
        Label map (z, y, x), changed in place.
    spacing : sequence of float
        Voxel size (z, y, x) in mm.
    wall_mm : float
        A piece (26-connected, per group) none of whose voxels is farther than this from
        the aorta is wall, not branch.
    side, aorta : tuple of int, int
        The side-group labels looked at, and the aorta's.

    Examples
    --------
    >>> lab = np.zeros((1, 3, 12), np.uint8); lab[0, 1, :4] = 1
    >>> lab[0, 0, 3:5] = 3; lab[0, 2, 4:12] = 4  # a 2-voxel piece on the wall, a branch
    >>> wall_pieces_to_aorta(lab, (1.0, 1.0, 1.0), 3.0)[1]
    2
    """
    is_aorta = labels == aorta
    sides = np.isin(labels, side)
    if not is_aorta.any() or not sides.any():
        return labels, 0
    box = crop_box(sides, pad=[int(np.ceil(wall_mm / s)) + 1 for s in spacing])
    # exact for distances up to wall_mm: any aorta voxel that near a piece is in the box
    far = ndimage.distance_transform_edt(~is_aorta[box], sampling=spacing) > wall_mm
    sub, moved = labels[box], 0
    for g in side:
        cc, n = ndimage.label(sub == g, np.ones((3, 3, 3), bool))
        if n:
            leaves = np.zeros(n + 1, bool)
            leaves[1:] = ndimage.maximum(far, cc, np.arange(1, n + 1)).astype(bool)
            wall = (cc > 0) & ~leaves[cc]
            sub[wall] = aorta
            moved += int(wall.sum())
    return labels, moved


def segment_branches(ct, groups, spec, segment, **kwargs):
    """``groups`` (SimpleITK label map on ``ct``'s grid) with its side branches re-decided
    by the branch network ``spec`` (``{"model": ..., "band_mm": ..., "trim_to_lumen": ...,
    "wall_mm": ..., "keep_first": ...}``);
    ``segment`` is the engine's function, ``kwargs`` go to it (device, threads, cancel)."""
    band = float(spec.get("band_mm", 35.0))
    box = branch_box(groups, band)
    if box is None:
        return groups
    z, y, x = box  # the network sees only the box: resampling and windows cost nothing outside
    sub = segment(ct[x.start:x.stop, y.start:y.stop, z.start:z.stop], spec["model"], **kwargs)
    found = np.zeros(groups.GetSize()[::-1], np.uint8)
    found[box] = sitk.GetArrayViewFromImage(sub)
    merged = merge_branches(sitk.GetArrayViewFromImage(groups), found, box,
                            keep_first=tuple(spec.get("keep_first", ())))
    if spec.get("trim_to_lumen"):
        merged, _ = trim_to_lumen(merged, sitk.GetArrayViewFromImage(ct), ct.GetSpacing(), SIDE,
                                  reference=AORTA, box=box)
        drop_unattached(merged[box])
    if spec.get("wall_mm"):
        wall_pieces_to_aorta(merged, ct.GetSpacing()[::-1], float(spec["wall_mm"]))
    out = sitk.GetImageFromArray(merged)
    out.CopyInformation(groups)
    return out
