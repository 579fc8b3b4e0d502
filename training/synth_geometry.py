"""What the synthetic anatomies are made of: the 1.5 mm grid, the structure classes, the
artery groups they carry, and drawing tubes into a class map (``stamp`` balls along a
``curve``; ``axis`` follows a structure slice by slice).  Shared by ``synth_anatomy``,
``synth_body`` and ``synth_paint``.  Not installed into Slicer.
"""

import numpy as np

SPACING = 1.5  # mm, isotropic grid the anatomy is kept on

(AIR, FAT, SOFT, MUSCLE, BONE, MARROW, LUNG, LIVER, SPLEEN, CORTEX, MEDULLA, BOWEL, STOMACH,
 PANCREAS, FLUID, IVC, PORTAL, HEART, CORD, CARTILAGE, AORTA, ILIAC, MES, RENAL, CALC,
 VEIN, ARTX) = range(27)
# VEIN: veins drawn here (renal, superior mesenteric, splenic, portal, superior vena cava);
# ARTX: arteries of no group (supra-aortic), as bright as the lumen, labelled background
GROUP_OF = {AORTA: 1, ILIAC: 2, MES: 3, RENAL: 4}


# --- tubes -------------------------------------------------------------------------

def stamp(cls, grp, pts, radius, c):
    """Balls of ``radius`` (mm, per point) along ``pts`` (mm, z y x) written as class ``c``
    (the aorta and bone keep theirs)."""
    protect = [] if c == AORTA else [AORTA, BONE, CALC] + ([ILIAC, MES, RENAL, ARTX] if c == VEIN else [])
    for p, r in zip(pts, radius):
        i = p / SPACING
        q = int(np.ceil(r / SPACING)) + 1
        lo = np.maximum(np.floor(i).astype(int) - q, 0)
        hi = np.minimum(np.floor(i).astype(int) + q + 1, cls.shape)
        if np.any(hi <= lo):
            continue
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        g = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
        ball = ((g * SPACING - p) ** 2).sum(-1) <= r * r
        sub = cls[sl]
        ball &= ~np.isin(sub, protect)
        sub[ball] = c
        grp[sl][ball] = GROUP_OF.get(c, 0)


def curve(points, rng, wiggle=0.0, step=0.75):
    """A smooth path (mm) through control ``points`` with optional tortuosity."""
    p = np.asarray(points, float)
    t = np.linspace(0, 1, len(p))
    length = np.linalg.norm(np.diff(p, axis=0), axis=1).sum()
    n = max(int(length / step), 2)
    s = np.linspace(0, 1, n)
    deg = min(len(p) - 1, 3)
    out = np.stack([np.polyval(np.polyfit(t, p[:, k], deg), s) for k in range(3)], 1)
    if wiggle:
        ph = rng.uniform(0, 2 * np.pi, 3)
        cyc = rng.uniform(1, 4)
        out += wiggle * np.sin(2 * np.pi * cyc * s[:, None] + ph) * np.sin(np.pi * s)[:, None]
    return out


def axis(cls, c=AORTA):
    """Slices holding class ``c`` and ``at(z_mm) -> (centre mm, radius mm)`` along it."""
    zs = np.flatnonzero((cls == c).any((1, 2)))
    cen = {z: np.argwhere(cls[z] == c).mean(0) * SPACING for z in zs}
    rad = {z: np.sqrt((cls[z] == c).sum() / np.pi) * SPACING for z in zs}

    def at(zmm):
        z = int(np.clip(round(zmm / SPACING), zs[0], zs[-1]))
        z = zs[np.argmin(np.abs(zs - z))]
        return np.array([z * SPACING, *cen[z]]), rad[z]

    return zs, at
