"""Bad input gets a clear message or a QC flag (issue: cohort processing)."""

import numpy as np
import pytest
import SimpleITK as sitk

from CalciumScoringLib.qc import checks as qc
from CalciumScoringLib.cohort.runner import read_ct


def ct_like(arr, spacing=(1.0, 1.0, 1.0), direction=None):
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(spacing)
    if direction is not None:
        im.SetDirection(direction)
    return im


def body(shape=(20, 40, 40)):
    a = np.full(shape, -1000, np.int16)
    a[:, 5:35, 5:35] = 40
    a[:, 15:20, 15:20] = 300
    return a


def test_usable_ct_has_no_flags():
    assert qc.check_ct(ct_like(body())) == []


@pytest.mark.parametrize("make,match", [
    (lambda: sitk.Image(30, 30, sitk.sitkInt16), "2D"),
    (lambda: ct_like(body()[:1]), "2D"),
    (lambda: sitk.Image([10, 10, 10, 3], sitk.sitkInt16), "4D"),
    (lambda: sitk.Compose([ct_like(body())] * 3), "components"),
    (lambda: ct_like(np.random.default_rng(0).integers(0, 4, (20, 40, 40)).astype(np.uint8)),
     "label map"),
    (lambda: ct_like((np.random.default_rng(0).random((20, 40, 40)) * 800).astype(np.int16)),
     "not CT Hounsfield"),
])
def test_unusable_input_is_refused_with_a_message(make, match):
    with pytest.raises(qc.InputError, match=match):
        qc.check_ct(make())


def test_memory_estimate_refuses_before_processing():
    with pytest.raises(qc.InputError, match="GiB"):
        qc.check_ct(ct_like(body()), memory=1000)


def test_flags_thick_oblique_nan():
    assert [f["code"] for f in qc.check_ct(ct_like(body(), (0.8, 0.8, 6.0)))] == ["thick_slices"]
    a = np.deg2rad(20)
    D = (np.cos(a), -np.sin(a), 0, np.sin(a), np.cos(a), 0, 0, 0, 1)
    assert [f["code"] for f in qc.check_ct(ct_like(body(), direction=D))] == ["oblique"]
    f = body().astype(np.float32)
    f[3, 3, 3] = np.nan
    f[4, 4, 4] = np.inf
    im = ct_like(f)
    flags = qc.check_ct(im)
    assert flags[0]["code"] == "nan_voxels" and "2 NaN" in flags[0]["message"]
    clean = qc.clean_ct(im)
    assert np.isfinite(sitk.GetArrayViewFromImage(clean)).all()
    assert np.isnan(sitk.GetArrayViewFromImage(im)[3, 3, 3])  # the input is untouched


def test_result_flags_on_phantoms(phantom_cache):
    from CalciumScoringLib.phantoms.generator import make_phantom

    ph = make_phantom(50, spacing=(1.5, 1.5, 1.5), fov="vessels", lumen_hu=90.0, metal=True,
                      margin_mm=60.0)
    codes = {f["code"] for f in qc.check_result(ph.ct, ph.groups, ph.arteries == 2)}
    assert {"no_contrast", "metal"} <= codes and "aorta_truncated" not in codes
    ok = phantom_cache(2, (2.0, 2.0, 2.0), fov="vessels")
    codes = {f["code"] for f in qc.check_result(ok.ct, ok.groups, ok.arteries == 2)}
    assert "no_contrast" not in codes and "aorta_truncated" not in codes
    lo = np.array(ok.meta["branches"]["aorta"]["centerline_lps"]).min(0) - 60
    hi = np.array(ok.meta["branches"]["aorta"]["centerline_lps"]).max(0) + 60
    hi[2] = 0.0  # the field of view ends at the celiac trunk: the aorta is cut
    cut = make_phantom(2, spacing=(2.0, 2.0, 2.0), fov=(lo.tolist(), hi.tolist()))
    codes = {f["code"] for f in qc.check_result(cut.ct, cut.groups)}
    assert "aorta_truncated" in codes
    assert [f["code"] for f in qc.check_result(ok.ct, ok.groups * 0)] == ["no_arteries"]


