"""The validation toolkit on a synthetic cohort with known perturbations."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from CalciumScoringLib.phantoms.generator import make_phantom
from CalciumScoringLib.validation.evaluate import compare_tables, validate_cohort
from CalciumScoringLib.validation.report import write_report

SP = (1.5, 1.5, 1.5)


def plaques():
    return [{"branch": "aorta", "arc_mm": 45.0, "angle_deg": 30, "radius_mm": 3.0, "hu": 900.0},
            {"branch": "aorta", "arc_mm": 85.0, "angle_deg": 200, "radius_mm": 2.5, "hu": 700.0},
            {"branch": "iliac_left", "arc_mm": 22.0, "angle_deg": 90, "radius_mm": 2.5, "hu": 800.0},
            {"branch": "sma", "arc_mm": 30.0, "angle_deg": 90, "radius_mm": 2.5, "hu": 800.0}]


def like(arr, ref):
    im = sitk.GetImageFromArray(arr.astype(np.uint8))
    im.CopyInformation(ref)
    return im


@pytest.fixture(scope="module")
def cohort():
    cases, dropped = [], []
    for i in range(4):
        ph = make_phantom(30 + i, spacing=SP, fov="vessels", plaques=plaques(), noise_hu=10.0,
                          accessory_renal=False)
        ids = sitk.GetArrayFromImage(ph.arteries) == 2
        lab = ndimage.label(ids, np.ones((3, 3, 3)))[0]
        auto_c = ids.copy()
        removed = 0.0
        if i < 2:  # the automated method misses the first aortic plaque in cases 0 and 1
            first = ph.meta["plaques"][0]
            c = np.array(first["center_lps"])
            k = np.round(np.linalg.solve(np.diag(SP), c - ph.ct.GetOrigin())).astype(int)
            pid = lab[k[2], k[1], k[0]]
            assert pid > 0
            auto_c &= lab != pid
            removed = first["volume_mm3"]
        g = sitk.GetArrayFromImage(ph.groups)
        auto_g = g.copy()
        if i == 3:  # the automated groups miss the renal arteries
            auto_g[auto_g == 4] = 0
        cases.append({"case_id": f"c{i}", "ct": ph.ct, "ref_groups": ph.groups,
                      "ref_calcium": like(ids, ph.ct), "auto_groups": like(auto_g, ph.ct),
                      "auto_calcium": like(auto_c, ph.ct)})
        dropped.append((removed, ids.sum() * np.prod(SP), (g == 1).sum()))
    return cases, dropped


def test_known_dice_and_bias(cohort, tmp_path):
    cases, dropped = cohort
    res = validate_cohort(cases)
    assert res.errors[~res.errors.error.str.startswith("note")].empty
    seg = res.segmentation
    art = seg[seg.structure == "arteries (shortened)"].set_index(["case_id", "region"])
    for i in range(3):
        for g in ("aorta", "iliac", "mesenteric", "renal", "combined"):
            assert art.loc[(f"c{i}", g), "dice"] == 1.0
    assert art.loc[("c3", "renal"), "dice"] == 0.0
    assert art.loc[("c3", "renal"), "sensitivity"] == 0.0
    assert art.loc[("c3", "aorta"), "dice"] == 1.0  # the aortic cut does not depend on the renals
    calc = seg[(seg.structure == "calcification (unshortened)") & (seg.method == "automated")]
    calc = calc.set_index("case_id")
    for i, (removed, total, _) in enumerate(dropped):
        assert calc.loc[f"c{i}", "dice"] == pytest.approx(2 * (total - removed) / (2 * total - removed))
    summary = res.summary().set_index(["method", "region", "score"])
    bias = summary.loc[("automated", "combined", "calcium_volume_mm3"), "bias"]
    assert bias == pytest.approx(-np.mean([d[0] for d in dropped]))
    cnt = summary.loc[("automated", "aorta", "cluster_count"), "bias"]
    assert cnt == pytest.approx(-0.5)  # one aortic cluster missed in two of four cases
    sc = res.scores.set_index(["case_id", "method", "region"])
    for i, (removed, _, _) in enumerate(dropped):
        row = sc.loc[(f"c{i}", "automated", "aorta")]
        assert row.burden_ref - row.burden_test == pytest.approx(
            removed / row.calcium_volume_mm3_ref * row.burden_ref if removed else 0.0)
    assert {"automated", "idealised", "fixed", "adaptive"} == set(res.scores.method)
    ideal = seg[(seg.method == "idealised")].dice.mean()
    assert ideal >= seg[(seg.method == "fixed")].dice.mean()

    write_report(res, tmp_path)
    for f in ("per_case_segmentation.csv", "per_case_scores.csv", "summary_agreement.csv",
              "summary_segmentation.csv", "errors.csv", "summary.md", "summary.html",
              "figures/burden_combined.png", "figures/burden_combined.svg",
              "figures/cluster_mean_mm3_aorta.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    assert "Score agreement" in (tmp_path / "summary.md").read_text()


def test_bad_cohort_is_reported_per_case(cohort, tmp_path):
    cases, _ = cohort
    bad = [dict(cases[0]), dict(cases[1]), dict(cases[2], case_id="missing",
                                                  auto_calcium=str(tmp_path / "nope.nii.gz")),
           dict(cases[0])]
    g = sitk.GetArrayFromImage(cases[1]["ref_groups"])
    g[g == 4] = 0  # reference without renal arteries
    bad[1]["ref_groups"] = like(g, cases[1]["ct"])
    res = validate_cohort(bad, methods=("automated", "fixed"))
    errs = res.errors.set_index("case_id").error
    assert "does not exist" in errs["missing"]
    assert "duplicate" in errs["c0"].iloc[0] if isinstance(errs["c0"], pd.Series) else errs["c0"]
    assert any("reference has no renal" in e for e in res.errors.error)
    assert set(res.scores.case_id) == {"c0", "c1"}  # the rest is still evaluated
    renal = res.scores[(res.scores.case_id == "c1") & (res.scores.region == "renal")]
    assert not renal.reference_present.any()


def test_compare_two_score_tables_with_mismatched_ids():
    a = pd.DataFrame({"case_id": ["1", "2", "3", "4"] * 1, "region": ["combined"] * 4,
                      "burden": [0.1, 0.2, 0.3, 0.4], "cluster_count": [1, 2, 3, 4]})
    b = pd.DataFrame({"case_id": ["2", "3", "4", "5"], "region": ["combined"] * 4,
                      "burden": [0.2, 0.31, 0.39, 0.5], "cluster_count": [2, 3, 5, 1]})
    summary, problems = compare_tables(a, b)
    assert set(problems.case_id) == {"1", "5"}
    s = summary.set_index("score")
    assert s.loc["burden", "n"] == 3
    assert s.loc["burden", "bias"] == pytest.approx(np.mean([0.0, -0.01, 0.01]))
    assert s.loc["cluster_count", "bias"] == pytest.approx(-1 / 3)


def test_validate_command_on_files(cohort, tmp_path):
    from CalciumScoringLib.cohort.cli import main

    cases, _ = cohort
    rows = []
    for c in cases[:3]:
        row = {"case_id": c["case_id"]}
        for k in ("ct", "ref_groups", "ref_calcium", "auto_groups", "auto_calcium"):
            sitk.WriteImage(c[k], str(tmp_path / f"{c['case_id']}_{k}.nii.gz"))
            row[k] = f"{c['case_id']}_{k}.nii.gz"
        rows.append(row)
    rows.append(dict(rows[0], case_id="broken", ct="missing.nii.gz"))
    pd.DataFrame(rows).to_csv(tmp_path / "cohort.csv", index=False)
    out = tmp_path / "val"
    code = main(["validate", str(tmp_path / "cohort.csv"), str(out), "--methods", "automated",
                 "fixed", "--no-figures"])
    assert code == 1  # one case failed, and the exit code says so
    scores = pd.read_csv(out / "per_case_scores.csv")
    assert set(scores.case_id) == {"c0", "c1", "c2"}
    assert "broken" in set(pd.read_csv(out / "errors.csv").case_id)
    auto = scores[scores.method == "automated"]
    test_t = auto.rename(columns={"burden_test": "burden"})[["case_id", "region", "burden"]]
    ref_t = auto.rename(columns={"burden_ref": "burden"})[["case_id", "region", "burden"]]
    test_t.to_csv(tmp_path / "a.csv", index=False)
    ref_t.to_csv(tmp_path / "b.csv", index=False)
    assert main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
                 str(tmp_path / "cmp")]) == 0
    summ = pd.read_csv(tmp_path / "cmp" / "summary_agreement.csv").set_index(["region", "score"])
    d = auto[auto.region == "aorta"]
    assert summ.loc[("aorta", "burden"), "bias"] == pytest.approx((d.burden_test - d.burden_ref).mean())


def test_comparison_figure_colours_agreement_misses_and_extras(tmp_path):
    """Green where both masks agree, blue for reference-only, red for test-only voxels."""
    import matplotlib.image as mpimg

    from CalciumScoringLib.cohort.figures import AGREEMENT_COLOURS, comparison_figure

    ph = make_phantom(1, spacing=(2.0, 2.0, 2.0), n_plaques=0)
    ref = sitk.GetArrayFromImage(ph.groups)
    test = np.where(ref == 2, 0, ref)                     # iliacs missed
    test[ndimage.binary_dilation(ref == 1, iterations=2) & (ref == 0)] = 1  # aorta too wide
    png = comparison_figure(tmp_path / "c.png", ph.ct, ph.groups, like(test, ph.groups),
                            title="t", labels={1: "aorta", 2: "iliac"})
    rgb = mpimg.imread(png)[..., :3]
    def drawn(rgb, v):  # projection pixels: the colour at 85 % opacity over black
        return int((np.abs(rgb - 0.85 * np.array(AGREEMENT_COLOURS[v])).max(-1) < 0.02).sum())

    assert all(drawn(rgb, v) > 50 for v in (1, 2, 3)), [drawn(rgb, v) for v in (1, 2, 3)]
    # no misses and no extras when the test mask equals the reference
    png = comparison_figure(tmp_path / "same.png", ph.ct, ph.groups, ph.groups)
    rgb = mpimg.imread(png)[..., :3]
    assert drawn(rgb, 1) > 50 and drawn(rgb, 2) == 0 and drawn(rgb, 3) == 0
