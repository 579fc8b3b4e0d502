"""Threshold baselines: the published failure of the fixed threshold, the idealised optimum."""

import numpy as np
import pytest
import SimpleITK as sitk

from CalciumScoringLib.scoring import thresholds as th
from CalciumScoringLib.phantoms.generator import make_phantom


def arr(im):
    return sitk.GetArrayFromImage(im)


def dice(a, b):
    a, b = arr(a) > 0, np.asarray(b) > 0
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def bright_lumen():
    """Lumen at 550 HU (above the clinical 470 HU) with 700-1400 HU plaques."""
    return make_phantom(21, spacing=(1.0, 1.0, 1.0), fov="vessels", lumen_hu=550.0,
                        noise_hu=12.0, plaque_hu=(700.0, 1400.0), n_plaques=14,
                        plaque_radius_mm=(2.0, 3.5))


def test_fixed_threshold_fails_on_a_bright_lumen_adaptive_does_not(bright_lumen):
    ph = bright_lumen
    arteries = ph.groups > 0
    truth = arr(ph.arteries) == 2
    lumen = arr(ph.lumen) > 0
    fixed = th.fixed(ph.ct, arteries)
    assert float(fixed.GetMetaData("threshold_hu")) == 470.0
    f = arr(fixed) > 0
    assert (f & lumen & ~truth).sum() > 0.8 * (lumen & ~truth).sum()  # the whole lumen marked
    assert f.sum() > 10 * truth.sum()
    assert dice(fixed, truth) < 0.2
    adapt = th.adaptive(ph.ct, arteries)
    assert float(adapt.GetMetaData("threshold_hu")) > 550
    assert dice(adapt, truth) > 0.6
    assert arr(adapt).sum() < 1.5 * truth.sum()


def test_idealised_threshold_recovers_the_plaque_threshold():
    ph = make_phantom(22, spacing=(1.0, 1.0, 1.0), fov="vessels", lumen_hu=300.0, wall_hu=40.0,
                      noise_hu=0.0, pv_sigma_mm=0.0, plaque_hu=(700.0, 700.0), n_plaques=10)
    arteries, truth = ph.groups > 0, ph.arteries == 2
    values = arr(ph.ct)[arr(arteries) > 0]
    step = (values.max() - values.min()) / 100
    thr, d = th.idealised_threshold(ph.ct, arteries, truth)
    assert d == 1.0
    assert 300 < thr <= 300 + step  # the first step above the lumen separates the plaques
    assert dice(th.idealised(ph.ct, arteries, truth), arr(truth)) == 1.0


def test_idealised_is_an_upper_bound(bright_lumen):
    ph = bright_lumen
    arteries, truth = ph.groups > 0, ph.arteries == 2
    _, best = th.idealised_threshold(ph.ct, arteries, truth)
    for method in (th.fixed, th.adaptive, th.otsu, th.display_8bit):
        assert dice(method(ph.ct, arteries), arr(truth)) <= best + 1e-9


def test_8bit_display_scale_and_otsu_on_a_ramp():
    ct = np.arange(-500, 1500, dtype=np.int16).reshape(1, 40, 50)
    img = sitk.GetImageFromArray(ct)
    mask = sitk.GetImageFromArray(np.ones(ct.shape, np.uint8))
    out = arr(th.display_8bit(img, mask))  # window 300 +- 750: 8-bit 146 starts at 408.8 HU
    assert out[ct == 408].sum() == 0 and out[ct == 409].sum() == 1
    assert out.sum() == (ct >= 409).sum()
    assert out.sum() == (ct >= float(th.display_8bit(img, mask).GetMetaData("threshold_hu"))).sum()
    two = np.where(np.arange(2000).reshape(1, 40, 50) < 1500, 100, 900).astype(np.int16)
    o = th.otsu(sitk.GetImageFromArray(two), mask)
    assert 100 <= float(o.GetMetaData("threshold_hu")) < 900  # voxels strictly above it
    assert arr(o).sum() == 500


