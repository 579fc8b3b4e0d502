"""nnU-Net v2 results folders run end to end through the engine (nnunetv2 installed)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("nnunetv2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    r = subprocess.run([sys.executable, str(Path(__file__).parent / "nnunet_tiny.py"), str(root), "2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return root, Path(r.stdout.strip().splitlines()[-1])


def test_nnunet_folder_is_listed_and_runs_with_all_folds(tiny):
    from CalciumScoringLib.segmentation.engine import segment
    from CalciumScoringLib.segmentation.models import find_model, list_models, register

    root, folder = tiny
    info = find_model(folder)
    assert info.kind == "nnunet" and info.labels == {"1": "artery"}
    assert info.card["folds"] == ["fold_0", "fold_1"]
    register(folder.parent)
    assert "Tiny" in {m.name for m in list_models()}
    ct = sitk.ReadImage(str(root / "nnUNet_raw" / "Dataset999_Tiny" / "imagesTr" / "c0_0000.nii.gz"))
    a = np.deg2rad(15)  # an oblique copy: labels must come back on the input's own grid
    obl = sitk.Image(ct)
    obl.SetDirection((np.cos(a), -np.sin(a), 0, np.sin(a), np.cos(a), 0, 0, 0, 1))
    stages = []
    lab = segment(obl, folder, progress=lambda f, s: stages.append(s))
    assert lab.GetSize() == obl.GetSize() and lab.GetDirection() == obl.GetDirection()
    assert set(np.unique(sitk.GetArrayFromImage(lab))) <= {0, 1}
    assert stages[-1] == "done"
    again = segment(obl, folder)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lab), sitk.GetArrayFromImage(again))
