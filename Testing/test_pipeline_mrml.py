"""The pipeline object behind the Slicer module, on a real scene."""

import numpy as np
import pytest
import SimpleITK as sitk

from CalciumScoringLib.scene import nodes as mn
from CalciumScoringLib.scene.pipeline import CalciumScoringPipeline
from CalciumScoringLib.scoring.scores import score


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
    assert mn.get_provenance(res.table)["calcification"]["metal_excluded_mm3"] == 0
    # the table holds exactly what the scoring core computes on the same inputs
    from ArteryShorteningLib import shorten_arteries
    from CalciumScoringLib.scoring import thresholds

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
    calc_seg = seg.GetSegment("aorta_calcification")
    assert calc_seg.GetName() == "aorta calcification"
    from CalciumScoringLib.scene import terms as st

    assert "^18115005^" in calc_seg.GetTerminology()  # SNOMED CT pathologic calcification
    np.testing.assert_allclose(calc_seg.GetColor(), st.term("calcification").color, atol=1 / 255)
    short = res.shortened.GetSegmentation()
    for value, term in st.group_segments():  # names, colours and codes carried over
        s_ = short.GetSegment(term.key)
        assert s_.GetName() == term.name and f"^{term.type[1]}^" in s_.GetTerminology()
        np.testing.assert_allclose(s_.GetColor(), term.color, atol=1 / 255)
    prov = mn.get_provenance(res.shortened)
    assert prov["shortening"]["stump_length_mm"] == 25.0 and prov["scoring"]["connectivity"] == 6
    assert prov["arteries"]["segmentation"] == "Phantom CTA 1 artery groups" and prov["date"]
    assert mrml.scene.GetNumberOfNodes() > n_nodes


def test_failed_run_leaves_the_scene_as_it_was(mrml):
    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=1, spacing=(2.0, 2.0, 2.0), fov="vessels")
    before = mrml.scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="unknown calcification method"):
        pipe.process(vol, groups, calcium="magic")
    assert mrml.scene.GetNumberOfNodes() == before


def test_validation_section_logic(mrml):
    from CalciumScoringLib.scene import terms as st

    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=2, spacing=(1.5, 1.5, 1.5), fov="vessels")
    ct = mn.image_from_volume_node(vol)
    full = mn.labelmap_from_segmentation(groups, {"aorta": 1, "iliac": 2, "mesenteric": 3,
                                                  "renal": 4}, vol)
    from CalciumScoringLib.scoring import thresholds

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


