#!/usr/bin/env python3
"""Time one fold of a default-size nnU-Net v2 3d_fullres network on a given CT (random weights).

    python scripts/nnunet_default_timing.py CT.nii.gz WORKDIR [--threads 2] [--windows 4 | --full]

nnU-Net's own fingerprint extraction and experiment planner make the default plans for
a one-case dataset of this CT, nnUNetTrainer builds the network they describe (random
weights are fine for timing), and nnUNetPredictor runs it (Gaussian sliding window, no
mirroring) as it would run a trained fold.  Prints the network size and the seconds.
Run as its own process: nnU-Net reads its folders from the environment at import.

By default the time is *measured in parts*: nnU-Net's preprocessing and its export
(resampling the logits back to the CT grid) are run and timed in full, and the sliding
window is timed on ``--windows`` of its windows (spread over the volume) and multiplied
by the number of windows nnU-Net plans for this volume.  Gaussian accumulation is not
counted, so the estimate is a lower bound of nnU-Net's time (our / nnU-Net ratio is then
pessimistic for us).  ``--full`` runs the whole predictor instead (about an hour on 2
cores for a 512x512x500 CT).
"""

import json
import os
import sys
import time


def main():
    ct_path, root = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[k] = os.path.join(root, k)
        os.makedirs(os.environ[k], exist_ok=True)
    import shutil

    import numpy as np
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(threads)
    ds = os.path.join(os.environ["nnUNet_raw"], "Dataset998_Timing")
    os.makedirs(ds + "/imagesTr", exist_ok=True)
    os.makedirs(ds + "/labelsTr", exist_ok=True)
    ct = sitk.ReadImage(ct_path)
    shutil.copy(ct_path, ds + "/imagesTr/case_0000.nii.gz") if ct_path.endswith(".nii.gz") else \
        sitk.WriteImage(ct, ds + "/imagesTr/case_0000.nii.gz")
    lab = sitk.Cast(ct > 150, sitk.sitkUInt8)  # any label: only the plans matter
    sitk.WriteImage(lab, ds + "/labelsTr/case.nii.gz")
    json.dump({"channel_names": {"0": "CT"}, "labels": {"background": 0, "artery": 1},
               "numTraining": 1, "file_ending": ".nii.gz", "name": "Timing"},
              open(ds + "/dataset.json", "w"))
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    extract_fingerprints([998], num_processes=1, check_dataset_integrity=False, clean=True, verbose=False)
    plan_experiments([998])
    plans = json.load(open(os.path.join(os.environ["nnUNet_preprocessed"], "Dataset998_Timing",
                                        "nnUNetPlans.json")))
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    net = nnUNetTrainer.build_network_architecture(pm, cm, 1, 2, enable_deep_supervision=False)
    out = os.path.join(os.environ["nnUNet_results"], "Dataset998_Timing",
                       "nnUNetTrainer__nnUNetPlans__3d_fullres")
    os.makedirs(out + "/fold_0", exist_ok=True)
    json.dump(plans, open(out + "/plans.json", "w"))
    shutil.copy(ds + "/dataset.json", out + "/dataset.json")
    torch.save({"network_weights": net.state_dict(), "init_args": {"configuration": "3d_fullres"},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)},
               out + "/fold_0/checkpoint_final.pth")
    nparams = sum(p.numel() for p in net.parameters())
    print(f"nnU-Net default 3d_fullres: patch {cm.patch_size}, spacing {cm.spacing}, "
          f"features {cm.network_arch_init_kwargs.get('features_per_stage')}, {nparams / 1e6:.1f} M "
          "parameters", flush=True)
    pred = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                           device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    pred.initialize_from_trained_model_folder(out, use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    arr = sitk.GetArrayFromImage(ct).astype(np.float32)[None]
    props = {"sitk_stuff": {"spacing": ct.GetSpacing(), "origin": ct.GetOrigin(),
                            "direction": ct.GetDirection()}, "spacing": list(ct.GetSpacing())[::-1]}
    if "--full" in sys.argv:
        t = time.perf_counter()
        pred.predict_single_npy_array(arr, props, None, None, False)
        print(f"NNUNET_SECONDS {time.perf_counter() - t:.1f}", flush=True)
        return
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
    from nnunetv2.inference.export_prediction import \
        convert_predicted_logits_to_segmentation_with_correct_shape

    k = int(sys.argv[sys.argv.index("--windows") + 1]) if "--windows" in sys.argv else 4
    t = time.perf_counter()
    dct = next(PreprocessAdapterFromNpy([arr], [None], [props], [None], pred.plans_manager,
                                        pred.dataset_json, pred.configuration_manager,
                                        num_threads_in_multithreaded=1))
    t_pre = time.perf_counter() - t
    data = dct["data"]
    padded, _ = pad_nd_image(data, pred.configuration_manager.patch_size, "constant", {"value": 0},
                             True, None)  # as nnU-Net does for volumes smaller than a window
    slicers = pred._internal_get_sliding_window_slicers(padded.shape[1:])
    pred.network.load_state_dict(pred.list_of_parameters[0])
    pred.network.eval()
    pick = [slicers[i] for i in np.linspace(0, len(slicers) - 1, k + 1).astype(int)]
    per = []
    with torch.inference_mode():
        for i, sl in enumerate(pick):  # the first window warms up and is not counted
            t = time.perf_counter()
            pred._internal_maybe_mirror_and_predict(padded[sl][None])
            if i:
                per.append(time.perf_counter() - t)
    t_win = float(np.median(per)) * len(slicers)
    logits = torch.zeros((2,) + tuple(data.shape[1:]))
    t = time.perf_counter()
    convert_predicted_logits_to_segmentation_with_correct_shape(
        logits, pred.plans_manager, pred.configuration_manager, pred.label_manager,
        dct["data_properties"], return_probabilities=False)
    t_exp = time.perf_counter() - t
    print(f"nnU-Net preprocessing {t_pre:.1f} s (measured), {len(slicers)} windows x "
          f"{np.median(per):.2f} s (median of {len(per)} measured) = {t_win:.1f} s, export "
          f"{t_exp:.1f} s (measured)", flush=True)
    print(f"NNUNET_SECONDS {t_pre + t_win + t_exp:.1f}", flush=True)

if __name__ == "__main__":
    main()
