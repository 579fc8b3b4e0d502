"""Export reviewed cases as nnU-Net v2 raw datasets, in the two label conventions.

Reads each finished case folder of a ``vascular-calcium run`` output (after the user
corrected ``arteries_full.seg.nrrd`` / ``calcifications.seg.nrrd`` in Slicer, if
they did) and writes two datasets under the target folder::

    Dataset<id>_<name>ArteriesCalcium/   imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz,
                                          dataset.json  (1 artery, 2 calcification)
    Dataset<id+1>_<name>ArteryGroups/    ... (1 aorta, 2 iliac, 3 mesenteric, 4 renal)

so users can train models on their corrected data (``nnUNetv2_plan_and_preprocess``,
``nnUNetv2_train``) and plug the results folders back in (:mod:`..segmentation.models`).
Segmentations are read through MRML, so any layout Slicer saves is understood.
"""

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..scene import nodes as mn
from ..scene.terms import GROUP_LABELS

LABELS_A = {"background": 0, "artery": 1, "calcification": 2}
LABELS_B = {"background": 0, "aorta": 1, "iliac": 2, "mesenteric": 3, "renal": 4}


def _load_segmentation(scene, path):
    import slicer

    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    node = logic.LoadSegmentationFromFile(str(path), False)
    if node is None:
        raise OSError(f"could not read the segmentation {path}")
    return node


def read_case_labels(case_dir, ct):
    """(groups, calcium) label images on ``ct``'s grid from a case folder's .seg.nrrd files."""
    from ..scene.groups import segment_groups
    from ..scene.headless import Harness

    h = Harness()
    try:
        vol = mn.volume_node_from_image(h.scene, ct, "ct")
        arteries = _load_segmentation(h.scene, Path(case_dir) / "arteries_full.seg.nrrd")
        to_value = {sid: GROUP_LABELS[g] for sid, g in segment_groups(arteries).items()}
        groups = mn.labelmap_from_segmentation(arteries, to_value, vol)
        calc_node = _load_segmentation(h.scene, Path(case_dir) / "calcifications.seg.nrrd")
        seg = calc_node.GetSegmentation()
        ids = {seg.GetNthSegmentID(i): 1 for i in range(seg.GetNumberOfSegments())}
        calcium = mn.labelmap_from_segmentation(calc_node, ids, vol)
        return groups, calcium
    finally:
        h.close()


def export_nnunet(run_dir, target, dataset_id=501, name="VascularCalcium", log=print):
    """Write the two datasets from every finished case of ``run_dir``; returns their paths."""
    run_dir, target = Path(run_dir), Path(target)
    cases = sorted(p for p in run_dir.iterdir() if (p / "scores.json").exists()
                   and (p / "arteries_full.seg.nrrd").exists())
    if not cases:
        raise ValueError(f"{run_dir} holds no finished case with .seg.nrrd files (run without "
                         "--no-scene first)")
    ds_a = target / f"Dataset{dataset_id:03d}_{name}ArteriesCalcium"
    ds_b = target / f"Dataset{dataset_id + 1:03d}_{name}ArteryGroups"
    for ds in (ds_a, ds_b):
        (ds / "imagesTr").mkdir(parents=True, exist_ok=True)
        (ds / "labelsTr").mkdir(parents=True, exist_ok=True)
    n = 0
    for case_dir in cases:
        rec = json.loads((case_dir / "scores.json").read_text())
        src = rec["provenance"]["input"]
        from .runner import read_ct

        ct = read_ct(src)
        groups, calcium = read_case_labels(case_dir, ct)
        g = sitk.GetArrayViewFromImage(groups)
        c = sitk.GetArrayViewFromImage(calcium) > 0
        a = (g > 0).astype(np.uint8)
        a[c] = 2
        lab_a = sitk.GetImageFromArray(a)
        lab_a.CopyInformation(ct)
        cid = case_dir.name
        for ds, lab in ((ds_a, lab_a), (ds_b, sitk.Cast(groups, sitk.sitkUInt8))):
            sitk.WriteImage(ct, str(ds / "imagesTr" / f"{cid}_0000.nii.gz"))
            sitk.WriteImage(lab, str(ds / "labelsTr" / f"{cid}.nii.gz"))
        n += 1
        log(f"exported {cid}")
    for ds, labels in ((ds_a, LABELS_A), (ds_b, LABELS_B)):
        (ds / "dataset.json").write_text(json.dumps(
            {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": n,
             "file_ending": ".nii.gz", "name": ds.name,
             "description": "exported by vascular-calcium from reviewed cases"}, indent=2))
    return ds_a, ds_b