def test_calcium_network_that_misses_the_arteries_is_flagged():
    """A calcification network that labels almost none of the artery groups as artery has
    not recognised them (arteries-calcium 0.4.6874 on ircad01_abdomen: 0.3 %)."""
    g = np.zeros((10, 20, 20), np.uint8)
    g[:, 5:15, 5:15] = 1  # 1,000 group voxels
    lab = np.zeros_like(g)
    lab[:, 5:15, 5:9] = 1
    lab[:, 5:15, 9] = 2  # 500 labelled: 400 artery, 100 calcium
    cov = qc.calcium_network_coverage(ct_like(lab), ct_like(g))
    assert cov == pytest.approx(0.5)
    assert qc.calcium_network_flags({"model": "x", "artery_coverage": cov}) == []
    lab[:, 5:15, 9] = 0
    cov = qc.calcium_network_coverage(ct_like(lab), ct_like(g))
    (f,) = qc.calcium_network_flags({"model": "x", "artery_coverage": cov})
    assert f["code"] == "calcium_network_unsure" and "40 %" in f["message"]
    assert qc.calcium_network_flags({"method": "adaptive", "threshold_hu": 300.0}) == []
    assert np.isnan(qc.calcium_network_coverage(ct_like(lab), ct_like(g * 0)))
    assert qc.calcium_network_flags({"artery_coverage": float("nan")}) == []


def test_dicom_series_empty_and_truncated(shared_data, tmp_path):
    import shutil

    src = shared_data / "ts_dicom_series" / "dicom"
    img = read_ct(src)
    assert img.GetSize() == (512, 512, 20)
    assert qc.check_ct(img) == [] or all(f["code"] != "thick_slices" for f in qc.check_ct(img))
    files = sorted(src.iterdir())
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in files[:8] + files[10:]:  # two slices missing in the middle
        shutil.copy(f, broken / f.name)
    with pytest.raises(qc.InputError, match="missing slices"):
        read_ct(broken)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(qc.InputError, match="no DICOM"):
        read_ct(empty)


def test_real_noncontrast_ct_is_flagged(shared_data):
    ct = sitk.ReadImage(str(shared_data / "ts_abdomen_ct" / "ct.nii.gz"))
    groups = sitk.ReadImage(str(shared_data / "ts_abdomen_ct" / "groups.nii.gz"))
    assert qc.check_ct(ct) == [] or {f["code"] for f in qc.check_ct(ct)} <= {"oblique"}
    codes = {f["code"] for f in qc.check_result(ct, sitk.Cast(groups, sitk.sitkUInt8))}
    assert "no_contrast" in codes
    assert "metal" in codes  # the hip implant next to the iliac arteries


def test_missing_or_zero_spacing_in_file_headers(tmp_path):
    a = (np.random.default_rng(0).normal(0, 100, (20, 30, 30))).astype("<i2")
    head = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 30 30 20\nendian: little\nencoding: raw\n"
    (tmp_path / "zero.nrrd").write_bytes(head + b"spacings: 0 0 0\n\n" + a.tobytes())
    (tmp_path / "none.nrrd").write_bytes(head + b"\n" + a.tobytes())
    with pytest.raises(qc.InputError, match="zero or unreadable.*spacing"):
        read_ct(tmp_path / "zero.nrrd")
    with pytest.raises(qc.InputError, match="no voxel spacing"):
        read_ct(tmp_path / "none.nrrd")
    good = ct_like(body(), (0.8, 0.8, 2.0))
    sitk.WriteImage(good, str(tmp_path / "good.nrrd"))
    sitk.WriteImage(good, str(tmp_path / "good.nii.gz"))
    assert read_ct(tmp_path / "good.nrrd").GetSpacing() == pytest.approx((0.8, 0.8, 2.0))
    assert read_ct(tmp_path / "good.nii.gz").GetSpacing() == pytest.approx((0.8, 0.8, 2.0))


