"""Procedural body parts around organ label maps that have none (the AMOS maps).

``procedural_body`` draws the body outline, fat, wall, spine with posterior elements,
psoas and back muscles around an organ map from the aorta's position per slice.
``add_chest`` first extends such a map upwards by 60-220 mm of chest, so the network also
meets the lower chest of an abdominal CT and a thoracic CTA: the descending aorta beside
the spine, the arch and ascending aorta over the heart (all of it group "aorta"), the
heart, pulmonary trunk and arteries, superior vena cava, supra-aortic arteries (bright but
of no group), trachea and bronchi, oesophagus and the domes of the upper abdominal organs;
``finish_chest`` then fills lungs with their vessels, ribs and sternum around them.  The
proportions are textbook values with random spread, not a measured chest.  Not installed
into Slicer.
"""

import numpy as np
from scipy import ndimage
from synth_geometry import (
    AIR, AORTA, ARTX, BONE, BOWEL, CARTILAGE, CORD, CORTEX, FAT, HEART, IVC, LIVER, LUNG,
    MARROW, MEDULLA, MUSCLE, PANCREAS, SOFT, SPACING, SPLEEN, STOMACH, VEIN, axis, curve, stamp,
)

ORGANS = [LIVER, SPLEEN, CORTEX, MEDULLA, AORTA, IVC, PANCREAS, STOMACH, BOWEL, HEART, VEIN,
          ARTX, LUNG]


def procedural_body(cls, rng, chest=None):
    """Body outline, fat, wall, spine, psoas and back muscles around an organ map that has
    none (AMOS): placed from the aorta's position per slice; in the slices of ``chest``
    (from :func:`add_chest`) from its spine and body outline, without psoas."""
    organs = cls != AIR
    nz = cls.shape[0]
    zs = np.flatnonzero((cls == AORTA).any((1, 2)))
    cents = {z: np.argwhere(cls[z] == AORTA).mean(0) for z in zs}
    yy, xx = np.mgrid[:cls.shape[1], :cls.shape[2]]
    margin = rng.uniform(20, 40) / SPACING
    wall = rng.uniform(8, 15) / SPACING
    out = cls.copy()
    z_chest = chest["from"] if chest else nz
    for z in range(nz):
        if not organs[z].any() and not len(zs):
            continue
        near = zs[np.argmin(np.abs(zs - min(z, z_chest - 1)))] if len(zs) else None
        ay, ax = cents[near] if near is not None else (cls.shape[1] / 2, cls.shape[2] / 2)
        sy, sx = ay + 28 / SPACING, ax - 14 / SPACING
        if z >= z_chest:
            sy, sx = chest["spine"]
            cy, cx, ry, rx = chest["body"]
        elif organs[z].any():
            pts = np.argwhere(organs[z])
            cy, cx = pts.mean(0)
            ry = max((pts[:, 0].max() - pts[:, 0].min()) / 2, 40 / SPACING) + margin
            rx = max((pts[:, 1].max() - pts[:, 1].min()) / 2, 60 / SPACING) + margin
        else:
            cy, cx, ry, rx = ay + 10, ax, 100 / SPACING, 150 / SPACING
        cy = max(cy, ay + 5 / SPACING)  # the back reaches behind the spine
        ry = max(ry, (ay - cy) + 90 / SPACING)
        r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        body = r <= 1
        sl = out[z]
        free = sl == AIR
        sl[free & body] = FAT
        inner = ((yy - cy) / (ry - wall)) ** 2 + ((xx - cx) / (rx - wall)) ** 2
        sl[free & body & (inner > 1) & (r < (1 - 4 / min(ry, rx)) ** 2)] = MUSCLE
        # spine: vertebral body right-behind the aorta, canal and posterior elements
        vb = ((yy - sy) / (16 / SPACING)) ** 2 + ((xx - sx) / (20 / SPACING)) ** 2
        disc = (z * SPACING) % 32 < 8
        shell = (vb <= 1) & (vb > 0.7)
        canal = ((yy - sy - 30 / SPACING) ** 2 + (xx - sx) ** 2) <= (8 / SPACING) ** 2
        arch = (((yy - sy - 30 / SPACING) ** 2 + (xx - sx) ** 2) <= (14 / SPACING) ** 2) & ~canal
        spinous = (np.abs(xx - sx) < 4 / SPACING) & (yy > sy + 40 / SPACING) & (yy < sy + 65 / SPACING)
        psoas = [((yy - sy) / (18 / SPACING)) ** 2 + ((xx - sx - s * 38 / SPACING) / (14 / SPACING)) ** 2 <= 1
                 for s in (-1, 1)] if z < z_chest else [np.zeros_like(body)] * 2
        back = [((yy - sy - 50 / SPACING) / (18 / SPACING)) ** 2 + ((xx - sx - s * 28 / SPACING) / (20 / SPACING)) ** 2 <= 1
                for s in (-1, 1)]
        keep = ~np.isin(sl, ORGANS)
        for m, c in ((back[0] | back[1], MUSCLE), (psoas[0] | psoas[1], MUSCLE),
                     (vb <= 1, SOFT if disc else MARROW), (shell & ~np.bool_(disc), BONE),
                     (arch | spinous, BONE), (canal, CORD)):
            sl[m & keep & body] = c
    return out


