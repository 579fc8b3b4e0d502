"""Same scan, same answer: voxel order, reruns, resampling; one-line errors.

The networks work on a grid of identity direction whatever the file's voxel order; the
pipeline works in LPS order and writes its masks back on the input's grid; a finished case
is reused only for the same input content and options; the default calcium rule does not
follow the image noise.
"""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from CalciumScoringLib.cohort.runner import Case, Options, fingerprint, process_case
from CalciumScoringLib.imagecheck import onto, to_lps
from CalciumScoringLib.segmentation.engine import _resample, work_grid

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "scripts"))


def ras(img):
    """The same image stored in RAS voxel order (x and y flipped)."""
    from reproducibility import variant

    return variant(img, "ras")


def test_work_grid_is_the_same_for_any_voxel_order(phantom_cache):
    ph = phantom_cache(5, spacing=(0.9, 0.8, 1.5), fov="vessels")
    ct = ph.ct
    other = ras(ct)
    assert not np.array_equal(sitk.GetArrayViewFromImage(other), sitk.GetArrayViewFromImage(ct))
    size, origin = work_grid(ct, (2.0, 2.0, 2.0))
    size_r, origin_r = work_grid(other, (2, 2, 2))
    assert size_r == size and origin_r == pytest.approx(origin)
    assert origin == pytest.approx(list(ct.GetOrigin()))  # an LPS image keeps its grid
    assert size == [int(round(n * s / 2.0)) for n, s in zip(ct.GetSize(), ct.GetSpacing())]
    a = sitk.GetArrayFromImage(_resample(sitk.Cast(ct, sitk.sitkFloat32), (2, 2, 2),
                                         sitk.sitkLinear, -1024.0))
    b = sitk.GetArrayFromImage(_resample(sitk.Cast(other, sitk.sitkFloat32), (2, 2, 2),
                                         sitk.sitkLinear, -1024.0))
    assert np.abs(a - b).max() < 1e-2  # the same network input, to float rounding
    # a permuted volume (sagittal slices) too
    perm = sitk.PermuteAxes(ct, [2, 1, 0])
    assert np.allclose(work_grid(perm, (2, 2, 2))[1], origin)


def test_to_lps_and_back_is_exact(phantom_cache):
    ph = phantom_cache(5, spacing=(0.9, 0.8, 1.5), fov="vessels")
    stored = ras(ph.groups)
    lps = to_lps(stored)
    assert np.allclose(lps.GetDirection(), np.eye(3).ravel())
    assert np.array_equal(sitk.GetArrayViewFromImage(lps), sitk.GetArrayViewFromImage(ph.groups))
    back = onto(lps, stored)
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(stored))
    assert to_lps(ph.groups) is ph.groups


@pytest.mark.slow
def test_ras_voxel_order_gives_the_same_scores(tmp_path, phantom_cache):
    """The whole pipeline, networks included, on one phantom stored in LPS and in RAS voxel
    order: the same artery volume and calcium per group (the landed code lost the
    mesenteric group and 40 % of the aorta), the masks written on each file's own grid."""
    ph = phantom_cache(3, spacing=(1.2, 1.2, 1.5), fov="vessels")
    sitk.WriteImage(ph.ct, str(tmp_path / "lps.nrrd"))
    sitk.WriteImage(ras(ph.ct), str(tmp_path / "ras.nrrd"))
    o = Options(threads=2, scene=False)
    for name in ("lps", "ras"):
        assert process_case(Case(name, str(tmp_path / f"{name}.nrrd")), tmp_path / "out", o)[
            "status"] == "ok"
    a = pd.read_csv(tmp_path / "out" / "lps" / "scores.csv").set_index("region")
    b = pd.read_csv(tmp_path / "out" / "ras" / "scores.csv").set_index("region")
    for region in ("aorta", "iliac", "mesenteric", "renal", "combined"):
        for col in ("artery_volume_mm3", "calcium_volume_mm3"):
            assert b.loc[region, col] == pytest.approx(a.loc[region, col], rel=0.02, abs=5.0), \
                (region, col)
    assert a.loc["mesenteric", "artery_volume_mm3"] > 500
    written = sitk.ReadImage(str(tmp_path / "out" / "ras" / "arteries_full.nii.gz"))
    assert np.allclose(written.GetDirection(), ras(ph.ct).GetDirection())
    lps_written = sitk.ReadImage(str(tmp_path / "out" / "lps" / "arteries_full.nii.gz"))
    flipped = sitk.GetArrayFromImage(written)[:, ::-1, ::-1]
    assert np.mean(flipped == sitk.GetArrayFromImage(lps_written)) > 0.999


def _case_files(folder, seed, name="ct"):
    from CalciumScoringLib.phantoms.generator import make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    ph = make_phantom(seed, spacing=(1.5, 1.5, 2.0), fov="vessels")
    sitk.WriteImage(ph.ct, str(folder / f"{name}.nii.gz"))
    sitk.WriteImage(ph.groups, str(folder / "groups.nrrd"))
    return Case(name, str(folder / f"{name}.nii.gz"), str(folder / "groups.nrrd"))


