#!/usr/bin/env python3
"""Benchmark: both bundled-architecture models on a 512x512x500 CTA at 0.8x0.8x1 mm.

    python scripts/benchmark_inference.py [--threads 2]

Runs the artery-group model on the whole CT, then the artery/calcium model in the
cascade region (the artery groups it found plus 10 mm), as the pipeline does, and prints wall
time per stage and the peak resident memory.  Uses the bundled model folders when
present, else the same architectures and cards with random weights (timing only).
In the same run (unless --skip-nnunet) it times one fold of a default-size nnU-Net v2
3d_fullres network on the same volume (scripts/nnunet_default_timing.py: nnU-Net's own
planner, random weights) and prints our time / nnU-Net time.  nnU-Net's preprocessing
and export are timed in full and its sliding window on --nnunet-windows windows times
the number it plans (a few minutes); --nnunet-full runs its whole predictor (about an
hour on 2 cores).
"""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from CalciumScoringLib.segmentation.engine import segment
from CalciumScoringLib.segmentation.models import ModelError, find_model, save_model
from CalciumScoringLib.segmentation.networks import build
from CalciumScoringLib.phantoms.generator import make_phantom

ROOT = Path(__file__).resolve().parents[1]


def model_folder(name, tmp):
    try:
        return find_model(name).folder, "bundled"
    except ModelError:
        import importlib.util

        spec = importlib.util.spec_from_file_location("train", ROOT / "scripts" / "train_models.py")
        train = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(train)
        cfg = train.CONFIGS[name]
        arch = {"name": "unet3d", "params": {"in_channels": 1, "num_classes": len(cfg["labels"]) + 1,
                                             "features": cfg["features"]}}
        card = {"name": name, "version": "0.0.0", "labels": cfg["labels"],
                "spacing_mm": cfg["spacing_mm"], "normalization": train.NORM,
                "patch_size": cfg["patch_size"], "tile_step": cfg.get("tile_step", 0.5),
                "architecture": arch, "license": "Apache-2.0", "intended_use": "timing only"}
        torch.manual_seed(0)
        return save_model(Path(tmp) / name, build(arch).state_dict(), card), "random weights"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-nnunet", action="store_true")
    ap.add_argument("--nnunet-windows", type=int, default=4)
    ap.add_argument("--nnunet-full", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t = time.perf_counter()
    ph0 = make_phantom(7, spacing=(2.0, 2.0, 2.0), fov="vessels", n_plaques=0)
    pts = np.vstack([np.array(b["centerline_lps"]) for b in ph0.meta["branches"].values()])
    c = (pts.min(0) + pts.max(0)) / 2
    half = np.array([512 * 0.8, 512 * 0.8, 500 * 1.0]) / 2
    lo, hi = c - half, c + half - np.array([0.8, 0.8, 1.0])
    ph = make_phantom(7, spacing=(0.8, 0.8, 1.0), fov=(lo.tolist(), hi.tolist()))
    print(f"CT {ph.ct.GetSize()} at {ph.ct.GetSpacing()} mm made in {time.perf_counter() - t:.0f} s",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        times, groups = {}, ph.groups
        for name in ("artery-groups", "arteries-calcium"):
            folder, kind = model_folder(name, tmp)
            card = json.loads((Path(folder) / "model.json").read_text())
            # the cascade as in the pipeline: the calcium model runs around the groups found
            roi = groups > 0 if name == "arteries-calcium" else None
            t = time.perf_counter()
            marks = []  # (stage, when it began)

            def progress(fraction, stage):
                if not marks or marks[-1][0] != stage:
                    marks.append((stage, time.perf_counter()))

            lab = segment(ph.ct, folder, threads=a.threads, roi=roi, progress=progress)
            times[name] = time.perf_counter() - t
            spans = {s: e[1] - b for (s, b), e in zip(marks, marks[1:])}
            if name == "artery-groups":
                groups = lab if kind == "bundled" else ph.groups  # random weights find nothing
            print(f"{name} ({kind}, {card['spacing_mm']} mm, patch {card['patch_size']}, "
                  f"step {card.get('tile_step', 0.5)}): {times[name]:6.1f} s, labels "
                  f"{np.unique(sitk.GetArrayViewFromImage(lab)).tolist()}"
                  + (f"; refining calcium {spans['refining calcium']:.1f} s"
                     if "refining calcium" in spans else ""), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    total = sum(times.values())
    print(f"both models: {total:.1f} s (target 60 s: {'met' if total <= 60 else 'NOT met'}); "
          f"peak memory {peak:.2f} GiB (target 6 GiB: {'met' if peak <= 6 else 'NOT met'})",
          flush=True)
    if not a.skip_nnunet:
        import subprocess
        import sys

        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "ct.nii.gz")
            sitk.WriteImage(ph.ct, path)
            r = subprocess.run([sys.executable, str(ROOT / "scripts" / "nnunet_default_timing.py"),
                                path, tmp, "--threads", str(a.threads)]
                               + (["--full"] if a.nnunet_full else
                                  ["--windows", str(a.nnunet_windows)]),
                               capture_output=True, text=True)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("nnU-Net", "NNUNET"))]
            print("\n".join(lines[:-1] if lines else [r.stderr[-1500:]]))
            if lines and lines[-1].startswith("NNUNET_SECONDS"):
                t_nn = float(lines[-1].split()[1])
                how = "run in full" if a.nnunet_full else "preprocessing + export measured, windows sampled"
                print(f"nnU-Net default network, one fold ({how}): {t_nn:.1f} s; ours / nnU-Net = "
                      f"{total / t_nn:.3f}")


if __name__ == "__main__":
    main()
