"""The console command: demo and run write the documented files with the right numbers."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from CalciumScoringLib.cohort.cli import main


def test_demo_writes_outputs(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--seed", "2", "--spacing", "1.6", "1.6", "2.0"]) == 0
    case = out / "phantom2"
    for name in ("arteries.nii.gz", "arteries_full.nii.gz", "calcifications.nii.gz",
                 "arteries.seg.nrrd", "calcifications.seg.nrrd", "scene.mrb",
                 "shortening_report.csv", "scores.csv", "scores.json", "report.png"):
        assert (case / name).stat().st_size > 0, name
    ref = sitk.ReadImage(str(out / "input" / "artery_groups_reference.nii.gz"))
    short = sitk.ReadImage(str(case / "arteries.nii.gz"))
    vv = np.prod(ref.GetSpacing())
    a, b = sitk.GetArrayFromImage(ref), sitk.GetArrayFromImage(short)
    for i in (1, 2, 3, 4):
        assert 0 < (b == i).sum() < (a == i).sum()
    rec = json.loads((case / "scores.json").read_text())
    prov = rec["provenance"]
    assert prov["shortening"]["stump_length_mm"] == 25
    assert prov["calcification"]["method"] == "lumen_relative"
    assert prov["calcification"]["metal_excluded_mm3"] == 0 and "metal_not_calcium" not in str(rec)
    scores = pd.read_csv(case / "scores.csv").set_index("region")
    calc = sitk.GetArrayFromImage(sitk.ReadImage(str(case / "calcifications.nii.gz"))) > 0
    for i, g in enumerate(("aorta", "iliac", "mesenteric", "renal"), start=1):
        assert scores.loc[g, "artery_volume_mm3"] == pytest.approx((b == i).sum() * vv)
        assert scores.loc[g, "calcium_volume_mm3"] == pytest.approx((calc & (b == i)).sum() * vv)
    assert len(rec["scores"]) == len(scores) and prov["version"]


def test_run_on_files_leaves_inputs_untouched(tmp_path):
    from CalciumScoringLib.phantoms.generator import make_phantom

    ph = make_phantom(4, spacing=(1.5, 1.5, 2.0), fov="vessels")
    ct, groups = tmp_path / "ct.nii.gz", tmp_path / "groups.nrrd"
    sitk.WriteImage(ph.ct, str(ct))
    sitk.WriteImage(ph.groups, str(groups))
    before = (ct.read_bytes(), groups.read_bytes())
    cmd = [sys.executable, "-m", "CalciumScoringLib.cohort.cli", "run"]
    r = subprocess.run(cmd + [str(ct), str(tmp_path / "out"), "--groups", str(groups),
                              "--stump-length", "35", "--no-scene"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (ct.read_bytes(), groups.read_bytes()) == before
    rep = pd.read_csv(tmp_path / "out" / "ct" / "shortening_report.csv")
    assert len(rep) >= 5
    rec = json.loads((tmp_path / "out" / "ct" / "scores.json").read_text())
    assert rec["provenance"]["shortening"]["stump_length_mm"] == 35
    r = subprocess.run(cmd + [str(ct), str(tmp_path / "out2"), "--groups-model", "none"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no artery source" in r.stdout
    r = subprocess.run(cmd + [str(tmp_path / "missing.nii.gz"), str(tmp_path / "o3")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "does not exist" in r.stderr
    r = subprocess.run(cmd + [str(ct), str(tmp_path / "o4"), "--shard", "3/2"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--shard takes i/N" in r.stderr
