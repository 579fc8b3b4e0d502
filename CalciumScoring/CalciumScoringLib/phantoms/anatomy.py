"""Arterial anatomy of the synthetic abdominal CTA phantom.

The anatomy is a set of branches, each a densely sampled centre line in patient
coordinates (LPS, millimetres: +x left, +y posterior, +z superior, as in ITK and
DICOM) with a lumen radius per centre-line point.  Everything here is pure numpy
and deterministic given a ``numpy.random.Generator``.

Branches and their model-B group (see ``GROUPS``)::

    aorta                        1  from above the celiac trunk to the bifurcation
    iliac_left, iliac_right      2  common + external iliac arteries
    celiac, hepatic, splenic     3  celiac trunk (anterior) and its two branches
    sma                          3  superior mesenteric artery (anterior, then caudal)
    renal_left, renal_right      4  lateral, ending in the kidneys
    renal_accessory              4  optional second renal artery on one side
"""

from dataclasses import dataclass, field

import numpy as np

GROUPS = {"aorta": 1, "iliac": 2, "mesenteric": 3, "renal": 4}
GROUP_NAMES = {v: k for k, v in GROUPS.items()}

#: centre-line sampling step (mm); fine enough that the polyline is the curve.
STEP_MM = 0.5


@dataclass
class Branch:
    """One artery: centre line ``points`` (N, 3) in LPS mm and lumen ``radius`` (N,)."""

    name: str
    group: int
    points: np.ndarray
    radius: np.ndarray
    parent: str = ""
    side: str = "midline"
    info: dict = field(default_factory=dict)

    @property
    def length_mm(self):
        """Arc length of the centre line (mm)."""
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())

    def arc_length(self):
        """Cumulative arc length (mm) at every centre-line point."""
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        return np.concatenate([[0.0], np.cumsum(seg)])


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def trace(start, d0, d1, length, turn_start, turn_length, step=STEP_MM):
    """Centre line that leaves ``start`` along ``d0`` and turns smoothly to ``d1``.

    The direction is a smooth-step blend of ``d0`` and ``d1`` between arc
    lengths ``turn_start`` and ``turn_start + turn_length``.
    """
    d0, d1 = _unit(d0), _unit(d1)
    n = max(int(np.ceil(length / step)), 1)
    s = np.linspace(0.0, length, n + 1)
    w = np.clip((s - turn_start) / max(turn_length, 1e-6), 0.0, 1.0)
    w = w * w * (3 - 2 * w)
    dirs = (1 - w)[:, None] * d0 + w[:, None] * d1
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    ds = np.diff(s)
    pts = np.vstack([np.zeros(3), np.cumsum(dirs[:-1] * ds[:, None], axis=0)])
    return np.asarray(start, float) + pts


def _aorta(rng, o):
    """Aorta centre line from ``z_top`` down to ``z_bif`` with gentle tortuosity."""
    z = np.arange(o["z_top"], o["z_bif"] - 1e-9, -STEP_MM)
    t = o["tortuosity"]
    ph = rng.uniform(0, 2 * np.pi, 2)
    lam = rng.uniform(150, 260, 2)
    x = t * 4.0 * (np.sin(2 * np.pi * z / lam[0] + ph[0]) - np.sin(ph[0]))
    y = t * 3.0 * (np.sin(2 * np.pi * z / lam[1] + ph[1]) - np.sin(ph[1]))
    pts = np.column_stack([x, y, z])
    frac = (o["z_top"] - z) / (o["z_top"] - o["z_bif"])
    radius = o["aorta_radius"] * (1.0 - 0.15 * frac)  # tapers towards the bifurcation
    return Branch("aorta", GROUPS["aorta"], pts, radius)


def _point_on(branch, z, wall):
    """Centre-line point of the aorta at height ``z`` and its outer radius there."""
    i = int(np.argmin(np.abs(branch.points[:, 2] - z)))
    return branch.points[i], float(branch.radius[i]) + wall


def _branch(name, group, start, d0, d1, length, turn_start, turn_length, r0, r1,
            parent="aorta", side="midline", **info):
    pts = trace(start, d0, d1, length, turn_start, turn_length)
    radius = np.linspace(r0, r1, len(pts))
    return Branch(name, group, pts, radius, parent, side,
                  dict(info, direction=_unit(d0).tolist()))


def _deg(a):
    return np.deg2rad(a)


def default_options(rng, **options):
    """Draw every anatomical parameter not given in ``options`` from ``rng``."""
    o = dict(options)
    o.setdefault("aorta_radius", rng.uniform(8.0, 12.0))  # lumen, mm (diameter 16-24)
    if "aorta_diameter_mm" in options:
        o["aorta_radius"] = options["aorta_diameter_mm"] / 2.0
    o.setdefault("tortuosity", rng.uniform(0.3, 1.0))
    o.setdefault("wall_mm", rng.uniform(1.5, 2.0))
    o.setdefault("accessory_renal", bool(rng.random() < 0.3))
    o.setdefault("z_top", rng.uniform(25.0, 40.0))
    o.setdefault("sma_offset", rng.uniform(10.0, 18.0))
    o.setdefault("renal_offset", rng.uniform(8.0, 18.0))
    o.setdefault("renal_length", rng.uniform(45.0, 60.0))
    o.setdefault("renal_radius", rng.uniform(2.5, 3.5))
    o.setdefault("bifurcation_offset", rng.uniform(85.0, 110.0))
    o.setdefault("iliac_length", rng.uniform(90.0, 120.0))
    o.setdefault("iliac_radius", rng.uniform(3.5, 4.0))
    o.setdefault("celiac_length", rng.uniform(12.0, 20.0))
    o.setdefault("sma_length", rng.uniform(80.0, 110.0))
    o.setdefault("branch_lengths", {})  # per-branch override, e.g. {"renal_left": 15}
    return o


