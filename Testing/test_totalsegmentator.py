"""TotalSegmentator outputs as the artery source: its folder of masks, its multi-label file
(label table in the NIfTI header, or a class-map JSON), and a Slicer segmentation with its
segment names; each must give exactly the groups built from the same output by hand."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from CalciumScoringLib.segmentation.totalsegmentator import (STRUCTURES, groups_from_folder,
                                                             load_groups, read_label_table)


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def classes(shared_data):
    return {int(k): v for k, v in json.loads(
        (shared_data / "totalsegmentator_total_classes.json").read_text()).items()}


def _by_hand(ts_arr, classes):
    """Groups of a TotalSegmentator label array built by hand from its class names."""
    ids = {v: k for k, v in classes.items()}
    g = np.zeros(ts_arr.shape, np.uint8)
    g[np.isin(ts_arr, [ids["iliac_artery_left"], ids["iliac_artery_right"]])] = 2
    g[ts_arr == ids["aorta"]] = 1
    return g


def test_label_table_is_read_from_the_header(shared_data, classes):
    table = read_label_table(shared_data / "ts_abdomen_ct" / "totalsegmentator_total.nii.gz")
    assert table[52] == "aorta" and table[65] == "iliac_artery_left"
    assert {k: table[k] for k in classes if k in table} == {k: classes[k] for k in table}
    assert read_label_table(shared_data / "ts_dicom_series" / "totalsegmentator_total.nii.gz") is None


def test_multilabel_with_header_table_equals_hand_built(shared_data, classes):
    d = shared_data / "ts_abdomen_ct"
    ct = sitk.ReadImage(str(d / "ct.nii.gz"))
    res = load_groups(d / "totalsegmentator_total.nii.gz", ct)
    ts = sitk.GetArrayFromImage(sitk.ReadImage(str(d / "totalsegmentator_total.nii.gz")))
    hand = _by_hand(ts, classes)
    got = sitk.GetArrayFromImage(res.image)
    for v in (1, 2):
        assert hand[hand == v].size > 100 and _dice(got == v, hand == v) == 1.0
    assert np.array_equal(got, hand)  # veins, organs, bones ignored
    assert res.present == ["aorta", "iliac"] and res.missing == ["mesenteric", "renal"]
    assert res.provenance()["missing_groups"] == ["mesenteric", "renal"]


def test_multilabel_without_table_needs_the_class_map(shared_data, classes):
    from CalciumScoringLib.cohort.runner import read_ct

    d = shared_data / "ts_dicom_series"
    ct = read_ct(d / "dicom")
    path = d / "totalsegmentator_total.nii.gz"
    assert load_groups(path, ct) is None  # read as a plain 1-4 label map, as before
    res = load_groups(path, ct, shared_data / "totalsegmentator_total_classes.json")
    ts = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(path)), ct, sitk.Transform(),
                                              sitk.sitkNearestNeighbor, 0))
    hand = _by_hand(ts, classes)
    assert (hand == 1).sum() > 1000 and np.array_equal(sitk.GetArrayFromImage(res.image), hand)
    assert res.missing == ["mesenteric", "renal"]  # iliacs are classes of the map: present


def test_folder_of_masks_equals_hand_built(shared_data, classes, tmp_path):
    d = shared_data / "ts_abdomen_ct"
    img = sitk.ReadImage(str(d / "totalsegmentator_total.nii.gz"))
    ts = sitk.GetArrayFromImage(img)
    folder = tmp_path / "segmentations"
    folder.mkdir()
    for k, name in classes.items():  # as TotalSegmentator writes it: one file per structure
        if name in ("aorta", "iliac_artery_left", "iliac_artery_right", "iliac_vena_left",
                    "inferior_vena_cava", "kidney_left", "small_bowel", "adrenal_gland_left"):
            m = sitk.GetImageFromArray((ts == k).astype(np.uint8))
            m.CopyInformation(img)
            sitk.WriteImage(m, str(folder / f"{name}.nii.gz"))
    res = groups_from_folder(folder, sitk.ReadImage(str(d / "ct.nii.gz")))
    assert np.array_equal(sitk.GetArrayFromImage(res.image), _by_hand(ts, classes))
    assert set(res.structures) == {"aorta", "iliac_artery_left", "iliac_artery_right"}
    assert res.missing == ["mesenteric", "renal"]
    (folder / "aorta.nii.gz").unlink()
    with pytest.raises(ValueError, match="no aorta"):
        groups_from_folder(folder, None)


def test_cli_takes_a_totalsegmentator_folder_and_reports_missing_groups(shared_data, classes,
                                                                         tmp_path):
    from CalciumScoringLib.cohort.cli import main

    d = shared_data / "ts_abdomen_ct"
    img = sitk.ReadImage(str(d / "totalsegmentator_total.nii.gz"))
    ts = sitk.GetArrayFromImage(img)
    folder = tmp_path / "ts"
    folder.mkdir()
    for k, name in classes.items():
        if name in STRUCTURES or name in ("liver", "iliac_vena_right"):
            m = sitk.GetImageFromArray((ts == k).astype(np.uint8))
            m.CopyInformation(img)
            sitk.WriteImage(m, str(folder / f"{name}.nii.gz"))
    out = tmp_path / "out"
    assert main(["run", str(d / "ct.nii.gz"), str(out), "--groups", str(folder),
                 "--no-scene"]) == 0
    rec = json.loads((out / "ct" / "scores.json").read_text())
    codes = [f["code"] for f in rec["qc"]]
    assert "groups_missing" in codes and "arteries_implausible" not in codes
    # unenhanced, 3 mm voxels: the threshold's calcium is not trusted, so not valid
    assert rec["scores_valid"] is False
    assert set(rec["invalidated_by"]) == {"no_contrast", "calcium_not_reproducible"}
    assert rec["states"]["renal"]["state"] == "not labelled"
    assert rec["provenance"]["arteries"]["missing_groups"] == ["mesenteric", "renal"]
    rows = {r["region"]: r for r in rec["scores"]}
    assert rows["renal"]["artery_volume_mm3"] is None  # NaN in the table, null in JSON
    assert rows["aorta"]["artery_volume_mm3"] > 10000
    full = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "ct" / "arteries_full.nii.gz")))
    assert np.array_equal(full, _by_hand(ts, classes))


def test_slicer_segmentation_made_by_totalsegmentator(mrml, shared_data, classes):
    """Segments named as TotalSegmentator (and its Slicer extension) names them, with its
    terminology: the arteries are found, veins and organs ignored, the groups exact."""
    from CalciumScoringLib.scene import nodes as mn
    from CalciumScoringLib.scene.groups import read_group_segments, segment_groups

    d = shared_data / "ts_abdomen_ct"
    ct = sitk.ReadImage(str(d / "ct.nii.gz"))
    ts_img = sitk.ReadImage(str(d / "totalsegmentator_total.nii.gz"))
    ts = sitk.GetArrayFromImage(ts_img)
    vol = mn.volume_node_from_image(mrml.scene, ct, "CT")
    seg = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CT TotalSegmentator")
    seg.CreateDefaultDisplayNodes()
    seg.SetReferenceImageGeometryParameterFromVolumeNode(vol)
    codes = {"aorta": "15825003^Aorta", "iliac_artery_left": "73634005^Common iliac artery",
             "iliac_artery_right": "73634005^Common iliac artery",
             "iliac_vena_left": "46027005^Common iliac vein", "small_bowel": "30315005^Small Intestine"}
    present = [k for k in np.unique(ts) if k]
    for k in present:
        name = classes[int(k)]
        code, meaning = codes.get(name, "85756007^Tissue").split("^")
        term = type("T", (), {"key": name, "name": name, "color": (0.5, 0.5, 0.5),
                              "terminology": "Segmentation category and type - DICOM master list~"
                              f"SCT^123037004^Anatomical Structure~SCT^{code}^{meaning}~^^~"
                              "Anatomic codes - DICOM master list~^^~^^"})()
        mn.add_segment(seg, term, ts == k, vol, segment_id=name)
    mapped = segment_groups(seg)
    assert mapped == {"aorta": "aorta", "iliac_artery_left": "iliac", "iliac_artery_right": "iliac"}
    got = sitk.GetArrayFromImage(read_group_segments(seg, vol).image)
    assert np.array_equal(got, _by_hand(ts, classes))
    # the Slicer extension's display names: "Left common iliac artery", "Aorta", ...
    for sid, new in (("aorta", "Aorta"), ("iliac_artery_left", "Left common iliac artery"),
                     ("iliac_vena_left", "Left common iliac vein"),
                     ("small_bowel", "Small intestine")):
        seg.GetSegmentation().GetSegment(sid).SetName(new)
    assert set(segment_groups(seg).values()) == {"aorta", "iliac"}
    assert "iliac_vena_left" not in segment_groups(seg)
