"""Side branches re-decided by a second network near the aorta (segmentation/branches.py)."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from CalciumScoringLib.segmentation import models
from CalciumScoringLib.segmentation.branches import branch_box, merge_branches
from CalciumScoringLib.segmentation.engine import segment
from CalciumScoringLib.segmentation.networks import Voxelwise

GROUPS = {"1": "aorta", "2": "iliac", "3": "mesenteric", "4": "renal"}


def test_merge_keeps_the_trunk_and_only_side_pieces_attached_to_it():
    g = np.zeros((20, 20, 40), np.uint8)
    g[:, 8:12, 8:12] = 1  # aorta
    g[2:4, 9:11, 12:16] = 3  # the first network's mesenteric piece: replaced inside the box
    g[:, 9:11, 36:39] = 3  # a side piece outside the box: kept as it is
    b = np.zeros_like(g)
    b[5:7, 9:11, 12:20] = 4  # attached to the aorta
    b[10:12, 9:11, 4:8] = 3  # attached on the other side
    b[15:17, 2:4, 20:24] = 4  # floating: not a branch
    b[:, 8:12, 8:12] = 4  # the branch network's label on the aorta: ignored
    box = (slice(0, 20), slice(0, 20), slice(0, 30))
    out = merge_branches(g, b, box)
    want = np.zeros_like(g)
    want[:, 8:12, 8:12] = 1
    want[5:7, 9:11, 12:20] = 4
    want[10:12, 9:11, 4:8] = 3
    want[:, 9:11, 36:39] = 3
    np.testing.assert_array_equal(out, want)
    assert g[2, 9, 12] == 3  # the input is not modified


def test_keep_first_keeps_the_first_networks_side_labels_where_the_branch_network_has_none():
    g = np.zeros((20, 20, 40), np.uint8)
    g[:, 8:12, 8:12] = 1  # aorta
    g[2:4, 9:11, 12:16] = 3  # found by the first network only: kept
    g[5:7, 9:11, 12:14] = 3  # both label it, differently: the branch network wins
    g[12:14, 9:11, 12:16] = 4  # renal of the first network only: not in keep_first, dropped
    b = np.zeros_like(g)
    b[5:7, 9:11, 12:20] = 4
    box = (slice(0, 20), slice(0, 20), slice(0, 30))
    out = merge_branches(g, b, box, keep_first=(3,))
    want = np.zeros_like(g)
    want[:, 8:12, 8:12] = 1
    want[2:4, 9:11, 12:16] = 3
    want[5:7, 9:11, 12:20] = 4
    np.testing.assert_array_equal(out, want)
    assert (merge_branches(g, b, box)[2:4, 9:11, 12:16] == 0).all()  # without it: replaced


def test_box_is_the_aorta_plus_the_band_in_millimetres():
    a = np.zeros((30, 40, 50), np.uint8)
    a[10:20, 15:25, 20:30] = 1
    a[0:2, 0:2, 0:2] = 4  # only the aorta counts
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((0.5, 1.0, 2.0))  # x, y, z
    box = branch_box(img, 4.0)
    assert box == (slice(8, 22), slice(11, 29), slice(12, 38))
    assert branch_box(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), 4.0) is None


def _voxelwise(folder, hu, label, postprocessing=None):
    """A 5-class voxel-wise model whose ``label`` is exactly HU > ``hu``."""
    net = Voxelwise(1, 5)
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.bias.fill_(-100.0)
        net.conv.bias[0] = 0.0
        net.conv.weight[label, 0] = 10.0
        net.conv.bias[label] = -hu / 10.0
    card = {"name": folder.name, "version": "0.0.1", "labels": GROUPS, "spacing_mm": [1.0] * 3,
            "normalization": {"type": "ct", "clip": [-1024, 3071], "mean": 0.0, "std": 100.0},
            "patch_size": [16, 16, 16], "architecture": {"name": "voxelwise", "params": {"num_classes": 5}},
            "license": "Apache-2.0", "intended_use": "tests only", "training": {}, "metrics": {},
            "postprocessing": postprocessing or {}}
    return models.save_model(folder, net.state_dict(), card)


@pytest.fixture
def tube_ct():
    """An aorta at 400 HU, a renal artery at 300 HU leaving it, a 300 HU blob near the aorta
    but not touching it, and one 300 HU blob far from it, in 0 HU."""
    a = np.zeros((40, 40, 80), np.int16)
    a[:, 16:24, 16:24] = 400
    a[18:21, 19:21, 24:34] = 300  # the branch
    a[30:33, 5:8, 28:31] = 300  # near, detached
    a[18:21, 19:21, 70:74] = 300  # 46 mm from the aorta
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((1.0, 1.0, 1.0))
    return img


def test_engine_runs_the_named_branch_network_near_the_aorta(tmp_path, tube_ct):
    branch = _voxelwise(tmp_path / "branch", 250.0, 4)
    first = _voxelwise(tmp_path / "first", 350.0, 1,
                       {"branches": {"model": str(branch), "band_mm": 20.0}})
    lab = sitk.GetArrayFromImage(segment(tube_ct, first))
    want = np.zeros(lab.shape, np.uint8)
    want[:, 16:24, 16:24] = 1
    want[18:21, 19:21, 24:34] = 4
    np.testing.assert_array_equal(lab, want)
    plain = sitk.GetArrayFromImage(segment(tube_ct, _voxelwise(tmp_path / "plain", 350.0, 1)))
    assert not (plain == 4).any() and (plain == 1).sum() == (want == 1).sum()
    prov = models.provenance(models.find_model(first))
    assert prov["branches"]["model"] == "branch" and prov["branches"]["band_mm"] == 20.0
    assert prov["branches"]["sha256"] == models.read_card(branch)["sha256"]


def test_card_with_a_bad_branch_spec_is_refused(tmp_path):
    folder = _voxelwise(tmp_path / "bad", 350.0, 1, {"branches": {"model": 3}})
    with pytest.raises(models.ModelError, match="branches must be"):
        models.read_card(folder)
    for keep in (True, [7], ["3"]):  # keep_first: a list of the card's labels
        folder = _voxelwise(tmp_path / f"keep{keep!s:.4}", 350.0, 1,
                            {"branches": {"model": "x", "keep_first": keep}})
        with pytest.raises(models.ModelError, match="keep_first"):
            models.read_card(folder)
    ok = _voxelwise(tmp_path / "ok", 350.0, 1, {"branches": {"model": "x", "keep_first": [3]}})
    assert models.read_card(ok)["postprocessing"]["branches"]["keep_first"] == [3]


def _branch_scene(lumen_hu=300, tissue_hu=40):
    """A 0.5 mm CT: an aorta (radius 8 mm) and a renal artery (radius 2 mm) leaving it
    along x, at ``lumen_hu`` in ``tissue_hu``, with a 700 HU plaque on the renal wall; the
    labels mark the aorta exactly and the renal artery 2 mm too wide all round (as a
    coarse grid resamples it), with a stray piece attached to it only through that rim."""
    z, y, x = np.ogrid[:60, :80, :120]
    sp = 0.5
    aorta = ((y - 40) * sp) ** 2 + ((x - 30) * sp) ** 2 <= 8 ** 2
    aorta = np.broadcast_to(aorta, (60, 80, 120))
    dist = np.sqrt(((z - 30) * sp) ** 2 + ((y - 40) * sp) ** 2) + 0 * x
    renal = (dist <= 2.0) & (x >= 30)
    hu = np.full((60, 80, 120), tissue_hu, np.int16)
    hu[aorta | renal] = lumen_hu
    hu[30, 44:46, 80:84] = 700  # plaque at the lumen edge
    hu[30, 46:48, 60:64] = 900  # plaque in the wall, 1-2 mm out: outside the label there
    hu[30, 51:53, 100:104] = 900  # bright, 3.5-4.5 mm from the lumen: not this artery's
    lab = np.zeros(hu.shape, np.uint8)
    lab[(dist <= 4.0) & (x >= 30)] = 4
    lab[(dist > 2.5) & (x >= 58) & (x < 66)] = 0
    lab[22:25, 40:42, 90:96] = 4  # stray: touches the rim (dist 3-4 mm), not the lumen
    lab[aorta] = 1
    return hu, lab, renal & ~aorta, (sp, sp, sp)


def test_trim_to_lumen_cuts_a_wide_branch_label_to_the_lumen_and_keeps_calcium():
    from CalciumScoringLib.segmentation.branches import drop_unattached
    from CalciumScoringLib.segmentation.lumen import trim_to_lumen

    hu, lab, renal, sp = _branch_scene()
    before = 2 * ((lab == 4) & renal).sum() / ((lab == 4).sum() + renal.sum())
    out, info = trim_to_lumen(lab, hu, sp, (3, 4))
    drop_unattached(out)
    got = out == 4
    dice = 2 * (got & renal).sum() / (got.sum() + renal.sum())
    assert before < 0.45 and dice > 0.9, (before, dice)
    assert info["threshold_hu"] == pytest.approx(170, abs=1)
    assert (out[30, 44:46, 80:84] == 4).all()  # the plaque stays in the artery
    assert (out[30, 46:48, 60:64] == 4).all() and info["calcium_voxels"] == 8  # wall calcium joins
    assert not out[30, 51:53, 100:104].any()
    assert not got[22:25, 40:42, 90:96].any()  # the stray piece lost its bridge
    np.testing.assert_array_equal(out == 1, lab == 1)  # the aorta is not touched
    assert (lab[22:25, 40:42, 90:96] == 4).all()  # nor is the input


def test_trim_to_lumen_changes_nothing_without_contrast_or_outside_its_box():
    from CalciumScoringLib.segmentation.lumen import trim_to_lumen

    hu, lab, _, sp = _branch_scene(lumen_hu=70)
    out, info = trim_to_lumen(lab, hu, sp, (3, 4))
    assert "skipped" in info and "HU above the surroundings" in info["skipped"]
    np.testing.assert_array_equal(out, lab)
    hu, lab, _, sp = _branch_scene()
    out, info = trim_to_lumen(lab, hu, sp, (3, 4), box=(slice(0, 60), slice(0, 80), slice(0, 60)))
    np.testing.assert_array_equal(out[:, :, 60:], lab[:, :, 60:])
    assert info["removed_voxels"] > 0 and (out[:, :, :60] != lab[:, :, :60]).any()


def test_engine_trims_the_branch_network_labels_where_the_card_asks(tmp_path, tube_ct):
    branch = _voxelwise(tmp_path / "branch", -50.0, 4)  # renal wherever HU > -50: far too wide
    spec = {"model": str(branch), "band_mm": 20.0}
    wide = _voxelwise(tmp_path / "wide", 350.0, 1, {"branches": spec})
    trim = _voxelwise(tmp_path / "trim", 350.0, 1, {"branches": dict(spec, trim_to_lumen=True)})
    a = sitk.GetArrayFromImage(segment(tube_ct, wide))
    b = sitk.GetArrayFromImage(segment(tube_ct, trim))
    want = np.zeros(a.shape, np.uint8)
    want[:, 16:24, 16:24] = 1
    want[18:21, 19:21, 24:34] = 4  # the lumen; the detached blob loses its bridge
    np.testing.assert_array_equal(b, want)
    assert (a == 4).sum() > 10 * (want == 4).sum()  # untrimmed: the whole box
    assert models.provenance(models.find_model(trim))["branches"]["trim_to_lumen"] is True


def test_side_pieces_that_hug_the_aorta_are_its_wall():
    from CalciumScoringLib.segmentation.branches import wall_pieces_to_aorta

    z, y, x = np.ogrid[:40, :60, :80]
    sp = (1.0, 0.5, 0.5)  # z, y, x
    lab = np.zeros((40, 60, 80), np.uint8)
    lab[np.broadcast_to(((y - 30) * 0.5) ** 2 + ((x - 30) * 0.5) ** 2 <= 36, lab.shape)] = 1  # r 6 mm
    lab[10:14, 28:32, 42:50] = 3  # plaque on the wall: 0-4 mm out
    lab[20:22, 28:32, 42:76] = 4  # a renal artery: 17 mm out
    lab[30:32, 9:13, 28:32] = 4  # 3-5 mm out on the other side: wall at 5 mm
    inp = lab.copy()
    out, moved = wall_pieces_to_aorta(lab, sp, 5.0)
    assert out is lab and moved == 4 * 4 * 8 + 2 * 4 * 4
    assert (lab[10:14, 28:32, 42:50] == 1).all() and (lab[30:32, 9:13, 28:32] == 1).all()
    np.testing.assert_array_equal(lab[20:22, 28:32, 42:76], inp[20:22, 28:32, 42:76])
    lab = inp.copy()
    assert wall_pieces_to_aorta(lab, sp, 3.0)[1] == 0  # at 3 mm both pieces reach beyond the wall
    lab[lab == 1] = 0
    assert wall_pieces_to_aorta(lab, sp, 5.0)[1] == 0  # no aorta: nothing to give to


def test_engine_gives_wall_pieces_to_the_aorta_where_the_card_asks(tmp_path, tube_ct):
    a = sitk.GetArrayFromImage(tube_ct)
    a[5:7, 14:16, 18:22] = 300  # a 2 mm plaque on the aorta's wall
    ct = sitk.GetImageFromArray(a)
    ct.CopyInformation(tube_ct)
    branch = _voxelwise(tmp_path / "branch", 250.0, 4)
    spec = {"model": str(branch), "band_mm": 20.0}
    plain = _voxelwise(tmp_path / "plain", 350.0, 1, {"branches": spec})
    wall = _voxelwise(tmp_path / "wall", 350.0, 1, {"branches": dict(spec, wall_mm=3.0)})
    p = sitk.GetArrayFromImage(segment(ct, plain))
    w = sitk.GetArrayFromImage(segment(ct, wall))
    assert (p[5:7, 14:16, 18:22] == 4).all()  # the branch network calls the plaque renal
    assert (w[5:7, 14:16, 18:22] == 1).all()  # the rule gives it to the aorta
    assert (w[18:21, 19:21, 24:34] == 4).all()  # the real branch (10 mm long) stays
    np.testing.assert_array_equal(w[p != 4], p[p != 4])
    assert models.provenance(models.find_model(wall))["branches"]["wall_mm"] == 3.0
    bad = _voxelwise(tmp_path / "bad", 350.0, 1, {"branches": dict(spec, wall_mm=-1)})
    with pytest.raises(models.ModelError, match="wall_mm"):
        models.read_card(bad)
