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
