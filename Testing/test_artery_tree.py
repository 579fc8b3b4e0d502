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
