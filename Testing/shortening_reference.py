"""Literal reference of the published shortening (full-volume operations, no cropping).

Used only to prove that the production implementation (ArteryShorteningLib, which
crops every step to a component's bounding box) returns identical output, and by
the benchmark to measure its speed-up.  Written independently of the library.
"""

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

SIX = ndimage.generate_binary_structure(3, 1)


def _z(image, shape):
    D = np.array(image.GetDirection()).reshape(3, 3)
    s, o = np.array(image.GetSpacing()), np.array(image.GetOrigin())
    k, j, i = (np.arange(n, dtype=np.float64) for n in shape)
    return (o[2] + D[2, 0] * s[0] * i[None, None, :] + D[2, 1] * s[1] * j[None, :, None]
            + D[2, 2] * s[2] * k[:, None, None]) * np.ones(shape)


def reference_shorten(lab, image, stump_length_mm=25.0, aorta_margin_mm=10.0,
                      aorta_dilations=2, stump_merge_distance_mm=25.0, growth="dilation"):
    """Steps 2-4 of ../shared/METHOD.md §1 on an isotropic 1 mm label array."""
    out = np.zeros_like(lab)
    aorta = lab == 1
    aorta_dil = ndimage.binary_dilation(aorta, SIX, iterations=aorta_dilations)
    for L in (2, 3, 4):
        comp, n = ndimage.label(lab == L, SIX)
        for cid in range(1, n + 1):
            C = comp == cid
            stump = C & aorta_dil
            if not stump.any():
                continue
            sc, ns = ndimage.label(stump, SIX)
            sizes = [(sc == i).sum() for i in range(1, ns + 1)]
            largest = 1 + int(np.argmax(sizes))
            dist = ndimage.distance_transform_edt(sc != largest)
            S = np.zeros_like(C)
            for i in range(1, ns + 1):
                if dist[sc == i].min() <= stump_merge_distance_mm:
                    S |= sc == i
            if growth == "dilation":
                G = S.copy()
                for _ in range(int(round(stump_length_mm))):
                    G = ndimage.binary_dilation(G, SIX) & C
            else:
                seeds = aorta & ndimage.binary_dilation(S, np.ones((3, 3, 3), bool))
                mcp = MCP_Geometric(np.where(C | seeds, 1.0, np.inf), fully_connected=True)
                d, _ = mcp.find_costs(list(zip(*np.nonzero(seeds))))
                G = (C & (d <= stump_length_mm + 1e-6)) | S
            out[G] = L
    side = out > 0
    if side.any():
        z = _z(image, lab.shape)
        cut = z[side].max() + aorta_margin_mm
        out[aorta & (z <= cut + 1e-6)] = 1
    else:
        out[aorta] = 1
    return out
