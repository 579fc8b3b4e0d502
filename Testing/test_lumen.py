"""The aorta completed to the lumen edge the CT shows (segmentation.lumen, card
``grow_by_hu``): localise with the network, delineate with the HU."""

import json
import shutil

import numpy as np
import pytest

from CalciumScoringLib.segmentation.lumen import grow_by_hu
from CalciumScoringLib.segmentation.models import ModelError, bundled_model, read_card

SPACING = (0.8, 0.8, 2.0)  # x, y, z


def _scan(lumen_hu=300.0, vein=True):
    """A 20 mm aorta (label 1) in 40 HU tissue, a touching vein, a vertebra behind."""
    z, y, x = np.mgrid[:30, :100, :100]
    hu = np.full(z.shape, 40.0, np.float32)
    r = np.hypot((y - 50) * 0.8, (x - 50) * 0.8)
    aorta = r <= 10
    hu[aorta] = lumen_hu
    if vein:
        hu[np.hypot((y - 50) * 0.8, (x - 75) * 0.8) <= 10.5] = lumen_hu - 20  # touches it
    hu[np.hypot((y - 85) * 0.8, (x - 50) * 0.8) <= 12] = 700  # bone
    return hu, aorta


def test_a_partly_found_aorta_is_completed_and_the_vein_is_not_followed():
    hu, aorta = _scan()
    net = np.zeros(hu.shape, np.uint8)
    net[aorta] = 1
    core = np.hypot(*np.mgrid[:100, :100][::-1] - 50) <= 3  # slices 0-9: only a 5 mm core
    net[:10] = 0
    net[:10][:, core] = 1
    out, info = grow_by_hu(net, hu, SPACING, groups=[1], disc_scale=1.15)
    got = out == 1
    dice = 2 * (got & aorta).sum() / (got.sum() + aorta.sum())
    assert dice > 0.95, dice  # 0.967 (the vein's rim inside the disc); network alone 0.80
    assert np.all(out[net == 1] == 1)  # nothing the network found is removed
    # the vein: at most the rim the disc allows (radius 1.15 * 10 + 1 = 12.5 mm)
    vein_px = (got & ~aorta).sum(axis=(1, 2)).max() * 0.64
    assert vein_px < 40, vein_px
    assert not (got & (hu > 600)).any()
    assert info["threshold_hu"] == pytest.approx((300 + 40) / 2, abs=15)


def test_side_pieces_without_lumen_are_removed_and_walled_ones_kept():
    """need_lumen: a 'mesenteric' piece on soft tissue (the oesophagus a real scan's network
    called mesenteric) goes; a thin branch whose mask is mostly wall stays whole."""
    hu, aorta = _scan(vein=False)
    net = np.zeros(hu.shape, np.uint8)
    net[aorta] = 1
    z, y, x = np.mgrid[:30, :100, :100]
    d = np.hypot((y - 20) * 0.8, (x - 50) * 0.8)
    hu[d <= 2.5] = 300  # a 5 mm branch in front of the aorta...
    net[(d <= 5) & (z >= 5)] = 3  # ...its mask 10 mm wide: mostly wall and fat
    soft = np.hypot((y - 20) * 0.8, (x - 80) * 0.8) <= 6
    net[soft & (z < 20)] = 3  # soft tissue (40 HU) called mesenteric, apart from it
    out, info = grow_by_hu(net, hu, SPACING, groups=[1], disc_scale=1.15, need_lumen=[3])
    assert np.array_equal(out == 3, (net == 3) & ~soft)
    assert info["removed_voxels"] == int((soft & (z < 20)).sum())
    # on an unenhanced scan nothing is judged: the lumen cannot be told from tissue
    hu2, _ = _scan(lumen_hu=45.0, vein=False)
    out2, info2 = grow_by_hu(net, hu2, SPACING, groups=[1], need_lumen=[3])
    assert np.array_equal(out2, net) and "skipped" in info2


def test_an_unenhanced_scan_is_left_as_it_is():
    hu, aorta = _scan(lumen_hu=45.0, vein=False)
    net = np.zeros(hu.shape, np.uint8)
    net[:, 45:55, 45:55] = 1
    out, info = grow_by_hu(net, hu, SPACING, groups=[1], disc_scale=1.15)
    assert np.array_equal(out, net) and "skipped" in info


def test_the_card_rule_is_checked(tmp_path):
    info = bundled_model("artery-groups")
    if info is None:
        pytest.skip("bundled artery-groups not installed")
    d = tmp_path / "m"
    shutil.copytree(info.folder, d)
    card = json.loads((d / "model.json").read_text())
    assert card["postprocessing"]["grow_by_hu"]["reference"] == 1
    for bad in ({"reference": 9, "disc_scale": 1.15}, {"reference": 1, "need_lumen": [7]}):
        card["postprocessing"]["grow_by_hu"] = bad
        (d / "model.json").write_text(json.dumps(card))
        with pytest.raises(ModelError, match="grow_by_hu"):
            read_card(d)
