"""nnU-Net v2 results folders run as models (optional dependency ``nnunetv2``).

A folder with ``dataset.json``, ``plans.json`` and one or more ``fold_*/checkpoint_final.pth``
(the layout nnU-Net writes under ``nnUNet_results/DatasetXXX/<trainer>__<plans>__<config>``)
runs through ``nnunetv2``'s predictor; all folds present are ensembled (averaged).
Such a folder is recognised (and its card made) by :func:`.models.nnunet_info`.
"""

import numpy as np
import SimpleITK as sitk

from ..errors import Cancelled
from .models import ModelError

INSTALL_HINT = ("nnU-Net models need the optional package nnunetv2: pip install 'nnunetv2>=2.4' "
                "(in Slicer: slicer.util.pip_install('nnunetv2'))")


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