def _ellipsoid(shape, centre, semi, angle):
    """Mask of an ellipsoid (mm centre and semi-axes z, y, x), turned in-plane by ``angle``."""
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    dz, dy, dx = z * SPACING - centre[0], y * SPACING - centre[1], x * SPACING - centre[2]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dy - s * dx, s * dy + c * dx
    return (dz / semi[0]) ** 2 + (u / semi[1]) ** 2 + (v / semi[2]) ** 2 <= 1


def add_chest(cls, rng):
    """``cls`` extended upwards by a chest whose aorta continues the map's, and what
    :func:`procedural_body` and :func:`finish_chest` need (``None`` when the map's aorta
    does not reach its top)."""
    zs, at = axis(cls)
    top = cls.shape[0]
    if not len(zs) or zs[-1] < top - 3:
        return cls, None
    n = int(rng.uniform(60, 220) / SPACING)
    out = np.concatenate([cls, np.full((n,) + cls.shape[1:], AIR, cls.dtype)])
    scratch = np.zeros(out.shape, np.int8)  # stamp() writes groups too; derived later
    o, r0 = at(zs[-1] * SPACING)
    zt, zmax = top * SPACING, (top + n) * SPACING
    sy, sx = o[1] + 28, o[2] - 14  # mm: the vertebral body, as procedural_body puts it
    drift = np.array([0.0, rng.uniform(-4, 6), rng.uniform(4, 14)])  # the aorta: back, left

    def desc(z):
        return np.array([z, o[1], o[2]]) + drift * np.clip((z - zt) / 80, 0, 1)

    # domes of the organs cut at the map's top: liver, spleen, stomach shrink upwards
    prev = cls[-1]
    for k in range(min(n, int(rng.uniform(10, 30) / SPACING))):
        sl = np.zeros_like(prev)
        for c in (LIVER, SPLEEN, STOMACH):
            sl[ndimage.binary_erosion(prev == c, iterations=2)] = c
        out[top + k][sl > 0] = sl[sl > 0]
        prev = sl
    # heart: myocardium around the blood pool, on the diaphragm, left and in front
    semi = np.array([rng.uniform(42, 58), rng.uniform(38, 52), rng.uniform(50, 68)])
    hc = np.array([zt + rng.uniform(30, 60), sy - rng.uniform(78, 95), sx + rng.uniform(12, 32)])
    ang = np.deg2rad(rng.uniform(-35, -10))
    chest_part = out[top:]  # a view: the heart goes in the new slices only
    at_top = hc - np.array([zt, 0.0, 0.0])
    outer = _ellipsoid(chest_part.shape, at_top, semi, ang) & (chest_part == AIR)
    chest_part[outer] = MUSCLE
    chest_part[_ellipsoid(chest_part.shape, at_top, semi - rng.uniform(7, 12), ang) & outer] = HEART
    # ascending aorta, arch and descending aorta (group aorta)
    root = hc + np.array([0.5 * semi[0], 0.1 * semi[1], -0.3 * semi[2]])
    z_arch = root[0] + rng.uniform(45, 75)
    r_arch = rng.uniform(22, 32)
    asc_top = np.array([z_arch - r_arch, root[1] - 4, root[2] - 3])
    d_top = desc(z_arch - r_arch)
    apex = np.array([z_arch, (asc_top[1] + d_top[1]) / 2, (asc_top[2] + d_top[2]) / 2 + rng.uniform(-5, 5)])
    arch = curve([root, asc_top, apex, d_top], rng, step=0.75)
    stamp(out, scratch, arch, np.linspace(rng.uniform(14, 18), r0 * 1.05, len(arch)), AORTA)
    down = np.array([desc(z) for z in np.arange(zt - 3, d_top[0], 0.75)])
    stamp(out, scratch, down, np.full(len(down), r0 * rng.uniform(1.0, 1.15)), AORTA)
    # supra-aortic arteries from the top of the arch (no group)
    for f, dx, r in ((0.3, -rng.uniform(15, 25), rng.uniform(5, 7)), (0.5, rng.uniform(-3, 5), rng.uniform(3.5, 4.5)),
                     (0.7, rng.uniform(20, 35), rng.uniform(4, 5.5))):
        a = arch[int(len(arch) * (0.35 + 0.3 * f))]
        path = curve([a, a + np.array([30, -3, dx / 2]), a + np.array([80, 0, dx])], rng, rng.uniform(0, 3))
        stamp(out, scratch, path, np.full(len(path), r), ARTX)
    # pulmonary trunk and arteries (blood pool), under the arch
    p0 = hc + np.array([0.45 * semi[0], -0.55 * semi[1], 0.05 * semi[2]])
    bif = np.array([z_arch - rng.uniform(28, 42), (root[1] + d_top[1]) / 2, sx + rng.uniform(0, 10)])
    trunk = curve([p0, (p0 + bif) / 2 + np.array([5, 0, 5]), bif], rng)
    stamp(out, scratch, trunk, np.full(len(trunk), rng.uniform(12, 15)), HEART)
    hila = []
    for side in (-1, 1):
        hil = bif + np.array([-rng.uniform(8, 18), rng.uniform(12, 25), side * rng.uniform(55, 70)])
        path = curve([bif, bif + np.array([0, 8, side * 25]), hil], rng)
        stamp(out, scratch, path, np.full(len(path), rng.uniform(8, 11)), HEART)
        hila.append(hil)
    # superior vena cava right of the ascending aorta, into the right atrium
    ra = hc + np.array([0.3 * semi[0], 0.0, -0.65 * semi[2]])
    svc_top = np.array([zmax + 10, root[1] + rng.uniform(-5, 8), root[2] - rng.uniform(22, 32)])
    path = curve([svc_top, (svc_top + ra) / 2, ra], rng)
    stamp(out, scratch, path, np.full(len(path), rng.uniform(8, 11)), VEIN)
    # trachea to the carina, main bronchi to the hila (air), oesophagus behind
    ty = sy - rng.uniform(40, 50)
    car = np.array([bif[0] + rng.uniform(0, 12), ty, sx + rng.uniform(-3, 3)])
    path = curve([np.array([zmax + 10, ty, sx]), car], rng)
    stamp(out, scratch, path, np.full(len(path), rng.uniform(7.5, 10)), LUNG)
    for hil in hila:
        path = curve([car, (car + hil) / 2 + np.array([0, 10, 0]), hil + np.array([0, 10, 0])], rng)
        stamp(out, scratch, path, np.full(len(path), rng.uniform(5, 7)), LUNG)
    oy, ox = sy - rng.uniform(20, 27), sx + rng.uniform(0, 8)
    path = curve([np.array([zmax + 10, oy, ox]), np.array([zt - 3, oy - 8, ox + 15])], rng)
    stamp(out, scratch, path, np.full(len(path), rng.uniform(7, 9)), SOFT)
    ry, rx = rng.uniform(100, 130), rng.uniform(150, 180)
    chest = {"from": top, "spine": (sy / SPACING, sx / SPACING),
             "body": ((sy - (ry - 68)) / SPACING, sx / SPACING, ry / SPACING, rx / SPACING),
             "hila": hila, "heart": (hc, semi, ang), "lung_vessels": int(rng.integers(25, 45))}
    return out, chest


