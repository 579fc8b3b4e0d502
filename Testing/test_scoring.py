"""Scores on phantoms with known voxel sets and on hand-computed cases: exact."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from CalciumScoringLib.scoring import agatston as ag
from CalciumScoringLib.scoring.scores import score

ISO = (1.0, 1.0, 1.0)


def img(arr, spacing=(1.0, 1.0, 1.0), like=None):
    im = sitk.GetImageFromArray(arr)
    if like is not None:
        im.CopyInformation(like)
    else:
        im.SetSpacing(spacing)
    return im


def rows(res):
    return res.table.set_index("region")


@pytest.mark.parametrize("spacing", [ISO, (0.7, 0.7, 3.0), (0.8, 0.8, 1.25)])
def test_scores_equal_the_phantom_truth(phantom_cache, spacing):
    ph = phantom_cache(2, spacing, fov="vessels", plaque_min_voxels=2)
    res = score(ph.ct, ph.groups, ph.arteries == 2)
    t = rows(res)
    g = sitk.GetArrayFromImage(ph.groups)
    vv = float(np.prod(spacing))
    plaques = ph.meta["plaques"]
    for name, v in (("aorta", 1), ("iliac", 2), ("mesenteric", 3), ("renal", 4)):
        mine = [p for p in plaques if p["group"] == v]
        assert t.loc[name, "artery_volume_mm3"] == pytest.approx((g == v).sum() * vv)
        assert t.loc[name, "calcium_volume_mm3"] == pytest.approx(ph.meta["calcium_volume_mm3"][name])
        assert t.loc[name, "burden"] == pytest.approx(
            ph.meta["calcium_volume_mm3"][name] / ((g == v).sum() * vv))
        assert t.loc[name, "cluster_count"] == len(mine)
        mean = np.mean([p["volume_mm3"] for p in mine]) if mine else 0.0
        assert t.loc[name, "cluster_mean_mm3"] == pytest.approx(mean)
        if name in ("iliac", "renal"):
            for side in ("left", "right"):
                ms = [p for p in mine if p["side"] == side]
                assert t.loc[f"{name}_{side}", "cluster_count"] == len(ms)
                assert t.loc[f"{name}_{side}", "calcium_volume_mm3"] == pytest.approx(
                    sum(p["volume_mm3"] for p in ms))
            assert t.loc[f"{name}_left", "artery_volume_mm3"] + \
                t.loc[f"{name}_right", "artery_volume_mm3"] == pytest.approx(t.loc[name, "artery_volume_mm3"])
    assert t.loc["combined", "cluster_count"] == len(plaques)
    assert t.loc["combined", "calcium_volume_mm3"] == pytest.approx(sum(p["volume_mm3"] for p in plaques))
    assert t.loc["outside_arteries", "calcium_volume_mm3"] == 0
    assert not res.table.isna().any().any()
    r26 = rows(score(ph.ct, ph.groups, ph.arteries == 2, connectivity=26))
    assert r26.loc["combined", "cluster_count"] == len(plaques)  # plaques never touch


def test_cluster_split_at_a_group_boundary_goes_to_the_majority():
    g = np.zeros((10, 10, 20), np.uint8)
    g[:, :, :12] = 1  # aorta
    g[:, :, 12:] = 4  # renal
    ct = np.full(g.shape, 300, np.int16)
    calc = np.zeros(g.shape, np.uint8)
    calc[4:6, 4:6, 6:16] = 1  # 24 voxels in the aorta, 16 in the renal artery
    ct[calc > 0] = 800
    res = rows(score(img(ct), img(g), img(calc)))
    assert res.loc["aorta", "cluster_count"] == 1 and res.loc["renal", "cluster_count"] == 0
    assert res.loc["aorta", "cluster_mean_mm3"] == 40.0  # the whole cluster counts there
    assert res.loc["aorta", "calcium_volume_mm3"] == 24.0  # volumes stay voxel-wise
    assert res.loc["renal", "calcium_volume_mm3"] == 16.0
    assert res.loc["combined", "cluster_count"] == 1


def _agatston_case(dz):
    ct = np.full((3, 20, 20), 40, np.int16)
    calc = np.zeros(ct.shape, np.uint8)

    def put(k, rows_, cols, peak):
        calc[k, rows_, cols] = 1
        ct[k, rows_, cols] = 140
        ct[k, rows_.start, cols.start] = peak

    put(0, slice(2, 6), slice(2, 6), 150)      # 16 px = 4 mm², weight 1 -> 4
    put(1, slice(2, 5), slice(2, 5), 250)      # 9 px = 2.25 mm², weight 2 -> 4.5
    put(1, slice(10, 12), slice(10, 14), 350)  # 8 px = 2 mm², weight 3 -> 6 (same slice)
    put(2, slice(2, 7), slice(2, 4), 1000)     # 10 px = 2.5 mm², weight 4 -> 10
    put(2, slice(12, 13), slice(12, 15), 900)  # 3 px = 0.75 mm² < 1 mm²: dropped
    sp = (0.5, 0.5, dz)
    groups = np.ones(ct.shape, np.uint8)
    return img(ct, sp), img(groups, sp), img(calc, sp)


def test_agatston_hand_computed():
    ct, g, c = _agatston_case(3.0)
    res = score(ct, g, c, contrast=False)
    t = rows(res)
    assert t.loc["combined", "agatston"] == pytest.approx(24.5)
    assert t.loc["combined", "lesion_count"] == 4
    assert t.loc["combined", "risk_category"] == "11-100"
    vol = (16 + 9 + 8 + 10) * 0.25 * 3.0
    assert t.loc["combined", "volume_score_mm3"] == pytest.approx(vol)
    arr = sitk.GetArrayFromImage(ct)
    means = [(139 * 140 + 150 + 0) / 16, (8 * 140 + 250) / 9, (7 * 140 + 350) / 8, (9 * 140 + 1000) / 10]
    means[0] = (15 * 140 + 150) / 16
    vols = np.array([16, 9, 8, 10]) * 0.75
    assert t.loc["combined", "mass_score_mg"] == pytest.approx(0.001 * float(np.dot(means, vols)))
    assert arr.max() == 1000
    assert not any("contrast" in w for w in res.warnings)


def test_agatston_thin_slices_are_normalised_to_3mm():
    ct, g, c = _agatston_case(1.5)
    assert rows(score(ct, g, c))["agatston"]["combined"] == pytest.approx(12.25)
    assert rows(score(ct, g, c, agatston_normalize=False))["agatston"]["combined"] == pytest.approx(24.5)
    res = score(ct, g, c, slice_thickness_mm=3.0)
    assert any("differs from slice spacing" in w for w in res.warnings)


def test_risk_categories():
    assert [ag.risk_category(s) for s in (0, 0.4, 10, 10.5, 100, 400, 401)] == \
        ["0", "1-10", "1-10", "11-100", "11-100", "101-400", ">400"]
    assert [ag.risk_category(s, "4-tier") for s in (0, 100, 300, 301)] == \
        ["0", "1-100", "101-300", ">300"]
    assert [ag.weight(h) for h in (129, 130, 199.9, 200, 299, 300, 399, 400, 3000)] == \
        [0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_outside_and_trimmed_calcium_are_reported(phantom_cache):
    from ArteryShorteningLib import shorten_arteries

    ph = phantom_cache(2, ISO, fov="vessels", plaque_min_voxels=2)
    short = shorten_arteries(ph.groups).labelmap
    calc = sitk.GetArrayFromImage(ph.arteries) == 2
    extra = np.zeros_like(calc)
    extra[1:3, 1:3, 1:4] = True  # 12 voxels far from any artery ("bone")
    c = img((calc | extra).astype(np.uint8), like=ph.ct)
    res = score(ph.ct, short, c, groups_full=ph.groups)
    t = rows(res)
    s, f = sitk.GetArrayFromImage(short), sitk.GetArrayFromImage(ph.groups)
    assert t.loc["outside_arteries", "calcium_volume_mm3"] == 12.0
    assert t.loc["outside_arteries", "cluster_count"] == 1
    assert t.loc["outside_shortened", "calcium_volume_mm3"] == float((calc & (s == 0) & (f > 0)).sum())
    assert t.loc["combined", "calcium_volume_mm3"] == float((calc & (s > 0)).sum())
    total = t.loc[["combined", "outside_shortened", "outside_arteries"], "calcium_volume_mm3"].sum()
    assert total == float((calc | extra).sum())  # nothing silently dropped
    assert any("outside every artery" in w for w in res.warnings)


def test_bad_input(phantom_cache):
    ph = phantom_cache(2, (2.0, 2.0, 2.0), fov="vessels")
    calc = ph.arteries == 2
    shifted = sitk.Image(ph.groups)
    shifted.SetOrigin([o + 5 for o in ph.groups.GetOrigin()])
    with pytest.raises(ValueError, match="does not share the CT's grid.*origin"):
        score(ph.ct, shifted, calc)
    with pytest.raises(ValueError, match="outside 1 aorta"):
        score(ph.ct, ph.arteries * 3, calc)
    with pytest.raises(ValueError, match="binary"):
        score(ph.ct, ph.groups, ph.arteries)
    with pytest.raises(TypeError, match="unknown scoring parameters"):
        score(ph.ct, ph.groups, calc, stump=3)
    empty = ph.groups * 0
    res = score(ph.ct, empty, calc * 0)
    assert not res.table.isna().any().any()
    assert (res.table.select_dtypes("number") == 0).all().all()
    assert any("empty" in w for w in res.warnings)


def test_result_serialises(phantom_cache, tmp_path):
    ph = phantom_cache(2, (2.0, 2.0, 2.0), fov="vessels")
    res = score(ph.ct, ph.groups, ph.arteries == 2)
    d = json.loads(res.to_json(tmp_path / "s.json"))
    assert d["version"] and d["parameters"]["connectivity"] == 6
    assert len(d["scores"]) == 11
    res.to_csv(tmp_path / "s.csv")
    import pandas as pd

    back = pd.read_csv(tmp_path / "s.csv")
    assert list(back.columns[:6]) == ["region", "group", "side", "artery_volume_mm3",
                                      "calcium_volume_mm3", "burden"]
    np.testing.assert_allclose(back.burden, res.table.burden)


def test_wall_calcium_just_outside_a_coarse_group_mask_is_attached_to_it():
    from CalciumScoringLib.scoring.scores import attach_wall_calcium

    g = np.zeros((20, 30, 30), np.uint8)
    g[:, 10:20, 10:20] = 1  # an "aorta" whose mask ends inside the wall
    g[:, 10:20, 20:24] = 4  # a "renal" beside it
    calc = np.zeros(g.shape, np.uint8)
    calc[5:8, 8:12, 14:16] = 1  # plaque: 2 voxel rows (1 mm each) outside the aorta mask
    calc[12:14, 14:16, 24:26] = 1  # 1-2 mm outside the renal mask
    calc[15:17, 2:4, 2:4] = 1  # 6+ mm away from every artery: stays outside
    groups, calcium = sitk.GetImageFromArray(g), sitk.GetImageFromArray(calc)
    groups.SetSpacing((1.0, 1.0, 1.0))
    calcium.CopyInformation(groups)
    out, mm3 = attach_wall_calcium(groups, calcium, max_mm=2.0)
    a = sitk.GetArrayFromImage(out)
    assert (a[5:8, 8:10, 14:16] == 1).all() and (a[12:14, 14:16, 24:26] == 4).all()
    assert (a[15:17, 2:4, 2:4] == 0).all()
    assert mm3 == pytest.approx(3 * 2 * 2 + 2 * 2 * 2)  # the voxels that were outside
    assert ((a != g) == ((calc > 0) & (g == 0) & (a > 0))).all()  # nothing else changes
    assert (sitk.GetArrayFromImage(groups) == g).all()  # the input is not modified
    before = score(sitk.GetImageFromArray(np.full(g.shape, 300, np.int16)), groups, calcium)
    after = score(sitk.GetImageFromArray(np.full(g.shape, 300, np.int16)), out, calcium)
    assert before.table.set_index("region").loc["outside_arteries", "calcium_volume_mm3"] == 28
    assert after.table.set_index("region").loc["outside_arteries", "calcium_volume_mm3"] == 8


def test_attaching_to_a_shortened_run_keeps_trimmed_calcium_outside_the_shortened_arteries():
    from CalciumScoringLib.scoring.scores import attach_to_shortened

    full = np.zeros((30, 20, 20), np.uint8)
    full[:, 8:12, 8:12] = 1  # an aorta ...
    short = full.copy()
    short[20:] = 0  # ... cut at z = 20 by the shortening
    calc = np.zeros(full.shape, np.uint8)
    calc[5:7, 8:10, 12:14] = 1  # wall plaque, partly outside, next to the kept aorta
    calc[25:27, 8:10, 12:14] = 1  # the same next to the trimmed part
    imgs = [sitk.GetImageFromArray(a) for a in (short, full, calc)]
    s, f, mm3 = attach_to_shortened(*imgs)
    s, f = sitk.GetArrayFromImage(s), sitk.GetArrayFromImage(f)
    assert mm3 == 8 and (s[5:7, 8:10, 12:14] == 1).all() and (s[25:27] == short[25:27]).all()
    assert (f[25:27, 8:10, 12:14] == 1).all()  # reported as outside_shortened, not elsewhere
    res = score(sitk.GetImageFromArray(np.full(full.shape, 300, np.int16)), sitk.GetImageFromArray(s),
                imgs[2], groups_full=sitk.GetImageFromArray(f)).table.set_index("region")
    assert res.loc["aorta", "calcium_volume_mm3"] == 8
    assert res.loc["outside_shortened", "calcium_volume_mm3"] == 8
    assert res.loc["outside_arteries", "calcium_volume_mm3"] == 0