def test_side_arteries_followed_short_of_the_stump_are_flagged(phantom_cache, tmp_path):
    """A renal artery the segmentation stops 8 mm from the aorta is named, with its length;
    the whole phantom is not flagged."""
    from ArteryShorteningLib import shorten_arteries
    from scipy import ndimage

    ph = phantom_cache(3, (1.0, 1.0, 1.0), fov="vessels", n_plaques=0)
    assert qc.short_arteries_flag(shorten_arteries(ph.groups).branches, 25.0) is None
    g = sitk.GetArrayFromImage(ph.groups)
    dist = ndimage.distance_transform_edt(g != 1)  # mm from the aorta (1 mm voxels)
    spacing_x = np.asarray(ph.groups.GetDirection()).reshape(3, 3)[0, 0]
    x = ph.groups.GetOrigin()[0] + spacing_x * np.arange(g.shape[2])
    left = x[None, None, :] > np.median(x[np.nonzero(g == 1)[2]])  # LPS: +x is the left
    cut = g.copy()
    cut[(g == 4) & left & (dist > 8)] = 0
    img = sitk.GetImageFromArray(cut)
    img.CopyInformation(ph.groups)
    f = qc.short_arteries_flag(shorten_arteries(img).branches, 25.0)
    if tmp_path is not None:  # the command line says it, beside the scores
        from CalciumScoringLib.cohort.runner import Case, Options, process_case

        sitk.WriteImage(ph.ct, str(tmp_path / "ct.nrrd"))
        sitk.WriteImage(img, str(tmp_path / "groups.nrrd"))
        res = process_case(Case("short", str(tmp_path / "ct.nrrd"), str(tmp_path / "groups.nrrd")),
                           tmp_path / "out", Options(scene=False))
        assert "side_arteries_short" in res["qc"].split(";"), res
    assert f is not None and f["code"] == "side_arteries_short", f
    names = f["message"].split(": ")[1].split(" (")[0].split(", ")
    assert len(names) == 1 and names[0].startswith("left renal"), f["message"]
    assert 5 <= float(names[0].split()[-2]) <= 11, f["message"]
    # the same rule on a report: mesenteric judged by its longest piece, pairs per side
    import pandas as pd
    rep = pd.DataFrame({"group": ["mesenteric", "mesenteric", "renal", "renal", "renal"],
                        "side": ["midline", "midline", "left", "left", "right"],
                        "kept": [True, True, True, True, False],
                        "length_mm": [12.0, 25.0, 6.0, 24.0, 3.0]})
    assert qc.short_arteries_flag(rep, 25.0) is None  # the longest left renal reaches 24 mm
    rep.loc[3, "length_mm"] = 15.0
    assert "left renal 15 mm" in qc.short_arteries_flag(rep, 25.0)["message"]
    assert "mesenteric" not in qc.short_arteries_flag(rep, 25.0)["message"]


def test_calcium_kept_near_metal_is_said():
    """Calcium left next to metal (a stent's faint wire may be among it) is flagged even when
    no piece was taken out; neither number: no flag."""
    from CalciumScoringLib.qc.checks import metal_flags

    assert metal_flags({"metal_excluded_mm3": 0.0, "metal_near_mm3": 0.0}) == []
    assert metal_flags(None) == []
    (f,) = metal_flags({"metal_excluded_mm3": 0.0, "metal_near_mm3": 254.9, "metal_hu": 2000.0})
    assert f["code"] == "metal_not_calcium" and "255 mm3 of the calcium scored" in f["message"]
    assert "taken for metal" not in f["message"]
    (f,) = metal_flags({"metal_excluded_mm3": 2923.85, "metal_pieces": 14, "metal_hu": 2000.0,
                        "metal_near_mm3": 254.9})
    assert "2,924 mm3 in 14 bright pieces reaching 2000 HU" in f["message"]
    assert "within 20 mm of metal" in f["message"]
