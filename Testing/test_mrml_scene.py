"""The harness runs on real MRML: nodes, segments, tables and scene files round-trip."""

import numpy as np
import pytest
import SimpleITK as sitk

from CalciumScoringLib.scene import nodes as mn
from CalciumScoringLib.scene import terms as st


def _oblique():
    a = np.deg2rad(20)
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    b = np.deg2rad(10)
    return R @ np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])


def test_scene_round_trip_mrb(mrml, tmp_path, phantom_cache):
    ph = phantom_cache(5, spacing=(1.4, 1.2, 2.0), direction=_oblique(), fov="vessels")
    scene = mrml.scene
    vol = mn.volume_node_from_image(scene, ph.ct, "phantom CT")
    seg = mn.segmentation_node_from_labelmap(scene, ph.groups, st.group_segments(), vol,
                                             "phantom groups")
    mn.set_provenance(seg, {"model": "phantom", "seed": 5})
    import pandas as pd

    df = pd.DataFrame({"group": ["aorta", "iliac"], "burden": [0.125, 0.5], "clusters": [3, 4]})
    mn.table_node_from_dataframe(scene, df, "scores")
    expected = sitk.GetArrayFromImage(ph.groups)
    path = tmp_path / "scene.mrb"
    assert scene.WriteToMRB(str(path))
    scene.Clear(0)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
    assert scene.ReadFromMRB(str(path))

    vol2 = scene.GetFirstNodeByName("phantom CT")
    seg2 = scene.GetFirstNodeByName("phantom groups")
    tab2 = scene.GetFirstNodeByName("scores")
    assert vol2 is not None and seg2 is not None and tab2 is not None
    img = mn.image_from_volume_node(vol2)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(ph.ct))
    np.testing.assert_allclose(img.GetDirection(), ph.ct.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), ph.ct.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(img.GetSpacing(), ph.ct.GetSpacing(), atol=1e-6)
    segmentation = seg2.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 4
    for value, term in st.group_segments():
        s = segmentation.GetSegment(term.key)
        assert s.GetName() == term.name
        np.testing.assert_allclose(s.GetColor(), term.color, atol=1 / 255)
        assert term.type[1] in s.GetTerminology()
        arr = mn.segment_array(seg2, term.key, vol2)
        np.testing.assert_array_equal(arr > 0, expected == value)
        assert arr.sum() > 0
    assert mn.get_provenance(seg2)["seed"] == 5
    df2 = mn.dataframe_from_table_node(tab2)
    assert list(df2["group"]) == ["aorta", "iliac"]
    np.testing.assert_allclose(df2["burden"].astype(float), [0.125, 0.5])


def test_labelmap_from_segmentation_resolves_mapping(mrml, phantom_cache):
    ph = phantom_cache(5, spacing=(1.4, 1.2, 2.0), direction=_oblique(), fov="vessels")
    vol = mn.volume_node_from_image(mrml.scene, ph.ct, "ct")
    seg = mn.segmentation_node_from_labelmap(mrml.scene, ph.groups, st.group_segments(), vol, "g")
    lm = mn.labelmap_from_segmentation(seg, {"aorta": 1, "iliac": 2, "mesenteric": 3, "renal": 4}, vol)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(lm), sitk.GetArrayFromImage(ph.groups))
    assert lm.GetDirection() == pytest.approx(ph.groups.GetDirection(), abs=1e-6)
    with pytest.raises(KeyError, match="not found"):
        mn.segment_array(seg, "nope", vol)


def test_image_from_empty_volume_node_is_a_clear_error(mrml):
    node = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="load a CT"):
        mn.image_from_volume_node(node)
