"""The pipeline object behind the Slicer module, on a real scene."""

import numpy as np
import pytest
import SimpleITK as sitk

from CalciumScoringLib import mrml_nodes as mn
from CalciumScoringLib.pipeline import CalciumScoringPipeline
from CalciumScoringLib.scoring import score


def test_phantom_pipeline_scores_equal_the_scoring_core(mrml):
    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=1, spacing=(1.5, 1.5, 2.0), fov="vessels")
    ct_before = sitk.GetArrayFromImage(mn.image_from_volume_node(vol))
    n_nodes = mrml.scene.GetNumberOfNodes()
    stages = []
    res = pipe.process(vol, groups, calcium="adaptive",
                       progress=lambda f, s: stages.append((f, s)))
    assert res.shortened.GetName() == "Phantom CTA 1 arteries shortened"
    assert res.calcifications.GetName() == "Phantom CTA 1 calcifications"
    assert res.table.GetName() == "Phantom CTA 1 calcium scores"
    assert stages[-1] == (1.0, "done")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mn.image_from_volume_node(vol)), ct_before)
    assert mn.get_provenance(res.table)["calcification"]["method"] == "adaptive"
    # the table holds exactly what the scoring core computes on the same inputs
    from ArteryShorteningLib import shorten_arteries
    from CalciumScoringLib import thresholds

    full = mn.labelmap_from_segmentation(groups, {"aorta": 1, "iliac": 2, "mesenteric": 3,
                                                  "renal": 4}, vol)
    ct = mn.image_from_volume_node(vol)
    expected = score(ct, shorten_arteries(full).labelmap, thresholds.adaptive(ct, full > 0),
                     groups_full=full).table
    df = mn.dataframe_from_table_node(res.table)
    assert list(df.region) == list(expected.region)
    for col in ("artery_volume_mm3", "calcium_volume_mm3", "burden", "cluster_count", "agatston"):
        np.testing.assert_allclose(df[col].astype(float), expected[col].astype(float), rtol=1e-9)
    seg = res.calcifications.GetSegmentation()
    assert seg.GetNumberOfSegments() == 5
    assert seg.GetSegment("aorta_calcification").GetName() == "aorta calcification"
    assert mrml.scene.GetNumberOfNodes() > n_nodes


def test_failed_run_leaves_the_scene_as_it_was(mrml):
    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=1, spacing=(2.0, 2.0, 2.0), fov="vessels")
    before = mrml.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="unknown calcification method"):
        pipe.process(vol, groups, calcium="magic")
    assert mrml.scene.GetNumberOfNodes() == before


def test_validation_section_logic(mrml):
    from CalciumScoringLib import segment_terms as st

    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=2, spacing=(1.5, 1.5, 1.5), fov="vessels")
    ct = mn.image_from_volume_node(vol)
    full = mn.labelmap_from_segmentation(groups, {"aorta": 1, "iliac": 2, "mesenteric": 3,
                                                  "renal": 4}, vol)
    from CalciumScoringLib import thresholds

    calc = thresholds.adaptive(ct, full > 0)
    ref_calc = mn.segmentation_node_from_labelmap(mrml.scene, calc, [(1, st.term("calcification"))],
                                                  vol, "reference calcium")
    arr = sitk.GetArrayFromImage(full)
    arr[arr == 4] = 0  # the automated segmentation misses the renal arteries
    auto = sitk.GetImageFromArray(arr)
    auto.CopyInformation(full)
    auto_groups = mn.segmentation_node_from_labelmap(mrml.scene, auto, st.group_segments(), vol, "auto")
    table, df = pipe.validate(vol, groups, ref_calc, auto_groups, ref_calc)
    d = df.set_index("region")
    assert d.loc["aorta", "artery_dice"] == 1.0 and d.loc["renal", "artery_dice"] == 0.0
    assert d.loc["aorta", "burden_difference"] == 0.0
    assert d.loc["renal", "calcium_volume_mm3_automated"] == 0.0
    assert d.calcification_dice.iloc[0] == 1.0
    assert table.GetNumberOfRows() == 5
    assert mn.dataframe_from_table_node(table).region.tolist() == df.region.tolist()
