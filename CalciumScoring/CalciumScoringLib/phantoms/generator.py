"""Synthetic abdominal CTA phantoms with exact ground truth.

>>> from CalciumScoringLib.phantoms.generator import make_phantom
>>> ph = make_phantom(1, spacing=(1.0, 1.0, 1.0), fov="vessels")
>>> ph.ct.GetSize() == ph.groups.GetSize()
True

``make_phantom`` draws every parameter not given from ``numpy.random.default_rng(seed)``,
so a seed always gives the same volume.  The labels are the ground truth by
construction: a voxel is artery when its centre lies inside a tube, calcium when it
also lies inside a plaque sphere; intensities are rendered afterwards, with
partial-volume blur and noise, so the CT is realistic while the labels stay exact.

Label conventions (../shared/METHOD.md §1): ``arteries`` is model A (1 artery,
2 calcification); ``groups`` is model B (1 aorta, 2 iliac, 3 mesenteric, 4 renal).
The artery masks include the vessel wall, so every calcification lies inside them;
``Phantom.groups_as_shown`` gives the groups as a CTA shows them (side branches without
their wall), the truth the bundled networks are measured against.
"""

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .anatomy import GROUP_NAMES, branch_clearance, build_anatomy
from .plaques import place_plaques
from .render import Grid, render_tissues, smooth_noise, tube_margin


#: groups whose wall counts as artery in :meth:`Phantom.groups_as_shown` (aorta, iliac)
WALL_SHOWN = (1, 2)


@dataclass
class Phantom:
    """A phantom CTA: ``ct`` (int16 HU), label maps ``arteries``, ``groups``, ``lumen``,
    ``meta`` and ``plaque_ids`` (each voxel's plaque ``id`` of ``meta["plaques"]``, 0 = none)."""

    ct: sitk.Image
    arteries: sitk.Image
    groups: sitk.Image
    lumen: sitk.Image
    meta: dict
    plaque_ids: sitk.Image = None

    def groups_as_shown(self):
        """The groups as a CTA shows them, the convention the bundled networks follow.

        The aorta and iliac arteries keep their wall (the phantom's aortic wall lies against
        fat all round and shows; the iliacs' on about a third of their surface; for real
        large arteries the wall is a small share of the volume); the mesenteric and renal arteries
        are their lumen and calcified wall only.  A real side branch's wall is under 1 mm
        and as dense as the tissue it runs in (the phantom's: against fat on 9-18 % of its
        surface), so no CT shows it; the phantom draws 1.5-2 mm at 30-60 HU, which only a
        fixed margin round the lumen could guess.
        """
        groups = sitk.GetArrayFromImage(self.groups)
        seen = (sitk.GetArrayViewFromImage(self.lumen) > 0) | (
            sitk.GetArrayViewFromImage(self.arteries) == 2)
        out = np.where(np.isin(groups, WALL_SHOWN) | seen, groups, 0).astype(groups.dtype)
        img = sitk.GetImageFromArray(out)
        img.CopyInformation(self.groups)
        return img


def _draw_options(rng, options):
    o = dict(options)
    o.setdefault("lumen_hu", rng.uniform(150.0, 600.0))
    o.setdefault("wall_hu", rng.uniform(30.0, 60.0))
    o.setdefault("tissue_hu", rng.uniform(25.0, 60.0))
    o.setdefault("fat_hu", rng.uniform(-120.0, -80.0))
    o.setdefault("vein_hu", rng.uniform(60.0, 160.0))
    o.setdefault("liver_hu", rng.uniform(70.0, 130.0))
    o.setdefault("kidney_hu", rng.uniform(120.0, 250.0))
    o.setdefault("cortical_hu", rng.uniform(700.0, 1200.0))
    o.setdefault("cancellous_hu", rng.uniform(150.0, 300.0))
    o.setdefault("vertebra_radius", rng.uniform(17.0, 22.0))
    o.setdefault("spine_gap", rng.uniform(2.0, 8.0))
    o.setdefault("body_center", (rng.uniform(-15, 0), rng.uniform(10, 30)))
    o.setdefault("body_semi_axes", (rng.uniform(140, 175), rng.uniform(105, 130)))
    o.setdefault("fat_mm", rng.uniform(8.0, 25.0))
    o.setdefault("gas_bubbles", int(rng.integers(0, 6)))
    o.setdefault("oral_contrast", 0)
    o.setdefault("metal", False)
    o.setdefault("noise_hu", rng.uniform(8.0, 25.0))
    o.setdefault("pv_sigma_mm", rng.uniform(0.4, 0.8))
    o.setdefault("bias_hu", 0.0)
    o.setdefault("fov", "abdomen")
    o.setdefault("margin_mm", 20.0)
    return o


