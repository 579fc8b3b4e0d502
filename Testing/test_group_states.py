"""A missing group never reads as a healthy one: group states, NaN scores, flags, validity."""

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from CalciumScoringLib.cohort.runner import Case, Options, process_case
from CalciumScoringLib.qc import states as gs


def _erase(img, value):
    a = sitk.GetArrayFromImage(img)
    a[a == value] = 0
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(img)
    return out


def _above_kidneys(ph):
    """Index of the first slice 8 mm above the higher renal artery's take-off."""
    b = ph.meta["branches"]
    z = max(b["renal_left"]["takeoff_lps"][2], b["renal_right"]["takeoff_lps"][2]) + 8.0
    return int(np.ceil((z - ph.groups.GetOrigin()[2]) / ph.groups.GetSpacing()[2]))


@pytest.mark.parametrize("seed", [4, 7, 11])
def test_in_view_on_phantoms_cut_and_erased(phantom_cache, seed):
    ph = phantom_cache(seed, spacing=(1.5, 1.5, 2.0), fov="vessels")
    assert {g: v[0] for g, v in gs.in_view(ph.groups).items()} == dict.fromkeys(gs.GROUPS, True)
    erased = gs.in_view(_erase(ph.groups, 4))
    assert erased["renal"][0] is True  # the SMA is found and the field reaches far below it
    cut = ph.groups[:, :, _above_kidneys(ph):]
    assert not (sitk.GetArrayViewFromImage(cut) == 4).any()
    view = gs.in_view(cut)
    assert view["renal"][0] is False and view["iliac"][0] is False
    states = gs.group_states(cut)
    assert states["renal"][0] == gs.NOT_IN_VIEW and states["iliac"][0] == gs.NOT_IN_VIEW
    assert states["aorta"][0] == gs.MEASURED and states["mesenteric"][0] == gs.MEASURED


def _run(tmp_path, name, ct, groups):
    sitk.WriteImage(ct, str(tmp_path / f"{name}.nii.gz"))
    sitk.WriteImage(groups, str(tmp_path / f"{name}_groups.nrrd"))
    s = process_case(Case(name, str(tmp_path / f"{name}.nii.gz"), str(tmp_path / f"{name}_groups.nrrd")),
                     tmp_path / "out", Options(groups_model=None, scene=False))
    assert s["status"] == "ok", s
    folder = tmp_path / "out" / name
    return pd.read_csv(folder / "scores.csv").set_index("region"), \
        json.loads((folder / "scores.json").read_text())


def test_missing_groups_give_nan_and_a_flag_never_zero(tmp_path, phantom_cache):
    """Intact: all measured and valid.  Renal erased: renal (and its sides) NaN, state "not
    found", flag naming renal, the aorta still scored, combined covering the others.  Cut
    above the kidneys: renal and iliac "not in view".  The report says it in red."""
    ph = phantom_cache(4, spacing=(1.5, 1.5, 2.0), fov="vessels")
    t, rec = _run(tmp_path, "intact", ph.ct, ph.groups)
    assert set(t.loc[["aorta", "iliac", "mesenteric", "renal", "combined"], "state"]) == {"measured"}
    assert rec["scores_valid"] is True and t.scores_valid.all()
    assert t.loc["combined", "covers"] == "aorta+iliac+mesenteric+renal"

    t, rec = _run(tmp_path, "erased", ph.ct, _erase(ph.groups, 4))
    for region in ("renal", "renal_left", "renal_right"):
        assert t.loc[region, "state"] == "not found"
        assert np.isnan(t.loc[region, "burden"]) and np.isnan(t.loc[region, "artery_volume_mm3"])
        assert t.loc[region, "risk_category"] == "not found"
    assert t.loc["aorta", "state"] == "measured" and t.loc["aorta", "artery_volume_mm3"] > 0
    assert t.loc["combined", "covers"] == "aorta+iliac+mesenteric"
    flag = next(f for f in rec["qc"] if f["code"] == "groups_not_found")
    assert "renal" in flag["message"] and "NaN" in flag["message"]
    assert rec["states"]["renal"]["state"] == "not found"
    assert rec["scores"][[r["region"] for r in rec["scores"]].index("renal")]["burden"] is None

    k = _above_kidneys(ph)
    t, rec = _run(tmp_path, "cut", ph.ct[:, :, k:], ph.groups[:, :, k:])
    assert t.loc["renal", "state"] == "not in view" and t.loc["iliac", "state"] == "not in view"
    assert np.isnan(t.loc["iliac", "burden"])
    assert any(f["code"] == "groups_not_in_view" and "renal" in f["message"] for f in rec["qc"])
    assert t.loc["aorta", "state"] == "measured"


