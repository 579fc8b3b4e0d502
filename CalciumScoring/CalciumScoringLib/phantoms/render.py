"""Rasterisation of the phantom onto an arbitrary image grid.

Every shape is evaluated at voxel centres in patient coordinates (LPS mm), so
labels are exact for any spacing and any (oblique) direction matrix: a voxel
belongs to a tube when its centre lies within the tube's radius of the centre
line.  Work is restricted to each shape's bounding box in index space.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class Grid:
    """Image geometry: ``size`` (i, j, k), ``spacing`` (mm), ``origin``, ``direction`` (3x3)."""

    size: tuple
    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray

    @classmethod
    def covering(cls, lo, hi, spacing, direction=None):
        """Smallest grid along ``direction`` whose voxel centres cover the box [lo, hi]."""
        spacing = np.asarray(spacing, float)
        D = np.eye(3) if direction is None else np.asarray(direction, float).reshape(3, 3)
        if not np.allclose(D.T @ D, np.eye(3), atol=1e-6):
            raise ValueError("direction must be an orthonormal 3x3 matrix (row-major, as in ITK)")
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                            for z in (lo[2], hi[2])], float)
        proj = corners @ D  # coordinates along each grid axis
        pmin, pmax = proj.min(0), proj.max(0)
        size = tuple(int(np.ceil((pmax[a] - pmin[a]) / spacing[a])) + 1 for a in range(3))
        return cls(size, spacing, D @ pmin, D)

    @property
    def shape(self):
        """numpy array shape (k, j, i), as ``SimpleITK.GetArrayFromImage`` returns it."""
        return self.size[::-1]

    @property
    def voxel_volume(self):
        return float(np.prod(self.spacing))

    def to_index(self, points):
        """Continuous (i, j, k) index of LPS points (N, 3)."""
        p = np.atleast_2d(points) - self.origin
        return (p @ self.direction) / self.spacing

    def to_physical(self, index):
        """LPS points of continuous indices (N, 3)."""
        idx = np.atleast_2d(index) * self.spacing
        return self.origin + idx @ self.direction.T

    def box(self, lo, hi):
        """Array slices (k, j, i) of the voxels whose centres may fall in box [lo, hi]."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                            for z in (lo[2], hi[2])], float)
        idx = self.to_index(corners)
        a = np.maximum(np.floor(idx.min(0)).astype(int), 0)
        b = np.minimum(np.ceil(idx.max(0)).astype(int) + 1, self.size)
        if np.any(b <= a):
            return None
        return (slice(a[2], b[2]), slice(a[1], b[1]), slice(a[0], b[0]))

    def coords(self, box=None):
        """LPS coordinates X, Y, Z (float32, box-shaped) of the voxel centres in ``box``."""
        if box is None:
            box = tuple(slice(0, n) for n in self.shape)
        k = np.arange(box[0].start, box[0].stop, dtype=np.float32)[:, None, None]
        j = np.arange(box[1].start, box[1].stop, dtype=np.float32)[None, :, None]
        i = np.arange(box[2].start, box[2].stop, dtype=np.float32)[None, None, :]
        s, D, o = self.spacing.astype(np.float32), self.direction.astype(np.float32), self.origin
        return [np.float32(o[r]) + D[r, 0] * s[0] * i + D[r, 1] * s[1] * j + D[r, 2] * s[2] * k
                for r in range(3)]


