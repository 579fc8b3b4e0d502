"""nnU-Net v2 results folders as models (optional dependency ``nnunetv2``).

A folder with ``dataset.json``, ``plans.json`` and one or more ``fold_*/checkpoint_final.pth``
(the layout nnU-Net writes under ``nnUNet_results/DatasetXXX/<trainer>__<plans>__<config>``)
runs through ``nnunetv2``'s predictor; all folds present are ensembled (averaged).
"""

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .models import ModelError, ModelInfo

INSTALL_HINT = ("nnU-Net models need the optional package nnunetv2: pip install 'nnunetv2>=2.4' "
                "(in Slicer: slicer.util.pip_install('nnunetv2'))")


def nnunet_info(folder):
    folder = Path(folder)
    try:
        ds = json.loads((folder / "dataset.json").read_text())
        json.loads((folder / "plans.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder} is not an nnU-Net results folder: {exc}") from exc
    folds = sorted(p.name for p in folder.glob("fold_*") if (p / "checkpoint_final.pth").exists())
    if not folds:
        raise ModelError(f"{folder} has no fold_*/checkpoint_final.pth")
    labels = {str(v): k for k, v in ds.get("labels", {}).items() if int(v) != 0}
    name = ds.get("name") or folder.name
    card = {"name": name, "version": "nnU-Net v2", "labels": labels, "folds": folds,
            "license": ds.get("licence", ds.get("license", "see dataset.json")),
            "intended_use": "research"}
    return ModelInfo(name, "nnU-Net v2", labels, folder, "nnunet", card)


def segment_nnunet(ct, info, device="cpu", threads=None, progress=None, cancel=None):
    """Run an nnU-Net results folder on ``ct``; labels on ct's grid."""
    try:
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    except ImportError as exc:
        raise ModelError(INSTALL_HINT) from exc
    if threads:
        torch.set_num_threads(int(threads))
    if cancel is not None and cancel():
        from .inference import Cancelled

        raise Cancelled("inference cancelled")
    if progress:
        progress(0.05, "nnU-Net")
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                device=torch.device(device), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    folds = tuple(int(f.split("_")[1]) if f.split("_")[1].isdigit() else f
                  for f in info.card["folds"])
    predictor.initialize_from_trained_model_folder(str(info.folder), use_folds=folds,
                                                   checkpoint_name="checkpoint_final.pth")
    arr = sitk.GetArrayFromImage(ct).astype(np.float32)[None]
    props = {"sitk_stuff": {"spacing": ct.GetSpacing(), "origin": ct.GetOrigin(),
                            "direction": ct.GetDirection()},
             "spacing": list(ct.GetSpacing())[::-1]}
    seg = predictor.predict_single_npy_array(arr, props, None, None, False)
    out = sitk.GetImageFromArray(np.asarray(seg, np.uint8))
    out.CopyInformation(ct)
    if progress:
        progress(1.0, "done")
    return out