def _fov_box(branches, o):
    pts = np.vstack([b.points for b in branches.values()])
    r = max(float(b.radius.max()) for b in branches.values()) + o["wall_mm"]
    lo, hi = pts.min(0) - r - o["margin_mm"], pts.max(0) + r + o["margin_mm"]
    fov = o["fov"]
    if fov == "abdomen":
        (bx, by), (ax, ay) = o["body_center"], o["body_semi_axes"]
        lo[:2] = np.minimum(lo[:2], (bx - ax - 10, by - ay - 10))
        hi[:2] = np.maximum(hi[:2], (bx + ax + 10, by + ay + 10))
    elif fov != "vessels":
        lo, hi = np.asarray(fov[0], float), np.asarray(fov[1], float)
    return lo, hi


def _to_image(array, grid, pixel_type=None):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing([float(s) for s in grid.spacing])
    img.SetOrigin([float(v) for v in grid.origin])
    img.SetDirection([float(v) for v in grid.direction.ravel()])
    return img if pixel_type is None else sitk.Cast(img, pixel_type)


def _rasterise(grid, branches, wall):
    """Exact label arrays: groups (model B), lumen, per-branch outer margins."""
    groups = np.zeros(grid.shape, np.uint8)
    lumen = np.zeros(grid.shape, bool)
    margins = {}
    order = [n for n in branches if n != "aorta"] + ["aorta"]  # the aorta owns the ostia
    for name in order:
        b = branches[name]
        box, m = tube_margin(grid, b.points, b.radius, wall + 1.0)
        if box is None:
            continue
        margins[name] = (box, m)
        outer = m <= wall
        groups[box][outer] = b.group
        lumen[box] |= m <= 0
    return groups, lumen, margins


def _draw_anatomy(rng, options):
    """Branches whose walls keep clear of each other (redrawn up to 25 times)."""
    for _ in range(25):
        branches, o = build_anatomy(rng, **options)
        if branch_clearance(branches, o["wall_mm"]) > 1.0:
            return branches, o
    raise ValueError("could not draw a phantom anatomy whose branches do not collide; "
                     "change the seed or the fixed anatomical options")


