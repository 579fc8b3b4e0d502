"""Step 3 of the shortening for one side-artery component, cropped to its bounding box.

Everything is computed inside the component's bounding box padded by
``aorta_dilations + 2`` voxels, which gives exactly the full-volume result: the
dilated aorta is exact there, the stump pieces and their distances lie inside the
box, and growth is confined to the component.
"""

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

from . import resampling

_SIX = ndimage.generate_binary_structure(3, 1)
_ALL = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class Params:
    stump_length_mm: float = 25.0
    aorta_margin_mm: float = 10.0
    aorta_dilations: int = 2
    stump_merge_distance_mm: float = 25.0
    spacing_mm: float = 1.0
    growth: str = "geodesic"
    cut_aorta: bool = True

    def as_dict(self):
        return asdict(self)


def padded_box(sl, pad, shape):
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(sl, shape))


def merged_stump(C, A, params):
    """Steps 3a-b: the stump pieces kept (bool) and ``(kept pieces, dropped pieces)``."""
    Ad = ndimage.binary_dilation(A, _SIX, iterations=params.aorta_dilations)
    stump = C & Ad
    if not stump.any():
        return stump, 0, 0
    sc, n = ndimage.label(stump, _SIX)
    if n == 1:
        return stump, 1, 0
    sizes = np.bincount(sc.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    dist = ndimage.distance_transform_edt(sc != largest, sampling=params.spacing_mm)
    mind = ndimage.minimum(dist, sc, index=np.arange(1, n + 1))
    keep_ids = [i + 1 for i, d in enumerate(mind) if d <= params.stump_merge_distance_mm]
    return np.isin(sc, keep_ids), len(keep_ids), n - len(keep_ids)


def geodesic_from_aorta(C, A, S, spacing):
    """Shortest 26-connected path length (mm) inside ``C`` from the aorta voxels touching ``S``.

    A stump that is within the aortic dilation but not in contact with the aorta (a one-voxel
    gap, e.g. after manual edits or from a network) is measured from the stump itself.
    """
    seeds = A & ndimage.binary_dilation(S, _ALL)
    if not seeds.any():
        seeds = S
    costs = np.where(C | seeds, 1.0, np.inf)
    mcp = MCP_Geometric(costs, fully_connected=True, sampling=(spacing,) * 3)
    starts = list(zip(*np.nonzero(seeds)))
    dist, _ = mcp.find_costs(starts)
    dist = np.where(C, dist, np.inf)
    dist[~np.isfinite(dist)] = np.inf
    return dist


def grow_by_dilation(S, C, n):
    """Step 3c as published: ``n`` one-voxel 6-connected dilations kept inside ``C``."""
    G = S.copy()
    for _ in range(n):
        nxt = ndimage.binary_dilation(G, _SIX) & C
        if np.array_equal(nxt, G):
            break
        G = nxt
    return G


def component_stump(comp, cid, sl, aorta, params):
    """Steps 3a-d for component ``cid``: returns ``((box, kept mask), info)``."""
    box = padded_box(sl, params.aorta_dilations + 2, comp.shape)
    C = comp[box] == cid
    A = aorta[box]
    return grow_stump(C, A, box, params)


def grow_stump(C, A, box, params):
    """Stump of the component mask ``C`` next to aorta mask ``A`` (both in ``box``)."""
    info = {"input_voxels": int(C.sum()), "stump_voxels": 0, "length_mm": 0.0,
            "stumps_merged": 0, "warnings": [], "seed_index": None}
    S, kept, dropped = merged_stump(C, A, params)
    if kept == 0:
        info["warnings"].append("does not touch the aorta: dropped")
        return (box, np.zeros_like(C)), info
    L, sp = params.stump_length_mm, params.spacing_mm
    dist = geodesic_from_aorta(C, A, S, sp)
    if params.growth == "dilation":
        G = grow_by_dilation(S, C, int(round(L / sp)))
    else:
        G = (dist <= L + 1e-6) | S
    whole = not np.any(C & ~G)
    d = dist[G]
    info.update(stump_voxels=int(G.sum()), stumps_merged=kept,
                length_mm=float(d[np.isfinite(d)].max()) if np.isfinite(d).any() else 0.0)
    if whole:
        info["warnings"].append(f"shorter than the stump length: kept whole "
                                f"({info['length_mm']:.1f} mm)")
    if kept > 1:
        info["warnings"].append(f"{kept} stump pieces merged")
    if dropped:
        info["warnings"].append(f"{dropped} stump piece(s) farther than "
                                f"{params.stump_merge_distance_mm:g} mm from the main one dropped")
    idx = np.nonzero(S)
    info["seed_index"] = tuple(ix + b.start for ix, b in zip(idx, box))
    return (box, G), info


def aorta_axis(image, aorta, step=4, offset=(0, 0, 0)):
    """``(z, x)`` of the aorta's centre per 2 mm of height (from every ``step``-th voxel).

    ``aorta`` may be a crop of the image's array starting at index ``offset`` (k, j, i).
    """
    idx = np.nonzero(aorta)
    if len(idx[0]) == 0:
        return None
    idx = tuple(a[::step] + o for a, o in zip(idx, offset))
    p = resampling.voxel_points(image, idx)
    zb = np.round(p[:, 2] / 2.0)
    ub, inv = np.unique(zb, return_inverse=True)
    x = np.bincount(inv, weights=p[:, 0]) / np.bincount(inv)
    return ub * 2.0, x


def side_of(image, label, info, axis):
    """``left``/``right``/``midline`` (or ``bilateral`` for an iliac pair) from LPS x."""
    if info["seed_index"] is None or axis is None:
        return "unknown"
    p = resampling.voxel_points(image, info["seed_index"])
    z, x = axis
    ax = x[np.clip(np.searchsorted(z, p[:, 2]), 0, len(z) - 1)]
    dx = p[:, 0] - ax
    if label == 2 and (dx > 2).mean() > 0.25 and (dx < -2).mean() > 0.25:
        return "bilateral"
    m = float(np.median(dx))
    return "left" if m > 5 else "right" if m < -5 else "midline"
