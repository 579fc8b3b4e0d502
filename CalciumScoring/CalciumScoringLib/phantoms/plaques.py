"""Calcified plaques of the phantom: known voxel sets in the arterial wall.

A plaque is a sphere centred in the wall (``lumen radius + wall / 2`` from the
centre line) intersected with its artery, so it may bulge into the lumen as real
intimal calcification does but never leaves the artery mask.  Plaques are kept
one voxel apart (separate clusters under 26-connectivity) and inside a single
artery group, so cluster counts and per-group volumes are known exactly.
"""

import numpy as np
from scipy import ndimage

from .anatomy import GROUP_NAMES

#: how often each group receives a random plaque
GROUP_WEIGHTS = {1: 0.45, 2: 0.30, 3: 0.12, 4: 0.13}


def _frame(tangent):
    t = tangent / np.linalg.norm(tangent)
    ref = np.array([0.0, 0.0, 1.0]) if abs(t[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    n1 = np.cross(t, ref)
    n1 /= np.linalg.norm(n1)
    return n1, np.cross(t, n1)


def _local(margins, name, sub):
    """The branch margin over array slices ``sub`` (inf outside the branch's box)."""
    box, m = margins[name]
    out = np.full(tuple(s.stop - s.start for s in sub), np.inf, np.float32)
    src, dst = [], []
    for a, b in zip(sub, box):
        lo, hi = max(a.start, b.start), min(a.stop, b.stop)
        if hi <= lo:
            return out
        src.append(slice(lo - b.start, hi - b.start))
        dst.append(slice(lo - a.start, hi - a.start))
    out[tuple(dst)] = m[tuple(src)]
    return out


def _random_spec(rng, branches, o):
    groups = [g for g in GROUP_WEIGHTS if any(b.group == g for b in branches.values())]
    w = np.array([GROUP_WEIGHTS[g] for g in groups])
    g = groups[rng.choice(len(groups), p=w / w.sum())]
    names = [n for n, b in branches.items() if b.group == g]
    name = names[rng.integers(len(names))]
    b = branches[name]
    ost = float(b.info.get("ostium_mm", 0.0))
    hi = b.length_mm - 4.0
    if name != "aorta" and o.get("plaque_max_from_ostium_mm") is not None:
        hi = min(hi, ost + o["plaque_max_from_ostium_mm"])
    lo = ost + 3.0 if name != "aorta" else 3.0
    r_lo, r_hi = o.get("plaque_radius_mm", (1.0, 3.5))
    return {"branch": name, "arc_mm": rng.uniform(lo, max(hi, lo + 0.1)),
            "angle_deg": rng.uniform(0, 360), "radius_mm": rng.uniform(r_lo, r_hi),
            "hu": rng.uniform(*o.get("plaque_hu", (300.0, 1500.0)))}


def _voxels(grid, branches, margins, groups, spec, wall):
    """Box and mask of one plaque; ``None`` when it leaves its group or the image."""
    b = branches[spec["branch"]]
    arc = b.arc_length()
    i = int(np.clip(np.searchsorted(arc, spec["arc_mm"]), 1, len(arc) - 1))
    n1, n2 = _frame(b.points[i] - b.points[i - 1])
    th = np.deg2rad(spec["angle_deg"])
    c = b.points[i] + (b.radius[i] + wall / 2) * (np.cos(th) * n1 + np.sin(th) * n2)
    rho = spec["radius_mm"]
    sub = grid.box(c - rho - 1, c + rho + 1)
    if sub is None:
        return None, None, c
    X, Y, Z = grid.coords(sub)
    sphere = (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= rho * rho
    mask = sphere & (_local(margins, spec["branch"], sub) <= wall)
    if not mask.any() or np.any(groups[sub][mask] != b.group):
        return None, None, c
    return sub, mask, c


def _touches(calcium, sub, mask):
    """True when ``mask`` (in ``sub``) is within one voxel (26-neighbourhood) of a plaque."""
    big = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(sub, calcium.shape))
    m = np.zeros(tuple(b.stop - b.start for b in big), bool)
    m[tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(sub, big))] = mask
    m = ndimage.binary_dilation(m, np.ones((3, 3, 3), bool))
    return bool(np.any(calcium[big][m] != 0))


def place_plaques(grid, branches, margins, groups, lumen, rng, o):
    """Place the plaques; returns an int16 id volume (0 = none) and one dict per plaque."""
    calcium = np.zeros(grid.shape, np.int16)
    explicit = o.get("plaques")
    n = len(explicit) if explicit is not None else int(o.get("n_plaques", rng.integers(6, 16)))
    wall = o["wall_mm"]
    min_vox = o.get("plaque_min_voxels", 3)
    out = []
    for k in range(n):
        for attempt in range(1 if explicit is not None else 60):
            spec = dict(explicit[k]) if explicit is not None else _random_spec(rng, branches, o)
            spec.setdefault("angle_deg", 0.0)
            spec.setdefault("hu", 800.0)
            sub, mask, c = _voxels(grid, branches, margins, groups, spec, wall)
            if sub is None or mask.sum() < min_vox:
                continue
            if _touches(calcium, sub, mask):
                continue
            pid = len(out) + 1
            calcium[sub][mask] = pid
            b = branches[spec["branch"]]
            nvox = int(mask.sum())
            out.append({
                "id": pid, "branch": spec["branch"], "group": int(b.group),
                "group_name": GROUP_NAMES[b.group], "side": b.side,
                "arc_mm": float(spec["arc_mm"]),
                "from_ostium_mm": float(spec["arc_mm"] - b.info.get("ostium_mm", 0.0)),
                "angle_deg": float(spec["angle_deg"]), "radius_mm": float(spec["radius_mm"]),
                "hu": float(spec["hu"]), "center_lps": c.tolist(), "voxels": nvox,
                "volume_mm3": nvox * grid.voxel_volume,
            })
            break
        else:
            if explicit is not None:
                raise ValueError(f"plaque {k} ({explicit[k]}) does not fit: it leaves its artery "
                                 "group, the image, touches another plaque or has < "
                                 f"{min_vox} voxels; move it (arc_mm) or enlarge it (radius_mm)")
    return calcium, out