def test_a_rerun_never_keeps_another_scans_scores(tmp_path):
    """``run a/ct.nii.gz out`` then ``run b/ct.nii.gz out``: the second is computed, not
    "skipped (done)"; the same input and options are reused; another option recomputes."""
    a, b = _case_files(tmp_path / "a", 4), _case_files(tmp_path / "b", 6)
    o = Options(groups_model=None, scene=False)
    out = tmp_path / "out"
    assert process_case(a, out, o)["status"] == "ok"
    first = json.loads((out / "ct" / "scores.json").read_text())
    assert process_case(a, out, o)["status"] == "skipped (done)"
    assert process_case(a, out, Options(groups_model=None, scene=False, threads=1))["status"] \
        == "skipped (done)"  # threads do not change the result
    assert process_case(b, out, o)["status"] == "ok"
    second = json.loads((out / "ct" / "scores.json").read_text())
    assert second["provenance"]["input"] == b.ct
    assert second["provenance"]["fingerprint"]["inputs"]["ct"] != \
        first["provenance"]["fingerprint"]["inputs"]["ct"]
    fixed = Options(groups_model=None, scene=False, calcium_method="fixed")
    assert process_case(b, out, fixed)["status"] == "ok"
    rec = json.loads((out / "ct" / "scores.json").read_text())
    assert rec["provenance"]["calcification"]["method"] == "fixed"
    assert fingerprint(b, fixed) != fingerprint(b, o)


def test_cli_errors_are_one_line(tmp_path):
    case = _case_files(tmp_path / "in", 4)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cmd = [sys.executable, "-m", "CalciumScoringLib.cohort.cli", "run"]
    r = subprocess.run(cmd + [case.ct, str(blocker / "out"), "--groups", case.groups],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "cannot write to the output folder" in r.stderr
    listing = tmp_path / "cases.csv"
    pd.DataFrame({"ct": [case.ct, case.ct]}).to_csv(listing, index=False)
    r = subprocess.run(cmd + [str(listing), str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "duplicate case ids" in r.stderr and r.stderr.strip().count("\n") == 0


def test_default_calcium_stays_put_when_resampled(phantom_cache):
    """The default lumen-relative rule (a fixed margin above the lumen, pieces >= 2 mm3)
    keeps a phantom's calcium within 10 % when the CT is resampled half a voxel over,
    turned 20 degrees or made 50 % noisier (the groups held fixed).  On the real scans the
    adaptive rule (lumen + 4 robust SD) moved +10 to +138 % for half a voxel
    (docs/validation.md); on this phantom, whose groups hold a soft-tissue wall, it does
    not, so the real scans are the evidence there."""
    from reproducibility import per_group, variant

    from CalciumScoringLib.scoring import thresholds as th

    ph = phantom_cache(2, spacing=(0.8, 0.8, 1.0), fov="vessels", noise_hu=25.0)
    own = per_group(ph.ct, ph.groups, th.lumen_relative(ph.ct, ph.groups > 0))["combined"]
    assert own > 50
    from CalciumScoringLib.qc.checks import calcium_noise_flags

    for kind in ("shift", "oblique", "noise+50"):
        moved = variant(ph.ct, kind, ph.groups)
        groups = sitk.Resample(ph.groups, moved, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        found = th.lumen_relative(moved, groups > 0)
        got = per_group(moved, groups, found)["combined"]
        flags = calcium_noise_flags(dict(th.threshold_record(found), method="lumen_relative"),
                                    moved.GetSpacing())
        # within 10 %, or flagged: the noise then reaches the margin (noise+50 here: +45 %)
        assert abs(got / own - 1) < 0.10 or flags, (kind, got, own)
        assert bool(flags) == (kind == "noise+50"), (kind, flags)
    rec = th.threshold_record(th.lumen_relative(ph.ct, ph.groups > 0))
    assert rec["margin_hu"] == 130 and rec["threshold_hu"] == pytest.approx(rec["lumen_hu"] + 130)
    assert 15 < rec["noise_hu"] < 40  # the phantom's noise, measured from neighbour pairs


def test_noise_and_thick_voxels_flag_the_calcium():
    from CalciumScoringLib.qc.checks import calcium_noise_flags

    src = {"method": "lumen_relative", "noise_hu": 20.0, "margin_hu": 130.0}
    assert calcium_noise_flags(src, (0.8, 0.8, 1.0)) == []
    assert calcium_noise_flags(src, (3.0, 3.0, 3.0))[0]["code"] == "calcium_not_reproducible"
    noisy = dict(src, noise_hu=45.0)
    assert "45 HU" in calcium_noise_flags(noisy, (0.8, 0.8, 1.0))[0]["message"]
    assert calcium_noise_flags({"segmentation": "mine"}, (3.0, 3.0, 3.0)) == []


def test_nan_voxels_are_flagged_and_invalidate(phantom_cache):
    from CalciumScoringLib.qc import checks as qc
    from CalciumScoringLib.qc.states import invalid_reasons

    ph = phantom_cache(5, spacing=(0.9, 0.8, 1.5), fov="vessels")
    a = sitk.GetArrayFromImage(ph.ct).astype(np.float32)
    a[10, 10:20, 10:20] = np.nan
    img = sitk.GetImageFromArray(a)
    img.CopyInformation(ph.ct)
    flags = qc.check_ct(img)
    assert [f["code"] for f in flags] == ["nan_voxels"]
    assert invalid_reasons(flags) == ["nan_voxels"]
    clean = sitk.GetArrayFromImage(qc.clean_ct(img))
    assert np.isfinite(clean).all() and clean[10, 15, 15] == -1024
    assert np.isnan(sitk.GetArrayViewFromImage(img)[10, 15, 15])  # the input untouched
