"""The phantom generator draws the anatomy it was asked for, with exact labels."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from CalciumScoringLib.phantoms.generator import make_phantom

ISO = (1.0, 1.0, 1.0)


def arr(img):
    return sitk.GetArrayFromImage(img)


def phys_points(img, mask):
    """LPS coordinates (N, 3) of the voxel centres of ``mask`` (k, j, i)."""
    k, j, i = np.nonzero(mask)
    idx = np.column_stack([i, j, k]).astype(float) * np.array(img.GetSpacing())
    D = np.array(img.GetDirection()).reshape(3, 3)
    return np.array(img.GetOrigin()) + idx @ D.T


def oblique():
    a, b = np.deg2rad(25), np.deg2rad(15)
    Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return Rz @ Rx


def test_same_seed_same_phantom_and_seeds_differ():
    a = make_phantom(11, spacing=(2, 2, 2), fov="vessels")
    b = make_phantom(11, spacing=(2, 2, 2), fov="vessels")
    c = make_phantom(12, spacing=(2, 2, 2), fov="vessels")
    np.testing.assert_array_equal(arr(a.ct), arr(b.ct))
    np.testing.assert_array_equal(arr(a.groups), arr(b.groups))
    assert a.meta["plaques"] == b.meta["plaques"]
    assert a.ct.GetSize() != c.ct.GetSize() or not np.array_equal(arr(a.ct), arr(c.ct))


def test_all_images_share_one_grid_and_label_conventions(phantom_cache):
    ph = phantom_cache(1, ISO, fov="vessels")
    for img in (ph.arteries, ph.groups, ph.lumen, ph.plaque_ids):
        assert img.GetSize() == ph.ct.GetSize()
        assert img.GetOrigin() == ph.ct.GetOrigin()
        assert img.GetDirection() == ph.ct.GetDirection()
    a, g = arr(ph.arteries), arr(ph.groups)
    assert set(np.unique(a)) == {0, 1, 2}
    assert set(np.unique(g)) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(a > 0, g > 0)  # calcium lies inside the arteries
    assert ph.ct.GetPixelID() == sitk.sitkInt16


def test_groups_as_shown_drop_only_the_side_branches_wall(phantom_cache):
    """Aorta and iliacs keep their wall; mesenteric and renal arteries keep their lumen
    and calcium, nothing else."""
    ph = phantom_cache(2, ISO, fov="vessels", plaque_min_voxels=2)
    g, shown = arr(ph.groups), arr(ph.groups_as_shown())
    lumen, calc = arr(ph.lumen) > 0, arr(ph.arteries) == 2
    assert shown.dtype == g.dtype and ph.groups_as_shown().GetOrigin() == ph.groups.GetOrigin()
    for v in (1, 2):
        np.testing.assert_array_equal(shown == v, g == v)
    for v in (3, 4):
        np.testing.assert_array_equal(shown == v, (g == v) & (lumen | calc))
        wall = (g == v) & ~lumen & ~calc
        assert wall.sum() > 0.5 * (g == v).sum()  # most of a thin branch is its wall
    assert ((shown > 0) & calc).sum() == calc.sum()  # every calcification still inside
    assert ((shown == 3) & calc).sum() + ((shown == 4) & calc).sum() > 0


@pytest.mark.parametrize("spacing,direction", [(ISO, None), ((0.7, 0.7, 3.0), None),
                                               ((1.2, 0.9, 1.5), "oblique")])
def test_plaque_volumes_and_clusters_are_exact(phantom_cache, spacing, direction):
    D = oblique() if direction else None
    ph = phantom_cache(2, spacing, D, fov="vessels", plaque_min_voxels=2)
    a, g = arr(ph.arteries), arr(ph.groups)
    vv = float(np.prod(spacing))
    plaques = ph.meta["plaques"]
    assert len(plaques) >= 5
    calc = a == 2
    _, n26 = ndimage.label(calc, np.ones((3, 3, 3)))
    assert n26 == len(plaques)  # one cluster per plaque, even under 26-connectivity
    assert calc.sum() == sum(p["voxels"] for p in plaques)
    ids = arr(ph.plaque_ids)  # each plaque's voxels, by its id
    np.testing.assert_array_equal(ids > 0, calc)
    assert [int((ids == p["id"]).sum()) for p in plaques] == [p["voxels"] for p in plaques]
    for name, value in (("aorta", 1), ("iliac", 2), ("mesenteric", 3), ("renal", 4)):
        assert ph.meta["calcium_volume_mm3"][name] == pytest.approx((calc & (g == value)).sum() * vv)


@pytest.mark.parametrize("spacing,direction", [(ISO, None), ((0.7, 0.7, 3.0), None),
                                               ((1.0, 1.0, 1.0), "oblique")])
def test_aorta_diameter_matches_request(spacing, direction):
    D = oblique() if direction else None
    ph = make_phantom(3, spacing=spacing, direction=D, fov="vessels", aorta_diameter_mm=22.0,
                      tortuosity=0.0, accessory_renal=False, n_plaques=0, wall_mm=2.0)
    aorta = ph.meta["branches"]["aorta"]
    cl = np.array(aorta["centerline_lps"])
    k = len(cl) * 3 // 4  # below the renal arteries, above the bifurcation
    p, t = cl[k], cl[k + 1] - cl[k - 1]
    t /= np.linalg.norm(t)
    r_lumen = aorta["radius_mm"][k]
    for img, r in ((ph.lumen, r_lumen), (ph.groups, r_lumen + 2.0)):
        x = phys_points(img, arr(img) > 0 if img is ph.lumen else arr(img) == 1)
        d = x - p
        radial = np.linalg.norm(d - np.outer(d @ t, t), axis=1)
        # a 10 mm slab across the aorta (the straight aorta runs along z); with an axial
        # grid take exactly the axial slice through p, so thick slices measure exactly
        if D is None:
            z = x[:, 2][np.argmin(np.abs(x[:, 2] - p[2]))]
            slab, thick = (np.abs(x[:, 2] - z) < 1e-3) & (radial < r + 8), spacing[2]
        else:
            slab, thick = (np.abs(d @ t) <= 5.0) & (radial < r + 8), 10.0
        assert radial[slab].max() <= r + 0.05  # the aorta tapers slightly
        area = slab.sum() * np.prod(spacing) / thick
        diameter = 2 * np.sqrt(area / np.pi)
        assert diameter == pytest.approx(2 * r, abs=max(spacing))
    assert ph.meta["aorta_lumen_radius_mm"] == pytest.approx(11.0)


@pytest.mark.parametrize("spacing,direction", [(ISO, None), ((0.7, 0.7, 3.0), None),
                                               ((1.0, 1.0, 1.0), "oblique")])
def test_branch_length_and_takeoff(spacing, direction):
    D = oblique() if direction else None
    ph = make_phantom(4, spacing=spacing, direction=D, fov="vessels", tortuosity=0.0,
                      accessory_renal=False, n_plaques=0, wall_mm=1.5,
                      branch_lengths={"renal_left": 40.0, "renal_right": 18.0})
    g = arr(ph.groups)
    lab, _ = ndimage.label(g == 4)
    for name, length in (("renal_left", 40.0), ("renal_right", 18.0)):
        b = ph.meta["branches"][name]
        assert b["length_from_ostium_mm"] == pytest.approx(length)
        end = np.array(b["centerline_lps"][-1])
        x = phys_points(ph.groups, g == 4)
        comp_id = lab[g == 4][np.argmin(np.linalg.norm(x - end, axis=1))]
        x = phys_points(ph.groups, lab == comp_id)
        d = np.array(b["direction"])
        origin = np.array(b["origin_lps"])
        r_end = b["radius_mm"][-1] + 1.5
        reach = (x - origin) @ d
        assert reach.max() == pytest.approx(b["length_mm"] + r_end, abs=max(spacing))
        # the take-off point lies on the outer aortic wall
        cl = np.array(ph.meta["branches"]["aorta"]["centerline_lps"])
        to = np.array(b["takeoff_lps"])
        i = np.argmin(np.linalg.norm(cl - to, axis=1))
        r_outer = ph.meta["branches"]["aorta"]["radius_mm"][i] + 1.5
        assert np.linalg.norm(cl[i] - to) == pytest.approx(r_outer, abs=0.6)
        # left is +x in LPS
        assert np.sign(end[0] - origin[0]) == (1 if name.endswith("left") else -1)


def test_oblique_grid_holds_the_same_anatomy(phantom_cache):
    a = phantom_cache(6, ISO, None, fov="vessels", n_plaques=0)
    b = phantom_cache(6, ISO, oblique(), fov="vessels", n_plaques=0)
    for v in (1, 2, 3, 4):
        va, vb = (arr(a.groups) == v).sum(), (arr(b.groups) == v).sum()
        assert vb == pytest.approx(va, rel=0.03)
    assert a.meta["branches"]["aorta"]["centerline_lps"] == b.meta["branches"]["aorta"]["centerline_lps"]


def test_accessory_renal_and_explicit_plaques():
    spec = [{"branch": "aorta", "arc_mm": 60.0, "angle_deg": 90.0, "radius_mm": 3.0, "hu": 900.0},
            {"branch": "renal_accessory", "arc_mm": 20.0, "radius_mm": 2.0, "hu": 500.0}]
    ph = make_phantom(7, spacing=ISO, fov="vessels", accessory_renal=True, plaques=spec,
                      lumen_hu=200.0, noise_hu=10.0, pv_sigma_mm=0.5)
    assert "renal_accessory" in ph.meta["branches"]
    assert [p["branch"] for p in ph.meta["plaques"]] == ["aorta", "renal_accessory"]
    assert ph.meta["calcium_volume_mm3"]["renal"] == ph.meta["plaques"][1]["volume_mm3"]
    lab, n = ndimage.label(arr(ph.arteries) == 2, np.ones((3, 3, 3)))
    assert n == 2
    hu = arr(ph.ct)
    peaks = sorted(hu[lab == i].max() for i in (1, 2))
    assert peaks[1] > 700 and 300 < peaks[0] < 700  # the 900 HU and 500 HU plaques
    _, n = ndimage.label(arr(ph.groups) == 4)
    assert n == 3  # left, right and accessory renal arteries are separate components


def test_contrast_and_tissue_intensities(phantom_cache):
    ph = make_phantom(8, spacing=(1.5, 1.5, 1.5), fov="abdomen", lumen_hu=400.0, noise_hu=10.0,
                      metal=True)
    hu, lum = arr(ph.ct), arr(ph.lumen) > 0
    core = ndimage.binary_erosion(lum, iterations=2)
    assert np.median(hu[core]) == pytest.approx(400.0, abs=15)
    assert hu.max() > 2500  # the metal implant
    assert (hu < -900).mean() > 0.05  # air around the body
    assert ph.meta["options"]["metal"] is True


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="orthonormal"):
        make_phantom(1, spacing=(2, 2, 2), direction=np.diag([1.0, 2.0, 1.0]), fov="vessels")
    with pytest.raises(ValueError, match="does not fit"):
        make_phantom(1, spacing=(2, 2, 2), fov="vessels",
                     plaques=[{"branch": "aorta", "arc_mm": 60.0, "radius_mm": 0.1}])
