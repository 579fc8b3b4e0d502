"""The rule that groups an expert artery tree by where each branch leaves the aorta
(training/artery_tree.py), checked on phantoms whose groups are known exactly: their
arteries merged into one mask must come back as aorta, iliac, mesenteric and renal."""

import sys

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import ROOT

sys.path.insert(0, str(ROOT / "training"))


@pytest.mark.parametrize("seed", [4, 7])
def test_grouping_recovers_the_phantom_groups(phantom_cache, seed):
    from artery_tree import group_expert

    ph = phantom_cache(seed, spacing=(1.0, 1.0, 1.5), fov="vessels")
    truth = sitk.GetArrayFromImage(ph.groups_as_shown())
    merged = sitk.Cast(ph.groups_as_shown() > 0, sitk.sitkUInt8)
    groups, records, _ = group_expert(merged, ph.ct)
    names = sorted(r["name"] for r in records if r["group"] != "none")
    assert "celiac trunk" in names and "SMA" in names
    assert "left renal" in names and "right renal" in names
    for v in (1, 3, 4):  # each group's voxels mostly come back as that group
        got = groups[truth == v]
        assert np.mean(got == v) > 0.8, (v, np.bincount(got, minlength=5))
    iliac = groups[truth == 2]
    assert np.mean(iliac == 2) > 0.6 or np.mean(iliac == 1) > 0.5  # the bifurcation's shape


def test_a_missing_aorta_is_a_clear_error():
    from artery_tree import group_expert

    img = sitk.Image([40, 40, 40], sitk.sitkUInt8)
    with pytest.raises(ValueError, match="no aorta"):
        group_expert(img, img)


def test_ircad_label_maps_give_real_groups(shared_data):
    """The IRCAD expert trees as the synthesis reads them: both renal arteries of patient
    13 (the left one leaves the aorta's back-left wall: not a lumbar artery) and the celiac
    trunk and SMA above them; branches above the SMA (phrenic, adrenal) get no group."""
    import synth_ircad
    from synth_geometry import AORTA, MES, RENAL

    path = shared_data / "ircad_label_maps" / "ircad13_labels.nii.gz"
    if not path.exists():
        pytest.skip("ircad13_labels.nii.gz not in ../shared/data")
    name, cls, _, _, records = synth_ircad.load_ircad(path)
    got = {r["name"]: r for r in records}
    assert {"left renal", "right renal", "celiac trunk", "SMA"} <= set(got)
    assert got["celiac trunk"]["ostium_lps"][2] > got["SMA"]["ostium_lps"][2] > \
        max(got["left renal"]["ostium_lps"][2], got["right renal"]["ostium_lps"][2]) - 5
    assert got["left renal"]["anterior_mm"] < 0  # back-left wall, still renal
    assert [r["group"] for r in records if r["name"] == "side branch above the SMA"] == ["none"] * 2
    assert (cls == AORTA).sum() and (cls == MES).sum() and (cls == RENAL).sum()
