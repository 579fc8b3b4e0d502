"""The pipeline object behind the Slicer module, on a real scene."""

import numpy as np
import SimpleITK as sitk

from CalciumScoringLib import mrml_nodes as mn
from CalciumScoringLib.pipeline import CalciumScoringPipeline


def test_phantom_load_and_shortening(mrml):
    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=1, spacing=(1.5, 1.5, 2.0), fov="vessels")
    ct_before = sitk.GetArrayFromImage(mn.image_from_volume_node(vol))
    stages = []
    res = pipe.process(vol, groups, progress=lambda f, s: stages.append((f, s)))
    assert res.shortened.GetName() == "Phantom CTA 1 arteries shortened"
    assert res.table.GetNumberOfRows() == len(res.dataframe) >= 5
    assert stages[-1] == (1.0, "done")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mn.image_from_volume_node(vol)), ct_before)
    assert mn.get_provenance(groups)["seed"] == 1
    full = mn.segment_array(groups, "renal", vol).sum()
    short = mn.segment_array(res.shortened, "renal", vol).sum()
    assert 0 < short < full