def build_anatomy(rng, **options):
    """Return ``(branches, options)``: a dict name -> :class:`Branch` and the options used."""
    o = default_options(rng, **options)
    z_cel = 0.0
    z_sma = z_cel - o["sma_offset"]
    z_ren_r = z_sma - o["renal_offset"]
    z_ren_l = z_ren_r + rng.uniform(-6.0, 6.0)
    o["z_bif"] = min(z_ren_l, z_ren_r) - o["bifurcation_offset"]
    aorta = _aorta(rng, o)
    L = dict(o["branch_lengths"])
    t, w = o["tortuosity"], o["wall_mm"]
    br = {"aorta": aorta}

    p, ro = _point_on(aorta, z_cel, w)
    a = _deg(rng.uniform(-10, 20))  # cranial tilt of the celiac trunk
    d = (0.0, -np.cos(a), np.sin(a))
    cel = _branch("celiac", 3, p, d, d, ro + L.get("celiac", o["celiac_length"]), 0, 1,
                  rng.uniform(3.0, 3.8), 3.0, ostium_mm=ro)
    br["celiac"] = cel
    end = cel.points[-1]
    for name, sx, side in (("hepatic", -1.0, "right"), ("splenic", 1.0, "left")):
        d0 = _unit((sx * 0.8, -0.5, rng.uniform(-0.2, 0.2)))
        d1 = _unit((sx, -0.1, rng.uniform(-0.3, 0.1)))
        br[name] = _branch(name, 3, end, d0, d1, L.get(name, rng.uniform(40, 60)),
                           10, 20, 2.6, 2.2, parent="celiac", side=side, ostium_mm=0.0)

    p, ro = _point_on(aorta, z_sma, w)
    alpha = _deg(rng.uniform(40, 65))  # angle between SMA and aorta
    d0 = (0.0, -np.sin(alpha), -np.cos(alpha))
    straight = ro + rng.uniform(14.0, 20.0)
    br["sma"] = _branch("sma", 3, p, d0, (0.0, -0.15, -1.0), ro + L.get("sma", o["sma_length"]),
                        straight, 20, rng.uniform(3.0, 3.8), 2.6, ostium_mm=ro)

    for name, sx, z in (("renal_left", 1.0, z_ren_l), ("renal_right", -1.0, z_ren_r)):
        p, ro = _point_on(aorta, z, w)
        b, c = _deg(rng.uniform(0, 25)), _deg(rng.uniform(0, 20))  # posterior, caudal tilt
        d0 = (sx * np.cos(b) * np.cos(c), np.sin(b) * np.cos(c), -np.sin(c))
        d1 = _unit(np.add(d0, (0.0, 0.3 * t, -0.2 * t)))
        br[name] = _branch(name, 4, p, d0, d1, ro + L.get(name, o["renal_length"]), 20, 25,
                           o["renal_radius"], o["renal_radius"] * 0.9,
                           side="left" if sx > 0 else "right", ostium_mm=ro)
    if o["accessory_renal"]:
        sx = rng.choice([-1.0, 1.0])
        z = min(z_ren_l, z_ren_r) - rng.uniform(18.0, 30.0)
        p, ro = _point_on(aorta, z, w)
        d0 = _unit((sx, rng.uniform(0.0, 0.3), -rng.uniform(0.1, 0.35)))
        br["renal_accessory"] = _branch(
            "renal_accessory", 4, p, d0, d0, ro + L.get("renal_accessory", rng.uniform(35, 50)),
            0, 1, 2.0, 2.0, side="left" if sx > 0 else "right", ostium_mm=ro)

    bif = aorta.points[-1]
    for name, sx, side in (("iliac_left", 1.0, "left"), ("iliac_right", -1.0, "right")):
        a = _deg(rng.uniform(18, 30))
        d0 = (sx * np.sin(a), rng.uniform(-0.1, 0.1), -np.cos(a))
        d1 = _unit((sx * (np.sin(a) + 0.25 * t), 0.15 * t, -1.0))
        br[name] = _branch(name, 2, bif, d0, d1, L.get(name, o["iliac_length"]), 40, 40,
                           o["iliac_radius"], o["iliac_radius"] * 0.85, side=side,
                           ostium_mm=float(aorta.radius[-1]) + w)
    return br, o


def branch_clearance(branches, wall_mm, skip_mm=12.0):
    """Smallest gap (mm) between the outer walls of branches that do not touch by design.

    A branch and its parent are exempt; so are the first ``skip_mm`` of every side
    branch (the take-off region) and the two iliac arteries near the bifurcation.
    """
    names = list(branches)
    gap = np.inf
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            A, B = branches[a], branches[b]
            if A.parent == b or B.parent == a or A.parent == B.parent == "celiac":
                continue
            pa, ra = A.points, A.radius
            pb, rb = B.points, B.radius
            ka = A.arc_length() > (skip_mm if a != "aorta" else -1)
            kb = B.arc_length() > (skip_mm if b != "aorta" else -1)
            if a.startswith("iliac") and b.startswith("iliac"):
                ka &= A.arc_length() > 25
                kb &= B.arc_length() > 25
            if not ka.any() or not kb.any():
                continue
            pa, ra, pb, rb = pa[ka][::4], ra[ka][::4], pb[kb][::4], rb[kb][::4]
            d = np.linalg.norm(pa[:, None] - pb[None], axis=2)
            d -= ra[:, None] + rb[None] + 2 * wall_mm
            gap = min(gap, float(d.min()))
    return gap