def test_invalidating_flags_reach_every_row():
    table = pd.DataFrame({"region": ["aorta", "renal", "renal_left", "renal_right", "combined"],
                          "group": ["aorta", "renal", "renal", "renal", "all"],
                          "side": ["midline", "both", "left", "right", "both"],
                          "artery_volume_mm3": [100.0, 10.0, 10.0, 0.0, 110.0],
                          "burden": [0.1, 0.0, 0.0, 0.0, 0.1]})
    states = {"aorta": (gs.MEASURED, ""), "iliac": (gs.NOT_IN_VIEW, "below"),
              "mesenteric": (gs.NOT_VALID, "failed mesenteric_anterior"), "renal": (gs.MEASURED, "")}
    t = gs.apply_states(table, states).set_index("region")
    assert t.loc["renal_right", "state"] == "not found"  # a side holding no artery
    assert np.isnan(t.loc["renal_right", "burden"]) and t.loc["renal_left", "burden"] == 0.0
    assert t.loc["aorta", "scores_valid"] and t.loc["combined", "state"] == "not valid"
    assert t.loc["combined", "covers"] == "aorta+mesenteric+renal"
    flags = [{"code": "no_contrast"}, {"code": "aorta_truncated"}]
    assert gs.invalid_reasons(flags) == ["no_contrast"]
    assert gs.invalid_reasons(flags, groups_by_network=False) == []
    t = gs.apply_states(table, states, ["no_contrast"])
    assert not t.scores_valid.any()


