"""Make a tiny nnU-Net v2 results folder with nnU-Net's own fingerprint and planner.

    python nnunet_tiny.py ROOT [N_FOLDS]

Two small synthetic cases at 2 mm, nnU-Net's default 3d_fullres plans, a network built by
nnUNetTrainer with random weights, saved as fold_0 .. fold_{N-1}/checkpoint_final.pth.
Prints the results folder.  Run in a subprocess: nnU-Net reads its paths at import.
"""

import json
import os
import sys


def main():
    root = sys.argv[1]
    n_folds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[k] = os.path.join(root, k)
        os.makedirs(os.environ[k], exist_ok=True)
    import numpy as np
    import SimpleITK as sitk
    import torch

    ds = os.path.join(os.environ["nnUNet_raw"], "Dataset999_Tiny")
    os.makedirs(ds + "/imagesTr")
    os.makedirs(ds + "/labelsTr")
    rng = np.random.default_rng(0)
    for i in range(2):
        a = rng.normal(0, 20, (24, 32, 32)).astype(np.float32) - 100
        lab = np.zeros(a.shape, np.uint8)
        lab[8:16, 10:20, 10:20] = 1
        a[lab > 0] += 400
        img = sitk.GetImageFromArray(a)
        img.SetSpacing((2.0, 2.0, 2.0))
        sitk.WriteImage(img, f"{ds}/imagesTr/c{i}_0000.nii.gz")
        limg = sitk.GetImageFromArray(lab)
        limg.CopyInformation(img)
        sitk.WriteImage(limg, f"{ds}/labelsTr/c{i}.nii.gz")
    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "artery": 1},
               "numTraining": 2, "file_ending": ".nii.gz", "name": "Tiny"}
    with open(ds + "/dataset.json", "w") as f:
        json.dump(dataset, f)

    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    extract_fingerprints([999], num_processes=1, check_dataset_integrity=False, clean=True, verbose=False)
    plan_experiments([999])
    with open(os.path.join(os.environ["nnUNet_preprocessed"], "Dataset999_Tiny", "nnUNetPlans.json")) as f:
        plans = json.load(f)
    pm = PlansManager(plans)
    net = nnUNetTrainer.build_network_architecture(pm, pm.get_configuration("3d_fullres"), 1, 2,
                                                   enable_deep_supervision=False)
    out = os.path.join(os.environ["nnUNet_results"], "Dataset999_Tiny",
                       "nnUNetTrainer__nnUNetPlans__3d_fullres")
    os.makedirs(out, exist_ok=True)
    for name, obj in (("plans.json", plans), ("dataset.json", dataset)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f)
    for fold in range(n_folds):
        os.makedirs(out + f"/fold_{fold}", exist_ok=True)
        torch.manual_seed(fold)
        for prm in net.parameters():
            torch.nn.init.normal_(prm, 0, 0.05)
        torch.save({"network_weights": net.state_dict(), "init_args": {"configuration": "3d_fullres"},
                    "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)},
                   out + f"/fold_{fold}/checkpoint_final.pth")
    print(out)


if __name__ == "__main__":
    main()