def test_adaptive_variants_and_errors(bright_lumen):
    ph = bright_lumen
    arteries = ph.groups > 0
    t_mean = float(th.adaptive(ph.ct, arteries, method="mean_sd", k=3).GetMetaData("threshold_hu"))
    t_mm = float(th.adaptive(ph.ct, arteries, method="median_max").GetMetaData("threshold_hu"))
    assert t_mean > 550 and t_mm > 550
    with pytest.raises(ValueError, match="method"):
        th.adaptive(ph.ct, arteries, method="nope")
    with pytest.raises(ValueError, match="empty"):
        th.adaptive(ph.ct, arteries * 0)
    other = sitk.Image(10, 10, 10, sitk.sitkUInt8)
    with pytest.raises(ValueError, match="does not share"):
        th.fixed(ph.ct, other)


def _with_stent(ph, hu=3000.0):
    """The phantom's CT with a stent on the aortic wall: rings every 6 mm over 60 mm of the
    aorta joined by four struts (one connected piece), and the stent's voxels."""
    from scipy import ndimage

    ct = arr(ph.ct).astype(np.float32)
    aorta = arr(ph.groups) == 1
    wall = aorta & ~ndimage.binary_erosion(aorta)
    zs = np.flatnonzero(aorta.any(axis=(1, 2)))
    z0 = zs[len(zs) // 2] - 30
    stent = np.zeros(aorta.shape, bool)
    for z in range(z0, z0 + 60):
        ring = wall[z]
        if not ring.any():
            continue
        if (z - z0) % 6 == 0:
            stent[z] = ring
        else:
            cy, cx = np.argwhere(aorta[z]).mean(0)
            yy, xx = np.nonzero(ring)
            ang = np.degrees(np.arctan2(yy - cy, xx - cx)) % 90
            keep = ang < 12
            stent[z, yy[keep], xx[keep]] = True
    ct[stent] = hu
    img = sitk.GetImageFromArray(ct)
    img.CopyInformation(ph.ct)
    return img, stent


def test_metal_is_not_calcium(bright_lumen):
    """A stent's struts pass the adaptive threshold (3000 HU): the pieces that reach
    METAL_HU go, wholly, with any calcium they touch; every other piece stays as it was."""
    from scipy import ndimage

    ph = bright_lumen
    arteries = ph.groups > 0
    ct, stent = _with_stent(ph)
    found = arr(th.adaptive(ct, arteries)) > 0
    assert (found & stent).sum() > 0.9 * stent.sum()  # the threshold takes the struts
    out, info = th.without_metal(ct, th.adaptive(ct, arteries))
    kept = arr(out) > 0
    pieces, _ = ndimage.label(found, np.ones((3, 3, 3)))
    metal = np.isin(pieces, np.unique(pieces[stent & found]))
    assert not (kept & stent).any()
    assert np.array_equal(kept, found & ~metal)
    vox = np.prod(ct.GetSpacing())
    assert info["metal_hu"] == th.METAL_HU and info["metal_pieces"] >= 1
    assert info["metal_excluded_mm3"] == pytest.approx(metal.sum() * vox, abs=0.01)
    assert info["metal_excluded_mm3"] >= stent.sum() * vox
    # nothing is lost where there is no metal
    clean = th.adaptive(ph.ct, arteries)
    same, none = th.without_metal(ph.ct, clean)
    assert np.array_equal(arr(same), arr(clean)) and none["metal_excluded_mm3"] == 0
    assert none["metal_near_mm3"] == 0
    assert same.GetMetaData("threshold_hu") == clean.GetMetaData("threshold_hu")
    # the calcium left is the stent-free calcium, less only the plaques the struts touch
    truth = arr(ph.arteries) == 2
    assert dice(out, truth) > dice(clean, truth) - 0.1
    assert dice(th.adaptive(ct, arteries), truth) < dice(clean, truth) - 0.2


def test_a_struts_rim_joined_to_it_by_its_blur_is_metal(bright_lumen):
    """A network labels a strut's blurred rim calcium and leaves the core out: the rim
    (1,300 HU, one voxel off the 3,000 HU struts) is metal when the voxels between reach
    half the metal level (1,400 HU), and stays when they do not (1,000 HU); calcium away
    from the stent is kept either way."""
    from scipy import ndimage

    ph = bright_lumen
    ct, stent = _with_stent(ph)
    hu = arr(ct)
    near = ndimage.binary_dilation(stent, np.ones((3, 3, 3)))
    rim = ndimage.binary_dilation(near, np.ones((3, 3, 3))) & ~near
    plaques = (arr(ph.arteries) == 2) & ~ndimage.binary_dilation(rim, iterations=3)
    assert plaques.sum() > 100
    vox = np.prod(ct.GetSpacing())
    to_metal = ndimage.distance_transform_edt(~stent, sampling=ct.GetSpacing()[::-1])
    for blur, gone in ((1400.0, True), (1000.0, False)):
        a = hu.copy()
        a[near & ~stent] = blur
        a[rim] = 1300.0
        img = sitk.GetImageFromArray(a)
        img.CopyInformation(ct)
        calc = sitk.GetImageFromArray((rim | plaques).astype(np.uint8))
        calc.CopyInformation(ct)
        out, info = th.without_metal(img, calc)
        kept = arr(out) > 0
        assert np.array_equal(kept[plaques], plaques[plaques])
        assert (not kept[rim].any()) if gone else kept[rim].all(), (blur, info)
        assert (info["metal_pieces"] >= 1) == gone
        # the calcium kept near the metal is said (a faint wire may be among it)
        close = (kept & (to_metal <= th.METAL_NEAR_MM)).sum() * vox
        assert info["metal_near_mm3"] == pytest.approx(close, abs=0.01)
        assert gone or close > rim.sum() * vox


def test_metal_level_of_a_clipped_ct(bright_lumen):
    """An export clipped at 2000 HU shows its struts at 2000: that is its metal level; a CT
    whose maximum is reached by a few voxels (bone, calcium) keeps METAL_HU."""
    ph = bright_lumen
    ct, stent = _with_stent(ph)
    clipped = sitk.Clamp(ct, sitk.sitkFloat32, -1024.0, 2000.0)
    assert th.metal_level(clipped) == 2000.0
    out, info = th.without_metal(clipped, th.adaptive(clipped, ph.groups > 0))
    assert info["metal_hu"] == 2000.0 and not (arr(out) > 0)[stent].any()
    assert th.metal_level(ph.ct) == th.METAL_HU  # plaques up to 1400 HU, unclipped
    low = sitk.Clamp(ct, sitk.sitkFloat32, -1024.0, 1023.0)  # 10-bit clip: bone and calcium too
    assert th.metal_level(low) == th.METAL_HU


def test_stent_graft_metal_is_not_calcium_in_real_cta(shared_data):
    """The real stent-graft CTA (clipped at 2000 HU): the adaptive threshold inside the
    bundled groups takes 3,179 mm3, 2,924 of them in 14 pieces reaching the clip level or
    joined to it through the struts' blur (the stent); without_metal leaves 255 mm3.  The
    contrast series (unclipped, maximum 1,839 HU reached once) loses nothing."""
    import sys

    from conftest import ROOT
    from CalciumScoringLib.segmentation.engine import segment
    from CalciumScoringLib.segmentation.models import bundled_model

    sys.path.insert(0, str(ROOT / "training"))
    from evaluate_real_ct import cases

    got = {}
    for name, ct, _, _ in cases(("stent_cta", "ts_dicom_series")):
        if name in ("stent_cta", "ts_dicom_series"):
            g = segment(ct, bundled_model("artery-groups"), threads=2)
            calc = th.adaptive(ct, g > 0)
            out, info = th.without_metal(ct, calc)
            vox = np.prod(ct.GetSpacing())
            got[name] = (arr(calc).sum() * vox, arr(out).sum() * vox, info)
    if "stent_cta" not in got:
        pytest.skip("stent_cta not in ../shared/data")
    before, after, info = got["stent_cta"]
    assert info["metal_hu"] == 2000.0 and info["metal_excluded_mm3"] > 0.8 * before, got
    assert after < 0.15 * before
    if "ts_dicom_series" in got:
        before, after, info = got["ts_dicom_series"]
        assert before > 1000 and after == before and info["metal_hu"] == th.METAL_HU
