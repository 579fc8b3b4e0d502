#!/usr/bin/env python3
"""Benchmark: scoring a 512x512x600 CTA (all scores, all groups) vs one full read of the CT.

    python scripts/benchmark_scoring.py

A phantom (0.8 x 0.8 x 1.0 mm, arteries with calcified plaques) is embedded in a
512x512x600 volume; the script times ``CalciumScoringLib.scoring.scores.score`` with
unshortened groups for the trimmed-calcium row, and, in the same run, one full
read of the CT array (``sitk.GetArrayFromImage``, i.e. a copy) and a sum over it.
"""

import time

import numpy as np
import SimpleITK as sitk

from CalciumScoringLib.phantoms.generator import make_phantom
from CalciumScoringLib.scoring.scores import score
from ArteryShorteningLib import shorten_arteries

SIZE = (600, 512, 512)  # k, j, i


def embed(img, fill):
    a = sitk.GetArrayFromImage(img)
    out = np.full(SIZE, fill, a.dtype)
    off = [(n - m) // 2 for n, m in zip(SIZE, a.shape)]
    out[off[0]:off[0] + a.shape[0], off[1]:off[1] + a.shape[1], off[2]:off[2] + a.shape[2]] = a
    im = sitk.GetImageFromArray(out)
    im.SetSpacing(img.GetSpacing())
    im.SetOrigin([o - f * s for o, f, s in zip(img.GetOrigin(), off[::-1], img.GetSpacing())])
    return im


def best_of(fn, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    ph = make_phantom(5, spacing=(0.8, 0.8, 1.0), fov="vessels", n_plaques=25)
    ct = embed(ph.ct, -1000)
    groups = embed(ph.groups, 0)
    calcium = embed(ph.arteries == 2, 0)
    short = shorten_arteries(groups).labelmap
    print(f"CT {ct.GetSize()} voxels, {len(ph.meta['plaques'])} plaques", flush=True)
    t_read, arr = best_of(lambda: sitk.GetArrayFromImage(ct))
    t_sum, _ = best_of(lambda: int(arr.sum(dtype=np.int64)))
    t_score, res = best_of(lambda: score(ct, short, calcium, groups_full=groups))
    print(f"one full read of the CT array (GetArrayFromImage): {t_read:6.3f} s")
    print(f"one pass over the CT array (sum):                  {t_sum:6.3f} s")
    print(f"score(): all scores, all groups + outside rows:     {t_score:6.3f} s  "
          f"({t_score / t_read:.1f}x a full read)  target < 2 s: {'met' if t_score < 2 else 'NOT met'}")
    print(res.table[["region", "burden", "cluster_count", "agatston"]].to_string(index=False))


if __name__ == "__main__":
    main()