def test_report_panels_are_drawn_at_physical_aspect(tmp_path, monkeypatch):
    """A 0.74 x 0.74 x 1.6 mm CT: every panel's pixel aspect is the spacing ratio (the
    coronal panels 1.6 / 0.74, not square voxels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from CalciumScoringLib.cohort.figures import case_figure

    a = np.full((50, 60, 70), -100, np.int16)
    g = np.zeros(a.shape, np.uint8)
    g[:, 25:35, 30:40] = 1
    ct = sitk.GetImageFromArray(a)
    ct.SetSpacing((0.74, 0.74, 1.6))
    groups = sitk.GetImageFromArray(g)
    groups.CopyInformation(ct)
    seen = []
    real_close = plt.close

    def keep(fig=None):
        if fig is not None and hasattr(fig, "axes"):
            seen.extend(ax.get_aspect() for ax in fig.axes if ax.images)
        return real_close(fig)

    monkeypatch.setattr(plt, "close", keep)
    case_figure(tmp_path / "r.png", ct, groups, groups, groups * 0, title="aspect")
    assert seen and (tmp_path / "r.png").stat().st_size > 0
    assert sorted({round(float(v), 3) for v in seen}) == [1.0, round(1.6 / 0.74, 3)]


def test_a_side_without_artery_is_named_in_the_flag():
    table = pd.DataFrame({"region": ["renal", "renal_left", "renal_right"],
                          "group": ["renal"] * 3, "side": ["both", "left", "right"],
                          "artery_volume_mm3": [10.0, 10.0, 0.0], "burden": [0.0, 0.0, 0.0]})
    states = {"aorta": (gs.MEASURED, ""), "iliac": (gs.MEASURED, ""),
              "mesenteric": (gs.MEASURED, ""), "renal": (gs.MEASURED, "")}
    flags = gs.state_flags(states, gs.apply_states(table, states))
    assert [f["code"] for f in flags] == ["groups_not_found"]
    assert "right renal (the masks hold no artery on that side)" in flags[0]["message"]


def test_specks_of_a_side_group_are_not_found_and_leave_combined(tmp_path, phantom_cache):
    """A few voxels of "iliac" (8 mm3 on ts_dicom_series, all calcium: burden 1.0) are
    specks, not an artery: iliac not found, NaN, and out of the combined row."""
    ph = phantom_cache(4, spacing=(1.5, 1.5, 2.0), fov="vessels")
    a = sitk.GetArrayFromImage(ph.groups)
    keep = a == 2
    z = np.argwhere(keep)[0]
    a[a == 2] = 0
    a[z[0], z[1], z[2]:z[2] + 3] = 2  # 13.5 mm3 of "iliac"
    specks = sitk.GetImageFromArray(a)
    specks.CopyInformation(ph.groups)
    t, rec = _run(tmp_path, "specks", ph.ct, specks)
    assert t.loc["iliac", "state"] == "not found" and "specks" in rec["states"]["iliac"]["reason"]
    assert np.isnan(t.loc["iliac", "burden"])
    assert t.loc["combined", "covers"] == "aorta+mesenteric+renal"
    parts = t.loc[["aorta", "mesenteric", "renal"], "artery_volume_mm3"].sum()
    assert t.loc["combined", "artery_volume_mm3"] == pytest.approx(parts)
    calc = t.loc[["aorta", "mesenteric", "renal"], "calcium_volume_mm3"].sum()
    assert t.loc["combined", "calcium_volume_mm3"] == pytest.approx(calc)


def test_the_run_line_names_a_missing_side(tmp_path, phantom_cache):
    """A renal artery erased on one side (IRCAD patient 1's right renal artery, which the
    networks miss): the run line says ``right renal not found`` beside ``ok``, and so does
    the line of a re-run that reuses the case; the other side stays measured."""
    from CalciumScoringLib.cohort.runner import run_cohort

    ph = phantom_cache(4, spacing=(1.5, 1.5, 2.0), fov="vessels")
    a = sitk.GetArrayFromImage(ph.groups)
    x_right = ph.meta["branches"]["renal_right"]["takeoff_lps"][0]
    x_left = ph.meta["branches"]["renal_left"]["takeoff_lps"][0]
    mid = ph.groups.TransformPhysicalPointToIndex(
        [(x_right + x_left) / 2, *ph.meta["branches"]["renal_left"]["takeoff_lps"][1:]])[0]
    right = np.zeros(a.shape, bool)  # LPS: the patient's right has the smaller x
    right[..., :mid] = True
    a[(a == 4) & right] = 0
    groups = sitk.GetImageFromArray(a)
    groups.CopyInformation(ph.groups)
    sitk.WriteImage(ph.ct, str(tmp_path / "case.nii.gz"))
    sitk.WriteImage(groups, str(tmp_path / "case_groups.nrrd"))
    case = Case("case", str(tmp_path / "case.nii.gz"), str(tmp_path / "case_groups.nrrd"))
    for status in ("ok", "skipped (done)"):
        lines = []
        run_cohort([case], tmp_path / "out", Options(groups_model=None, scene=False), log=lines.append)
        line = next(x for x in lines if "case:" in x)
        assert f"case: {status}" in line and "right renal not found" in line, line
        assert "left renal" not in line and "renal not found" not in line.replace("right renal", "")
    t = pd.read_csv(tmp_path / "out" / "case" / "scores.csv").set_index("region")
    assert t.loc["renal_right", "state"] == "not found" and t.loc["renal_left", "state"] == "measured"