def test_edit_a_plaque_and_recompute_changes_the_table_by_that_plaque(mrml, tmp_path):
    from scipy import ndimage

    from CalciumScoringLib.scene import terms as st
    from CalciumScoringLib.phantoms.generator import make_phantom

    ph = make_phantom(70, spacing=(1.2, 1.2, 1.5), fov="vessels", plaques=[
        {"branch": "aorta", "arc_mm": 50.0, "angle_deg": 30, "radius_mm": 3.0, "hu": 900.0},
        {"branch": "aorta", "arc_mm": 90.0, "angle_deg": 200, "radius_mm": 2.5, "hu": 800.0},
        {"branch": "renal_left", "arc_mm": 20.0, "angle_deg": 90, "radius_mm": 2.0, "hu": 700.0}])
    vol = mn.volume_node_from_image(mrml.scene, ph.ct, "CTA")
    groups = mn.segmentation_node_from_labelmap(mrml.scene, ph.groups, st.group_segments(), vol,
                                                "CTA arteries")
    calc = mn.segmentation_node_from_labelmap(mrml.scene, ph.arteries, [(2, st.term("calcification"))],
                                              vol, "CTA calcium (reference)")
    pipe = CalciumScoringPipeline()
    first = pipe.process(vol, groups, calcium=calc)
    before = mn.dataframe_from_table_node(first.table).set_index("region")
    # the user erases the first aortic plaque in Segment Editor
    arr = mn.segment_array(calc, "calcification", vol)
    lab, _ = ndimage.label(arr, np.ones((3, 3, 3)))
    c = np.array(ph.meta["plaques"][0]["center_lps"])
    k = np.round(np.linalg.solve(np.diag(ph.ct.GetSpacing()), c - ph.ct.GetOrigin())).astype(int)
    plaque = lab == lab[k[2], k[1], k[0]]
    assert plaque.sum() == ph.meta["plaques"][0]["voxels"]
    import slicer

    slicer.util.updateSegmentBinaryLabelmapFromArray(((arr > 0) & ~plaque).astype(np.uint8), calc,
                                                     "calcification", vol)
    ids = {mrml.scene.GetNthNode(i).GetID() for i in range(mrml.scene.GetNumberOfNodes())}
    again = pipe.recompute(vol, groups, calc, table=first.table, shortened=first.shortened)
    assert again.table is first.table and again.shortened is first.shortened
    new = [mrml.scene.GetNthNode(i) for i in range(mrml.scene.GetNumberOfNodes())]
    new = [n.GetClassName() for n in new if n.GetID() not in ids]
    assert new == [], new  # table, shortened arteries and shortening report are all updated
    assert again.branch_table is first.branch_table
    after = mn.dataframe_from_table_node(first.table).set_index("region")
    vol_plaque = ph.meta["plaques"][0]["volume_mm3"]
    assert before.loc["aorta", "calcium_volume_mm3"] - after.loc["aorta", "calcium_volume_mm3"] == \
        pytest.approx(vol_plaque)
    assert before.loc["combined", "calcium_volume_mm3"] - after.loc["combined", "calcium_volume_mm3"] == \
        pytest.approx(vol_plaque)
    assert before.loc["aorta", "cluster_count"] - after.loc["aorta", "cluster_count"] == 1
    assert after.loc["renal", "calcium_volume_mm3"] == before.loc["renal", "calcium_volume_mm3"]
    # the chart reads the same table; the scene round-trips as .mrb
    chart = mrml.scene.GetFirstNodeByClass("vtkMRMLPlotChartNode")
    series = mrml.scene.GetNodeByID(chart.GetPlotSeriesNodeID())
    assert series.GetTableNodeID() == first.table.GetID() and series.GetYColumnName() == "burden"
    path = tmp_path / "s.mrb"
    assert mrml.scene.WriteToMRB(str(path))
    mrml.scene.Clear(0)
    assert mrml.scene.ReadFromMRB(str(path))
    t2 = mrml.scene.GetFirstNodeByName("CTA calcium scores")
    back = mn.dataframe_from_table_node(t2).set_index("region")
    assert back.loc["aorta", "calcium_volume_mm3"] == pytest.approx(after.loc["aorta", "calcium_volume_mm3"])
    assert mn.get_provenance(t2)["calcification"]["segmentation"] == "CTA calcium (reference)"


def test_cancel_mid_run_leaves_no_partial_nodes(mrml):
    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=1, spacing=(2.0, 2.0, 2.0), fov="vessels")
    before = mrml.scene.GetNumberOfNodes()
    from CalciumScoringLib.errors import Cancelled

    stages = []

    def cancel():
        return stages and stages[-1] == "shortening arteries"

    with pytest.raises(Cancelled):
        pipe.process(vol, groups, progress=lambda f, s: stages.append(s), cancel=cancel)
    assert "calcification" in stages  # work had been done and nodes created
    assert mrml.scene.GetNumberOfNodes() == before