def tube_margin(grid, points, radius, reach):
    """Signed margin ``distance to centre line - radius`` (mm) of the voxels near a tube.

    Returns ``(box, margin)``: array slices and the float32 margin inside them
    (``inf`` where no segment is within ``reach`` mm of the lumen surface).
    """
    points = np.asarray(points, float)
    lo = points.min(0) - radius.max() - reach
    hi = points.max(0) + radius.max() + reach
    box = grid.box(lo, hi)
    if box is None:
        return None, None
    X, Y, Z = grid.coords(box)
    shape = np.broadcast_shapes(X.shape, Y.shape, Z.shape)
    margin = np.full(shape, np.inf, np.float32)
    off = np.array([box[2].start, box[1].start, box[0].start])
    step = 4  # segments handled together; the chord error is irrelevant, the polyline is the truth
    for s in range(0, len(points) - 1, step):
        a_pts = points[s:s + step + 1]
        r_max = radius[s:s + step + 1].max()
        sub = grid.box(a_pts.min(0) - r_max - reach, a_pts.max(0) + r_max + reach)
        if sub is None:
            continue
        loc = tuple(slice(sub[n].start - off[2 - n], sub[n].stop - off[2 - n]) for n in range(3))
        x = np.broadcast_to(X, shape)[loc]
        y = np.broadcast_to(Y, shape)[loc]
        z = np.broadcast_to(Z, shape)[loc]
        m = margin[loc]
        for q in range(len(a_pts) - 1):
            a, b = a_pts[q], a_pts[q + 1]
            ra, rb = radius[s + q], radius[s + q + 1]
            ab = b - a
            L2 = float(ab @ ab)
            dx, dy, dz = x - np.float32(a[0]), y - np.float32(a[1]), z - np.float32(a[2])
            t = (dx * ab[0] + dy * ab[1] + dz * ab[2]) / np.float32(L2)
            np.clip(t, 0, 1, out=t)
            d = np.sqrt((dx - t * ab[0]) ** 2 + (dy - t * ab[1]) ** 2 + (dz - t * ab[2]) ** 2)
            np.minimum(m, d - (ra + t * (rb - ra)), out=m)
    return box, margin


def ellipsoid(grid, center, semi_axes, box_only=False):
    """Box and boolean mask of an axis-aligned (LPS) ellipsoid."""
    c, r = np.asarray(center, float), np.asarray(semi_axes, float)
    box = grid.box(c - r, c + r)
    if box is None:
        return None, None
    X, Y, Z = grid.coords(box)
    q = ((X - c[0]) / r[0]) ** 2 + ((Y - c[1]) / r[1]) ** 2 + ((Z - c[2]) / r[2]) ** 2
    return box, q <= 1.0


def elliptic_cylinder(grid, center_xy, semi_xy, z_range):
    """Box and boolean mask of a cylinder along z with an elliptic cross-section."""
    c, r = np.asarray(center_xy, float), np.asarray(semi_xy, float)
    lo = (c[0] - r[0], c[1] - r[1], z_range[0])
    hi = (c[0] + r[0], c[1] + r[1], z_range[1])
    box = grid.box(lo, hi)
    if box is None:
        return None, None
    X, Y, Z = grid.coords(box)
    q = ((X - c[0]) / r[0]) ** 2 + ((Y - c[1]) / r[1]) ** 2
    return box, (q <= 1.0) & (Z >= z_range[0]) & (Z <= z_range[1])


def paint(volume, box, mask, value):
    """Set ``volume[box][mask] = value`` (no-op for empty shapes)."""
    if box is None:
        return
    volume[box][np.broadcast_to(mask, volume[box].shape)] = value


