"""ArteryShortening on a real MRML scene: input untouched, new nodes, scene round trip."""

import numpy as np
import pytest
import SimpleITK as sitk

from ArteryShorteningLib import shorten_arteries
from ArteryShorteningLib.mrml_logic import ArteryShorteningMRMLLogic
from CalciumScoringLib.scene.groups import segment_groups
from CalciumScoringLib.scene import nodes as mn
from CalciumScoringLib.scene import terms as st

USER_NAMES = {1: "Abdominal aorta", 2: "Iliac arteries", 3: "celiac + SMA", 4: "Renal arteries"}


def _scene_with_groups(mrml, ph, names=None):
    vol = mn.volume_node_from_image(mrml.scene, ph.ct, "CTA")
    seg = mn.segmentation_node_from_labelmap(mrml.scene, ph.groups, st.group_segments(), vol,
                                             "arteries")
    if names:
        for value, term in st.group_segments():
            seg.GetSegmentation().GetSegment(term.key).SetName(names[value])
    return vol, seg


def test_process_segmentation_node(mrml, phantom_cache, tmp_path):
    ph = phantom_cache(3, (1.0, 1.0, 1.0), fov="vessels", accessory_renal=True, n_plaques=0)
    vol, seg = _scene_with_groups(mrml, ph, USER_NAMES)
    before = {sid: mn.segment_array(seg, sid, vol).copy() for sid in ("aorta", "renal")}
    out, table, res = ArteryShorteningMRMLLogic().process(seg, reference_volume=vol,
                                                          stump_length_mm=30.0)
    assert out is not seg and out.GetName() == "arteries shortened"
    for sid, arr in before.items():  # the input is untouched
        np.testing.assert_array_equal(mn.segment_array(seg, sid, vol), arr)
    expected = sitk.GetArrayFromImage(shorten_arteries(ph.groups, stump_length_mm=30.0).labelmap)
    for value, term in st.group_segments():
        s = out.GetSegmentation().GetSegment(term.key)
        assert s.GetName() == USER_NAMES[value]
        np.testing.assert_allclose(s.GetColor(), term.color, atol=1 / 255)
        np.testing.assert_array_equal(mn.segment_array(out, term.key, vol) > 0, expected == value)
    df = mn.dataframe_from_table_node(table)
    assert len(df) == len(res.branches) and set(df.group) == {"iliac", "mesenteric", "renal"}
    assert mn.get_provenance(out)["parameters"]["stump_length_mm"] == 30.0

    path = tmp_path / "s.mrb"
    assert mrml.scene.WriteToMRB(str(path))
    mrml.scene.Clear(0)
    assert mrml.scene.ReadFromMRB(str(path))
    out2 = mrml.scene.GetFirstNodeByName("arteries shortened")
    table2 = mrml.scene.GetFirstNodeByName("arteries shortening report")
    vol2 = mrml.scene.GetFirstNodeByName("CTA")
    np.testing.assert_array_equal(mn.segment_array(out2, "renal", vol2) > 0, expected == 4)
    assert len(mn.dataframe_from_table_node(table2)) == len(res.branches)
    assert mn.get_provenance(out2)["algorithm"] == "ArteryShortening"


def test_process_labelmap_node_and_in_place(mrml, phantom_cache):
    ph = phantom_cache(1, (1.0, 1.0, 1.0), fov="vessels", n_plaques=0)
    lm = mn.volume_node_from_image(mrml.scene, ph.groups, "groups", labelmap=True)
    import slicer

    original = np.array(slicer.util.arrayFromVolume(lm))
    out, table, res = ArteryShorteningMRMLLogic().process(lm)
    assert out is not lm
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(lm), original)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mn.image_from_volume_node(out)),
                                  sitk.GetArrayFromImage(res.labelmap))
    same, _, _ = ArteryShorteningMRMLLogic().process(lm, in_place=True)
    assert same is lm
    assert (slicer.util.arrayFromVolume(lm) > 0).sum() < (original > 0).sum()


def test_unmappable_segments_are_a_clear_error(mrml, phantom_cache):
    ph = phantom_cache(1, (1.0, 1.0, 1.0), fov="vessels", n_plaques=0)
    vol, seg = _scene_with_groups(mrml, ph, {1: "Segment_1", 2: "Segment_2", 3: "Segment_3",
                                              4: "Segment_4"})
    # the group tag and the terminology still identify the groups
    assert set(segment_groups(seg).values()) == {"aorta", "iliac", "mesenteric", "renal"}
    for i in range(4):
        seg.GetSegmentation().GetNthSegment(i).RemoveTag(mn.GROUP_TAG)
    assert set(segment_groups(seg).values()) == {"aorta", "iliac", "renal"}  # SNOMED codes
    for i in range(4):
        seg.GetSegmentation().GetNthSegment(i).SetTerminology("")
    with pytest.raises(ValueError, match="mapping="):
        ArteryShorteningMRMLLogic().process(seg)
    from CalciumScoringLib.scene.groups import segment_group_guesses

    guesses = segment_group_guesses(seg)
    assert [g for _, _, g in guesses] == [None] * 4  # nothing to go by: the table asks the user
    assert [n for _, n, _ in guesses] == ["Segment_1", "Segment_2", "Segment_3", "Segment_4"]
    m = {"Segment_1": "aorta", "Segment_4": "renal"}
    out, _, res = ArteryShorteningMRMLLogic().process(seg, reference_volume=vol, mapping=m)
    assert out.GetSegmentation().GetNumberOfSegments() == 2