def test_artery_model_from_the_registry_and_cancel_inside_the_network(mrml, tmp_path):
    import torch

    from CalciumScoringLib.segmentation import models
    from CalciumScoringLib.errors import Cancelled
    from CalciumScoringLib.segmentation.networks import Voxelwise

    net = Voxelwise(1, 5)  # a transparent stand-in model: "aorta" wherever HU > 250
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.bias.zero_()
        net.conv.weight[1, 0] = 10.0
        net.conv.bias[1] = -25.0
    card = {"name": "bright-aorta", "version": "0.0.1",
            "labels": {"1": "aorta", "2": "iliac", "3": "mesenteric", "4": "renal"},
            "spacing_mm": [2.0, 2.0, 2.0], "patch_size": [32, 32, 32],
            "normalization": {"type": "ct", "clip": [-1024, 3071], "mean": 0.0, "std": 100.0},
            "architecture": {"name": "voxelwise", "params": {"num_classes": 5}},
            "license": "Apache-2.0", "intended_use": "tests only"}
    folder = models.save_model(tmp_path / "bright", net.state_dict(), card)
    models.register(folder)
    pipe = CalciumScoringPipeline()
    vol, _ = pipe.load_phantom(mrml.scene, seed=3, spacing=(2.0, 2.0, 2.0), fov="vessels",
                               lumen_hu=400.0)
    before = mrml.scene.GetNumberOfNodes()
    calls = []
    with pytest.raises(Cancelled):
        pipe.process(vol, "bright-aorta", cancel=lambda: calls.append(1) or len(calls) > 3)
    assert mrml.scene.GetNumberOfNodes() == before
    res = pipe.process(vol, "bright-aorta")
    assert res.arteries is not None and res.arteries.GetName() == "Phantom CTA 3 arteries"
    prov = mn.get_provenance(res.arteries)
    assert prov["model"] == "bright-aorta" and prov["sha256"] == models.sha256(folder / "weights.safetensors")
    ct = sitk.GetArrayFromImage(mn.image_from_volume_node(vol))
    aorta = mn.segment_array(res.arteries, "aorta", vol) > 0
    assert aorta.sum() > 0 and np.all(ct[aorta] > 150)  # bright voxels only (resampling blurs)


def test_rerun_never_overwrites_an_edited_output_without_asking(mrml):
    import slicer

    from CalciumScoringLib.scene.pipeline import EditedError

    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=1, spacing=(2.0, 2.0, 2.0), fov="vessels")
    first = pipe.process(vol, groups)
    again = pipe.recompute(vol, groups, first.calcifications, table=first.table,
                           shortened=first.shortened)  # unedited: updated in place
    assert again.shortened is first.shortened
    arr = mn.segment_array(first.shortened, "renal", vol)
    arr[arr > 0] = 0  # the user erases the renal stumps in the shortened output
    slicer.util.updateSegmentBinaryLabelmapFromArray(arr.astype(np.uint8), first.shortened, "renal", vol)
    assert mn.is_edited(first.shortened, vol)
    with pytest.raises(EditedError, match="was edited"):
        pipe.recompute(vol, groups, first.calcifications, table=first.table,
                       shortened=first.shortened)
    assert mn.segment_array(first.shortened, "renal", vol).sum() == 0  # untouched
    new = pipe.process(vol, groups)  # new outputs are always possible
    assert new.shortened is not first.shortened
    pipe.recompute(vol, groups, first.calcifications, table=first.table,
                   shortened=first.shortened, overwrite_edited=True)
    assert mn.segment_array(first.shortened, "renal", vol).sum() > 0
    assert not mn.is_edited(first.shortened, vol)


def test_compute_runs_in_a_background_thread_and_publish_matches_process(mrml):
    import threading

    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=4, spacing=(2.0, 2.0, 2.0), fov="vessels")
    job = pipe.prepare(vol, groups, "adaptive")  # main thread: reads the scene
    n_nodes = mrml.scene.GetNumberOfNodes()
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("c", pipe.compute(job)))
    t.start()
    t.join(120)
    assert mrml.scene.GetNumberOfNodes() == n_nodes  # compute never touches the scene
    threaded = pipe.publish(vol, job, box["c"])
    direct = pipe.process(vol, groups, "adaptive")
    a = mn.dataframe_from_table_node(threaded.table)
    b = mn.dataframe_from_table_node(direct.table)
    np.testing.assert_allclose(a.burden.astype(float), b.burden.astype(float))
    assert list(a.cluster_count) == list(b.cluster_count)