def render_tissues(grid, branches, o, rng):
    """HU volume (float32) of air, body, fat, organs, bone and distractors (no arteries)."""
    hu = np.full(grid.shape, -1000.0, np.float32)
    aorta = branches["aorta"]
    z_lo = min(b.points[:, 2].min() for b in branches.values()) - 300
    z_hi = aorta.points[:, 2].max() + 300
    ra = float(aorta.radius.max()) + o["wall_mm"]
    bx, by = o["body_center"]
    ax, ay = o["body_semi_axes"]
    paint(hu, *elliptic_cylinder(grid, (bx, by), (ax, ay), (z_lo, z_hi)), o["fat_hu"])
    f = o["fat_mm"]
    paint(hu, *elliptic_cylinder(grid, (bx, by), (ax - f, ay - f), (z_lo, z_hi)), o["tissue_hu"])
    # retroperitoneal fat around the aorta
    paint(hu, *elliptic_cylinder(grid, (-8.0, 0.0), (ra + 18, ra + 10), (z_lo, z_hi)), o["fat_hu"])
    # inferior vena cava, right of the aorta
    paint(hu, *elliptic_cylinder(grid, (-(ra + 14.0), 2.0), (11.0, 8.0), (z_lo, z_hi)), o["vein_hu"])
    # liver (right upper quadrant) and kidneys at the renal artery ends
    z_cel = 0.0
    paint(hu, *ellipsoid(grid, (-85.0, -5.0, z_cel + 30), (65, 75, 80)), o["liver_hu"])
    for name in ("renal_left", "renal_right"):
        b = branches[name]
        end, d = b.points[-1], b.points[-1] - b.points[-8]
        c = end + 14.0 * d / np.linalg.norm(d)
        paint(hu, *ellipsoid(grid, c, (22, 26, 48)), o["kidney_hu"])
        paint(hu, *ellipsoid(grid, c, (10, 14, 30)), o["kidney_hu"] * 0.5)
    # spine: vertebral bodies with a cortical shell, discs, posterior elements
    rv = o["vertebra_radius"]
    sx, sy = -6.0, ra + o["spine_gap"] + rv
    z = aorta.points[:, 2].max() + 40
    while z > z_lo + 200:
        top, bot = z, z - 26.0
        paint(hu, *elliptic_cylinder(grid, (sx, sy), (rv, rv * 0.85), (bot, top)), o["cortical_hu"])
        paint(hu, *elliptic_cylinder(grid, (sx, sy), (rv - 2, rv * 0.85 - 2), (bot + 2, top - 2)),
              o["cancellous_hu"])
        paint(hu, *elliptic_cylinder(grid, (sx, sy), (rv, rv * 0.85), (bot - 7, bot)), 80.0)
        paint(hu, *elliptic_cylinder(grid, (sx, sy + rv + 18), (9, 14), (bot + 3, top - 3)),
              o["cortical_hu"] * 0.8)
        z = bot - 7.0
    # pelvic bone lateral to the iliac arteries
    bif_z = aorta.points[-1, 2]
    for sgn in (-1.0, 1.0):
        c = (sx + sgn * 85.0, sy - 10.0, bif_z - 75.0)
        paint(hu, *ellipsoid(grid, c, (14, 50, 45)), o["cortical_hu"])
        paint(hu, *ellipsoid(grid, c, (10, 46, 41)), o["cancellous_hu"])
    # bowel gas, oral contrast and metal (options)
    for _ in range(o["gas_bubbles"]):
        c = (rng.uniform(-90, 90), rng.uniform(-110, -60), rng.uniform(z_lo + 250, 20))
        paint(hu, *ellipsoid(grid, c, rng.uniform(6, 18, 3)), -900.0)
    for _ in range(o["oral_contrast"]):
        c = (rng.uniform(-80, 80), rng.uniform(-110, -55), rng.uniform(z_lo + 250, 20))
        paint(hu, *ellipsoid(grid, c, rng.uniform(8, 20, 3)), rng.uniform(250, 700))
    if o["metal"]:
        zm = rng.uniform(bif_z, 0.0)
        paint(hu, *elliptic_cylinder(grid, (sx + 10, sy + 5), (3, 3), (zm - 2, zm + 2)), 3000.0)
    return hu


def smooth_noise(grid, rng, sigma_hu, pv_sigma_mm, bias_hu):
    """Return (blur sigma in voxels, noise array, bias field) for the final CT."""
    from scipy import ndimage

    sig = [pv_sigma_mm / s for s in grid.spacing[::-1]]
    noise = rng.normal(0.0, sigma_hu, grid.shape).astype(np.float32)
    bias = None
    if bias_hu > 0:
        coarse = rng.normal(0.0, 1.0, (4, 4, 4))
        zoom = [n / 4 for n in grid.shape]
        bias = ndimage.zoom(coarse, zoom, order=3)[: grid.shape[0], : grid.shape[1], : grid.shape[2]]
        bias = (bias_hu * bias / max(np.abs(bias).max(), 1e-6)).astype(np.float32)
    return sig, noise, bias