def make_phantom(seed, spacing=(0.8, 0.8, 1.0), direction=None, **options):
    """Generate a synthetic abdominal CTA with exact labels.

    Parameters
    ----------
    seed : int
        Seed of every random choice; the same seed and options give the same phantom.
    spacing : 3-tuple of float
        Voxel spacing (mm) along the image axes i, j, k.
    direction : 3x3 array-like or 9 floats, optional
        Direction matrix (columns are the image axes in LPS); identity by default.
    **options
        Any anatomical or intensity parameter to fix instead of drawing it, e.g.
        ``aorta_diameter_mm``, ``tortuosity`` (0 gives straight vessels),
        ``accessory_renal``, ``branch_lengths={"renal_left": 15}``, ``lumen_hu``,
        ``noise_hu``, ``pv_sigma_mm``, ``n_plaques``, ``plaques`` (explicit list),
        ``fov`` (``"abdomen"``, ``"vessels"`` or ``(lo, hi)`` in LPS mm),
        ``metal``, ``oral_contrast``, ``bias_hu``.

    Returns
    -------
    Phantom
        ``ct`` (int16 HU), ``arteries`` (model A), ``groups`` (model B), ``lumen``
        (binary) and ``plaque_ids`` as ``SimpleITK.Image`` on one grid, and ``meta``
        with branch centre lines and take-off points (LPS mm), plaques and their
        volumes (mm³).
    """
    rng = np.random.default_rng(seed)
    branches, o = _draw_anatomy(rng, options)
    o = _draw_options(rng, o)
    grid = Grid.covering(*_fov_box(branches, o), spacing, direction)
    wall = o["wall_mm"]
    groups, lumen, margins = _rasterise(grid, branches, wall)
    calcium, plaques = place_plaques(grid, branches, margins, groups, lumen, rng, o)

    hu = render_tissues(grid, branches, o, rng)
    vessel = groups > 0
    hu[vessel] = o["wall_hu"]
    hu[lumen] = o["lumen_hu"]
    if plaques:
        table = np.array([0.0] + [p["hu"] for p in plaques], np.float32)
        hu = np.where(calcium > 0, table[calcium], hu)
    sig, noise, bias = smooth_noise(grid, rng, o["noise_hu"], o["pv_sigma_mm"], o["bias_hu"])
    from scipy import ndimage

    ct = ndimage.gaussian_filter(hu, sig, mode="nearest")
    ct += noise
    if bias is not None:
        ct += bias * (ct > -500)
    ct = np.clip(np.rint(ct), -1024, 3071).astype(np.int16)

    art = vessel.astype(np.uint8)
    art[calcium > 0] = 2
    meta = _meta(seed, grid, branches, o, plaques)
    ids = calcium.astype(np.uint8) if len(plaques) < 256 else calcium
    return Phantom(_to_image(ct, grid), _to_image(art, grid), _to_image(groups, grid),
                   _to_image(lumen.astype(np.uint8), grid), meta, _to_image(ids, grid))


def make_group_labels(seed, size, spacing=(1.0, 1.0, 1.0), **options):
    """Only the model-B label map of a phantom, on a grid of ``size`` voxels centred on it.

    For benchmarks on large grids (e.g. 400x400x500 at 1 mm) where rendering the CT
    is not needed.  Anatomy options as in :func:`make_phantom`.
    """
    rng = np.random.default_rng(seed)
    branches, o = _draw_anatomy(rng, options)
    pts = np.vstack([b.points for b in branches.values()])
    centre = (pts.min(0) + pts.max(0)) / 2
    half = np.asarray(size, float) * np.asarray(spacing, float) / 2
    grid = Grid.covering(centre - half, centre + half - np.asarray(spacing), spacing)
    groups, _, _ = _rasterise(grid, branches, o["wall_mm"])
    return _to_image(groups, grid)


def _meta(seed, grid, branches, o, plaques):
    vv = grid.voxel_volume
    br = {}
    for name, b in branches.items():
        arc = b.arc_length()
        ost = float(b.info.get("ostium_mm", 0.0))
        k = int(np.searchsorted(arc, ost))
        br[name] = {
            "group": int(b.group), "group_name": GROUP_NAMES[b.group], "side": b.side,
            "parent": b.parent, "centerline_lps": b.points.tolist(),
            "radius_mm": b.radius.tolist(), "length_mm": b.length_mm,
            "length_from_ostium_mm": b.length_mm - ost,
            "origin_lps": b.points[0].tolist(),
            "takeoff_lps": b.points[min(k, len(b.points) - 1)].tolist(),
            "direction": b.info.get("direction"),
        }
    per_group = {g: 0.0 for g in GROUP_NAMES.values()}
    for p in plaques:
        per_group[p["group_name"]] += p["volume_mm3"]
    opts = {k: (v if not isinstance(v, np.generic) else v.item()) for k, v in o.items()
            if k not in ("plaques",)}
    return {
        "seed": seed, "spacing": grid.spacing.tolist(), "direction": grid.direction.tolist(),
        "origin": grid.origin.tolist(), "size": list(grid.size), "voxel_volume_mm3": vv,
        "branches": br, "plaques": plaques, "calcium_volume_mm3": per_group,
        "aorta_lumen_radius_mm": float(branches["aorta"].radius[0]),
        "wall_mm": float(o["wall_mm"]), "lumen_hu": float(o["lumen_hu"]), "options": opts,
    }