def test_scene_reopened_restores_the_run_and_rescoring_updates_it(mrml, tmp_path):
    from CalciumScoringLib.scene.runs import last_run

    pipe = CalciumScoringPipeline()
    vol, groups = pipe.load_phantom(mrml.scene, seed=5, spacing=(2.0, 2.0, 2.0), fov="vessels")
    res = pipe.process(vol, groups, "fixed", stump_length_mm=30.0)
    before = mn.dataframe_from_table_node(res.table)
    path = tmp_path / "run.mrb"
    assert mrml.scene.WriteToMRB(str(path))
    mrml.scene.Clear(0)
    assert mrml.scene.ReadFromMRB(str(path))
    vol2 = mrml.scene.GetFirstNodeByName("Phantom CTA 5")
    run = last_run(vol2)
    assert run["parameters"]["stump_length_mm"] == 30.0
    assert run["parameters"]["calcium"]["method"] == "fixed"
    assert run["shortened"].GetName() == "Phantom CTA 5 arteries shortened"
    assert run["arteries"].GetName() == "Phantom CTA 5 artery groups"
    assert run["calcifications"].GetName() == "Phantom CTA 5 calcifications"
    pd_back = mn.dataframe_from_table_node(run["table"])
    # MRML writes table values as text with 6 significant digits
    np.testing.assert_allclose(pd_back.burden.astype(float), before.burden.astype(float), rtol=1e-5)
    n = mrml.scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")
    again = pipe.recompute(vol2, run["arteries"], run["calcifications"], table=run["table"],
                           shortened=run["shortened"], stump_length_mm=30.0)
    assert again.table is run["table"]
    assert mrml.scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode") == n  # one record
    assert last_run(vol2)["calcifications"] is run["calcifications"]


def test_stent_struts_are_left_out_of_the_calcium_and_said(mrml):
    """A stented aorta (struts at 3000 HU on the wall): the calcification node holds none of
    the struts, the provenance says how much was taken out as metal and the QC flag says it
    to the user; the volume node is untouched."""
    from test_thresholds import _with_stent

    from CalciumScoringLib.phantoms.generator import make_phantom
    from CalciumScoringLib.scene import terms as st

    ph = make_phantom(21, spacing=(1.5, 1.5, 1.5), fov="vessels", lumen_hu=550.0,
                      plaque_hu=(700.0, 1400.0), n_plaques=14)
    ct, stent = _with_stent(ph)
    vol = mn.volume_node_from_image(mrml.scene, ct, "stented CTA")
    groups = mn.segmentation_node_from_labelmap(mrml.scene, ph.groups, st.group_segments(), vol,
                                                "groups")
    res = CalciumScoringPipeline().process(vol, groups)
    calc = sitk.GetArrayFromImage(mn.labelmap_from_segmentation(
        res.calcifications, {res.calcifications.GetSegmentation().GetNthSegmentID(i): 1
                             for i in range(res.calcifications.GetSegmentation()
                                            .GetNumberOfSegments())}, vol)) > 0
    assert stent.sum() > 100 and not (calc & stent).any()
    metal = mn.get_provenance(res.table)["calcification"]
    assert metal["metal_excluded_mm3"] >= stent.sum() * 1.5 ** 3 and metal["metal_hu"] == 2500
    assert {"metal_not_calcium", "metal"} <= {f["code"] for f in res.qc}  # as the CLI says
    flag = next(f for f in res.qc if f["code"] == "metal_not_calcium")
    assert f"{metal['metal_excluded_mm3']:,.0f} mm3" in flag["message"]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mn.image_from_volume_node(vol)),
                                  sitk.GetArrayFromImage(ct))


def test_the_module_gets_the_clis_input_checks_and_contrast_flag(mrml):
    """An unenhanced scan is flagged ``no_contrast`` in Slicer as on the command line, and a
    label map loaded as a volume is refused with what to do, before anything is created."""
    from CalciumScoringLib.phantoms.generator import make_phantom
    from CalciumScoringLib.qc.checks import InputError
    from CalciumScoringLib.scene import terms as st

    ph = make_phantom(50, spacing=(1.5, 1.5, 1.5), fov="vessels", lumen_hu=90.0)
    vol = mn.volume_node_from_image(mrml.scene, ph.ct, "unenhanced")
    groups = mn.segmentation_node_from_labelmap(mrml.scene, ph.groups, st.group_segments(), vol,
                                                "groups")
    res = CalciumScoringPipeline().process(vol, groups)
    assert "no_contrast" in [f["code"] for f in res.qc]
    assert "no_contrast: aortic lumen median" in res.status_message  # the module's status line
    labels = mn.volume_node_from_image(mrml.scene, sitk.Cast(ph.groups, sitk.sitkInt16), "labels")
    n = mrml.scene.GetNumberOfNodes()
    with pytest.raises(InputError, match="label map"):
        CalciumScoringPipeline().process(labels, groups)
    assert mrml.scene.GetNumberOfNodes() == n