def finish_chest(cls, chest, rng, wall_mm=12.0):
    """Lungs (with vessels from the hila and the heart), ribs and sternum in the chest
    slices of a body drawn by :func:`procedural_body` (in place)."""
    z0 = chest["from"]
    sy, sx = chest["spine"]
    cy, cx, ry, rx = chest["body"]
    yy, xx = np.mgrid[:cls.shape[1], :cls.shape[2]]
    w = wall_mm / SPACING
    inner = ((yy - cy) / (ry - w)) ** 2 + ((xx - cx) / (rx - w)) ** 2
    cage = inner <= 1
    mediastinal = [HEART, AORTA, ARTX, VEIN, SOFT, LUNG, MUSCLE, BONE, MARROW, CORD]
    strip = (np.abs(xx - sx) < rng.uniform(4, 10) / SPACING) & (yy < sy)
    spine = (np.abs(xx - sx) < 28 / SPACING) & (yy > sy - 20 / SPACING)
    for z in range(z0, cls.shape[0]):
        sl = cls[z]
        keep = ndimage.binary_dilation(np.isin(sl, mediastinal) & cage, iterations=int(4 / SPACING) + 1)
        sl[cage & (sl == FAT) & ~keep & ~strip & ~spine] = LUNG
    # vessels branching into the lungs from the hila and the heart's back (blood pool)
    scratch = np.zeros(cls.shape, np.int8)
    tubes = np.zeros(cls.shape, np.int8)
    hc, semi, _ = chest["heart"]
    starts = list(chest["hila"]) + [hc + np.array([0.2 * semi[0], 0.6 * semi[1], s * 0.4 * semi[2]]) for s in (-1, 1)]
    for _ in range(chest["lung_vessels"]):
        a = starts[int(rng.integers(len(starts)))]
        side = 1 if a[2] > sx * SPACING else -1
        d = np.array([rng.uniform(-1, 1), rng.uniform(-0.6, 0.8), side * rng.uniform(0.4, 1.2)])
        d /= np.linalg.norm(d)
        length = rng.uniform(40, 110)
        path = curve([a, a + d * length / 2 + rng.normal(0, 6, 3), a + d * length], rng, rng.uniform(0, 4))
        stamp(tubes, scratch, path, np.linspace(rng.uniform(3, 5), rng.uniform(1.0, 2.0), len(path)), HEART)
    cls[(tubes == HEART) & (cls == LUNG)] = HEART
    # ribs: 40-60 mm lower in front than at the back, every 24-30 mm; cartilage in front; sternum
    ang = np.arctan2(xx - cx, -(yy - cy))  # 0 at the front, +-pi at the back
    front = 1 - np.abs(ang) / np.pi  # 0 at the back, 1 at the front
    band = (inner > 1) & (inner <= ((ry - w + 8 / SPACING) / (ry - w)) ** 2)
    pitch, phase, slope = rng.uniform(24, 30), rng.uniform(0, 30), rng.uniform(40, 60)
    for z in range(z0, cls.shape[0]):
        h = z * SPACING + slope * front - phase
        rib = band & ((h % pitch) < rng.uniform(8, 11))
        sl = cls[z]
        free = ~np.isin(sl, ORGANS)
        sl[rib & free & (front < 0.8)] = MARROW
        sl[rib & free & (front < 0.8) & ~ndimage.binary_erosion(rib)] = BONE
        sl[rib & free & (front >= 0.8) & (front < 0.93)] = CARTILAGE
        if z * SPACING > hc[0] - semi[0] * 0.5:
            sternum = band & (front >= 0.93)
            sl[sternum & free] = MARROW
            sl[sternum & free & ~ndimage.binary_erosion(sternum)] = BONE
