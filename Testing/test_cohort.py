"""Cohort processing: outputs a reviewer opens, resumable, parallel, sharded, failure-safe."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from CalciumScoringLib.cohort.cli import main
from CalciumScoringLib.cohort.runner import Case, Options, discover, process_case, run_cohort
from CalciumScoringLib.phantoms.generator import make_phantom
from conftest import write_phantom_cases


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file()}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    rows = write_phantom_cases(d, [60, 61, 62], (1.6, 1.6, 2.0))
    rows.append({"case_id": "broken", "ct": "missing.nii.gz", "groups": "case0_groups.nrrd"})
    pd.DataFrame(rows).to_csv(d / "cases.csv", index=False)
    return d


def test_cohort_outputs_resume_and_failures(cohort_dir, tmp_path, capsys):
    before = digest(cohort_dir)
    out = tmp_path / "out"
    code = main(["run", str(cohort_dir / "cases.csv"), str(out)])
    assert code == 1  # one case failed and the exit code says so
    assert digest(cohort_dir) == before  # nothing in INPUT was written to
    for i in range(3):
        f = out / f"case{i}"
        for name in ("arteries.seg.nrrd", "arteries_full.seg.nrrd", "calcifications.seg.nrrd",
                     "arteries.nii.gz", "calcifications.nii.gz", "scores.csv", "scores.json",
                     "report.png", "scene.mrb", "shortening_report.csv"):
            assert (f / name).stat().st_size > 0, name
        rec = json.loads((f / "scores.json").read_text())
        assert rec["provenance"]["case_id"] == f"case{i}"
        assert rec["provenance"]["calcification"]["method"] == "lumen_relative"
    err = json.loads((out / "broken.error.json").read_text())
    assert "does not exist" in err["error"]
    assert list(pd.read_csv(out / "errors.csv").case_id) == ["broken"]
    combined = pd.read_csv(out / "cohort_scores.csv")
    assert sorted(combined.case_id.unique()) == ["case0", "case1", "case2"]
    assert len(combined) == 3 * 11
    one = pd.read_csv(out / "case1" / "scores.csv")
    pd.testing.assert_frame_equal(combined[combined.case_id == "case1"].reset_index(drop=True), one)
    # the .seg.nrrd opens with names and colours (Slicer's segmentation NRRD header)
    img = sitk.ReadImage(str(out / "case0" / "arteries.seg.nrrd"))
    names = {img.GetMetaData(k) for k in img.GetMetaDataKeys() if k.endswith("_Name")}
    assert {"aorta", "iliac arteries", "mesenteric arteries", "renal arteries"} <= names
    # resumable: a second run skips finished cases and leaves them untouched
    stamp = (out / "case0" / "scores.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", str(cohort_dir / "cases.csv"), str(out)]) == 1
    assert "skipped" in capsys.readouterr().out
    assert (out / "case0" / "scores.json").stat().st_mtime_ns == stamp


def test_interrupted_case_is_not_taken_as_finished(cohort_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tmp-case0-123").mkdir()  # left by a killed worker
    (out / "case0").mkdir()  # a folder without scores.json is not finished
    res = process_case(Case("case0", str(cohort_dir / "case0.nii.gz"),
                            str(cohort_dir / "case0_groups.nrrd")), out, Options(scene=False))
    assert res["status"] == "ok"
    assert (out / "case0" / "scores.json").exists()
    import os

    assert not any(p.name.startswith(f".tmp-case0-{os.getpid()}") for p in out.iterdir())


def test_two_workers_and_shards_give_the_same_scores(cohort_dir, tmp_path):
    cases = [c for c in discover(cohort_dir / "cases.csv") if c.case_id != "broken"]
    o = Options(scene=False)
    run_cohort(cases, tmp_path / "w1", o, workers=1, log=lambda m: None)
    run_cohort(cases, tmp_path / "w2", o, workers=2, log=lambda m: None)
    a = pd.read_csv(tmp_path / "w1" / "cohort_scores.csv").sort_values(["case_id", "region"])
    b = pd.read_csv(tmp_path / "w2" / "cohort_scores.csv").sort_values(["case_id", "region"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    for i in range(2):
        run_cohort(cases, tmp_path / "sh", o, shard=(i, 2), log=lambda m: None)
    parts = pd.concat([pd.read_csv(tmp_path / "sh" / f"cohort_scores.shard{i}of2.csv")
                       for i in range(2)]).sort_values(["case_id", "region"])
    # a shard whose cases carry no QC flag reads its empty flag column as NaN, not text
    pd.testing.assert_frame_equal(parts.reset_index(drop=True), a.reset_index(drop=True),
                                  check_dtype=False)


def test_bad_inputs_become_case_errors(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    mr = sitk.GetImageFromArray((np.random.default_rng(0).random((20, 40, 40)) * 800).astype(np.int16))
    sitk.WriteImage(mr, str(d / "mr.nii.gz"))
    lab = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 5, (20, 40, 40)).astype(np.uint8))
    sitk.WriteImage(lab, str(d / "labels.nii.gz"))
    flat = sitk.GetImageFromArray(np.zeros((1, 40, 40), np.int16) - 1000)
    sitk.WriteImage(flat, str(d / "flat.nii.gz"))
    cases = discover(d)
    assert sorted(c.case_id for c in cases) == ["flat", "labels", "mr"]
    res = {s["case_id"]: s for s in run_cohort(cases, tmp_path / "out", Options(scene=False),
                                               log=lambda m: None)}
    assert "not CT Hounsfield" in res["mr"]["error"]
    assert "label map" in res["labels"]["error"]
    assert "2D" in res["flat"]["error"]
    ph = make_phantom(61, spacing=(1.6, 1.6, 2.0), fov="vessels")
    sitk.WriteImage(ph.ct, str(d / "nogroups.nii.gz"))
    s = process_case(Case("nogroups", str(d / "nogroups.nii.gz")), tmp_path / "out",
                     Options(groups_model=None))
    assert s["status"] == "failed" and "no artery source" in s["error"]


def test_export_reviewed_cases_as_nnunet_datasets(cohort_dir, tmp_path):
    from CalciumScoringLib.scene.headless import Harness
    from CalciumScoringLib.cohort.export_nnunet import export_nnunet

    cases = [c for c in discover(cohort_dir / "cases.csv") if c.case_id in ("case0", "case1")]
    out = tmp_path / "out"
    run_cohort(cases, out, Options(), log=lambda m: None)
    # the reviewer erases the renal arteries of case0 in Slicer and saves the segmentation
    import slicer

    h = Harness()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(h.scene)
    seg = logic.LoadSegmentationFromFile(str(out / "case0" / "arteries_full.seg.nrrd"), False)
    seg.GetSegmentation().RemoveSegment("renal")
    storage = seg.CreateDefaultStorageNode()
    storage.SetFileName(str(out / "case0" / "arteries_full.seg.nrrd"))
    assert storage.WriteData(seg)
    h.close()
    ds_a, ds_b = export_nnunet(out, tmp_path / "nnunet_raw", dataset_id=510, log=lambda m: None)
    assert ds_a.name == "Dataset510_VascularCalciumArteriesCalcium"
    assert ds_b.name == "Dataset511_VascularCalciumArteryGroups"
    meta = json.loads((ds_b / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["labels"]["renal"] == 4
    assert json.loads((ds_a / "dataset.json").read_text())["labels"]["calcification"] == 2
    g0 = sitk.GetArrayFromImage(sitk.ReadImage(str(ds_b / "labelsTr" / "case0.nii.gz")))
    g1 = sitk.GetArrayFromImage(sitk.ReadImage(str(ds_b / "labelsTr" / "case1.nii.gz")))
    ref1 = sitk.GetArrayFromImage(sitk.ReadImage(str(cohort_dir / "case1_groups.nrrd")))
    np.testing.assert_array_equal(g1, ref1)  # the unedited case is exported exactly
    assert (g0 == 4).sum() == 0 and (g0 == 1).sum() > 0  # the correction is what gets exported
    a1 = sitk.GetArrayFromImage(sitk.ReadImage(str(ds_a / "labelsTr" / "case1.nii.gz")))
    calc = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case1" / "calcifications.nii.gz")))
    np.testing.assert_array_equal(a1 == 2, calc > 0)
    np.testing.assert_array_equal(a1 > 0, (ref1 > 0) | (calc > 0))
    img = sitk.ReadImage(str(ds_a / "imagesTr" / "case1_0000.nii.gz"))
    assert img.GetSize() == sitk.ReadImage(str(cohort_dir / "case1.nii.gz")).GetSize()
