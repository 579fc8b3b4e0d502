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
