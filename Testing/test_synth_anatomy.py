"""The real-anatomy training synthesis (training/synth_anatomy.py, synth_paint.py) on the
label maps of ../shared/data: branches where anatomy puts them, phases painted as asked,
left and right kept."""

import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "training"))


@pytest.fixture(scope="module")
def variants(shared_data):
    import synth_anatomy

    if not synth_anatomy.available():
        pytest.skip("the TotalSegmentator label map is not in ../shared/data")
    return synth_anatomy.variants(1, seed=3)


def _centre(mask):
    return np.argwhere(mask).mean(0) * 1.5  # mm, (S, P, L)


def test_every_label_map_gets_all_four_groups_in_place(variants):
    import synth_anatomy as sa

    assert sorted(v.name for v in variants) == ["amos_0013", "niivue_torso", "ts_abdomen_ct"]
    for v in variants:
        grp, cls = v.grp, v.cls
        sizes = {g: int((grp == g).sum()) for g in range(1, 5)}
        assert min(sizes.values()) > 100, (v.name, sizes)
        aorta, ivc = _centre(grp == 1), _centre(cls == sa.IVC)
        assert aorta[2] > ivc[2], v.name  # the aorta lies left of the IVC (LPS x = left)
        # iliacs below the renal arteries, the SMA/celiac in front of the aorta
        assert _centre(grp == 2)[0] < _centre(grp == 4)[0], v.name
        mes = np.argwhere(grp == 3) * 1.5
        assert np.median(mes[:, 1]) < aorta[1] - 5, v.name
        # each renal artery reaches its kidney: renal voxels touch the kidney classes
        from scipy import ndimage

        kidney = np.isin(cls, [sa.CORTEX, sa.MEDULLA])
        touching = ndimage.binary_dilation(grp == 4, iterations=2) & kidney
        assert touching.sum() > 10, v.name
        # every drawn branch leaves from the aorta (a chest cut below the arch shows the
        # ascending aorta apart, and a branch may be cut where it crosses bone)
        lab, n = ndimage.label(grp > 0, np.ones((3, 3, 3)))
        with_aorta = np.unique(lab[grp == 1])
        branches = grp > 1
        assert np.isin(lab[branches], with_aorta).mean() > 0.95, v.name


def test_veins_lie_where_anatomy_puts_them_and_are_not_arteries(variants):
    import synth_anatomy as sa

    for v in variants:
        vein = v.cls == sa.VEIN
        assert vein.sum() > 2000, v.name  # renal veins and the SMV at least
        assert not (v.grp[vein]).any(), v.name  # a vein never carries an artery group
        aorta = v.grp == 1
        zs = np.flatnonzero(aorta.any((1, 2)))
        # the left renal vein crosses the midline at the aorta, in front of it (or behind)
        crossing = 0
        for z in zs:
            xa = np.argwhere(aorta[z])[:, 1]
            if not len(xa):
                continue
            mid = int(np.median(xa))
            col = vein[z, :, mid]
            ya = np.flatnonzero(aorta[z, :, mid])
            if col.any() and len(ya):
                ys = np.flatnonzero(col)
                # in front of the aorta or behind it, not wrapped around it
                assert ys.max() < ya.min() or ys.min() > ya.max(), (v.name, z)
                crossing += 1
        assert crossing >= 3, v.name
        # the SMV runs beside the SMA on its right (LPS x: smaller = the patient's right)
        mes = v.grp == 3
        zm = np.flatnonzero(mes.any((1, 2)))
        right = left = 0
        for z in zm[: len(zm) // 3]:  # the lowest third: the SMA's distal course
            c = np.argwhere(mes[z]).mean(0)
            near = np.argwhere(vein[z])
            near = near[np.linalg.norm(near - c, axis=1) < 25 / 1.5]
            right += int((near[:, 1] < c[1]).sum())
            left += int((near[:, 1] >= c[1]).sum())
        assert right > 2 * left, (v.name, right, left)


def test_phases_paint_the_lumen_as_drawn(variants):
    import synth_paint as sp

    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(30):
        v = variants[rng.integers(len(variants))]
        cls, grp, hu = sp.deformed(v, (48, 48, 48), [2.0] * 3, rng, fg_prob=1.0)
        img, phase = sp.paint(cls, hu, v, rng, [2.0] * 3)
        assert img.shape == grp.shape == (48, 48, 48)
        core = (cls == sp.AORTA)
        if core.sum() < 200:
            continue
        from scipy import ndimage

        core = ndimage.binary_erosion(core, iterations=2)
        if core.sum() < 20:
            continue
        seen.setdefault(phase, []).append(float(np.median(img[core])))
    assert {"arterial", "portal-venous"} <= set(seen)
    assert all(200 < x < 650 for x in seen["arterial"]), seen["arterial"]
    assert all(90 < x < 260 for x in seen["portal-venous"]), seen["portal-venous"]


def test_group_weights_centre_the_patches_on_the_asked_group(variants):
    """``group_weights`` picks the group a patch is centred on: all renal, then all aorta
    (patches of 32 voxels at 2 mm; the centre moves by up to a quarter patch)."""
    import synth_paint as sp

    rng = np.random.default_rng(5)
    for group, weights in ((4, [0, 0, 0, 1]), (1, [1, 0, 0, 0])):
        hits = 0
        for i in range(12):
            v = variants[i % len(variants)]
            _, grp, _ = sp.deformed(v, (32, 32, 32), [2.0] * 3, rng, fg_prob=1.0,
                                    group_weights=weights)
            hits += int((grp[8:24, 8:24, 8:24] == group).any())
        assert hits >= 11, (group, hits)
    hits = [0] * 5  # equal weights (None): renal-centred patches are rarer
    for i in range(40):
        _, grp, _ = sp.deformed(variants[i % len(variants)], (32, 32, 32), [2.0] * 3, rng,
                                fg_prob=1.0)
        hits[4] += int((grp[8:24, 8:24, 8:24] == 4).any())
    assert hits[4] < 32, hits


def test_calcium_patches_label_visible_plaques_and_every_artery(variants):
    """The arteries-calcium target: plaques centred half the time; drawn plaques and the
    real CT's own calcium (only inside arteries) labelled calcification; every drawn
    artery labelled artery, grouped or not."""
    import synth_paint as sp
    from recipes import NORM

    rng = np.random.default_rng(2)
    with_calcium = 0
    for i in range(24):
        v = variants[i % len(variants)]
        if not len(v.calcium_idx):
            continue
        x, y = sp.anatomy_patch(v, (48, 48, 48), [1.0] * 3, NORM, rng, target="arteries")
        assert x.shape == y.shape == (48, 48, 48) and set(np.unique(y)) <= {0, 1, 2}
        with_calcium += int((y == 2).any())
    assert with_calcium >= 8  # half of the patches are centred on a plaque
    cls = np.full((6, 6, 6), sp.FAT, np.int8)
    grp = np.zeros_like(cls)
    cls[1:5, 1:5, 1:5], grp[1:5, 1:5, 1:5] = sp.AORTA, 1
    cls[2, 2, 2] = sp.CALC
    cls[0, 0, 0] = sp.ARTX  # a supra-aortic artery: no group, still an artery
    real = np.zeros(cls.shape, bool)
    real[3, 3, 3] = True
    t = sp.calcium_target(cls, grp, real)
    assert t[2, 2, 2] == 2 and t[3, 3, 3] == 2 and t[0, 0, 0] == 1 and t[1, 1, 1] == 1
    assert (t == 2).sum() == 2 and t[5, 5, 5] == 0
    seen = {}
    for _ in range(20):  # the real CT's own calcium counts only where it shows above the lumen
        v = next(v for v in variants if v.hu is not None)
        c, g, h = sp.deformed(v, (32, 32, 32), [1.0] * 3, rng, calcium_prob=1.0)
        img, _ = sp.paint(c, h, v, rng, [1.0] * 3, seen)
        assert not (seen["real_calcium"] & ~np.isin(c, sp.ARTERIES)).any()


def test_short_series_pads_as_the_sliding_window_does():
    import synth_paint as sp

    rng = np.random.default_rng(1)
    img = np.arange(64 * 4 * 4, dtype=np.float32).reshape(64, 4, 4)
    lab = (img > 500).astype(np.int8)
    out, olab = sp.short_series(img, lab, (64, 4, 4), rng)
    n = int(np.flatnonzero(np.diff(out[:, 0, 0]) == 0)[0]) + 1  # where repetition starts
    assert 12 <= n <= 40
    assert np.all(out[n:] == out[n - 1]) and np.all(olab[n:] == olab[n - 1])


def test_a_chest_continues_the_aorta_over_the_heart_and_between_the_lungs(shared_data):
    import synth_anatomy as sa
    import synth_body as sb

    if not sa.available():
        pytest.skip("the label maps are not in ../shared/data")
    rng = np.random.default_rng(5)
    name, cls0, _, _ = sa.load_amos(sorted((sa.DATA / "label_maps").glob("*.nii.gz"))[0])
    cls, chest = sb.add_chest(cls0, rng)
    assert chest is not None and cls.shape[0] > cls0.shape[0] + 30
    assert np.array_equal(cls[:cls0.shape[0]][cls0 == sa.AORTA], cls0[cls0 == sa.AORTA])
    cls = sb.procedural_body(cls, rng, chest)
    sb.finish_chest(cls, chest, rng)
    top = cls0.shape[0]
    aorta = cls == sa.AORTA
    zs = np.flatnonzero(aorta.any((1, 2)))
    assert zs.max() > top + 30  # the aorta goes on up into the chest
    from scipy import ndimage

    lab, n = ndimage.label(aorta, np.ones((3, 3, 3)))
    assert (lab == np.bincount(lab[aorta]).argmax()).sum() > 0.97 * aorta.sum()  # one vessel
    chest_sl = cls[top + 10:]
    lung = (chest_sl == sa.LUNG).sum(axis=(1, 2))
    assert np.median(lung) * 1.5 ** 2 > 5000  # mm2 of lung per chest slice
    # the descending aorta is left of the spine and the lungs on both sides of it
    sy, sx = chest["spine"]
    desc = np.argwhere(aorta[top + 5])
    assert np.median(desc[:, 1]) > sx
    pts = np.argwhere(chest_sl == sa.LUNG)
    assert (pts[:, 2] < sx - 20).any() and (pts[:, 2] > sx + 20).any()
    # heart blood pool and supra-aortic arteries are bright but carry no group
    from synth_geometry import GROUP_OF

    assert sa.HEART not in GROUP_OF and sa.ARTX not in GROUP_OF
    assert (cls == sa.HEART).sum() * 1.5 ** 3 > 100_000  # mm3: a heart's blood pool


def test_renal_arteries_run_in_front_of_the_spine(variants):
    """A renal artery never crosses a vertebra: under 3 % of the drawn renal voxels lie
    within 1.5 mm of bone, marrow or the cord (unrouted, as before 2026-12-02: 13-21 % on
    two of the three maps, a bright tube inside a vertebral body)."""
    from scipy import ndimage
    from synth_geometry import BONE, CORD, MARROW, SPACING

    for v in variants:
        near = ndimage.distance_transform_edt(~np.isin(v.cls, (BONE, MARROW, CORD))) * SPACING <= 1.5
        renal = v.grp == 4
        assert renal.sum() > 200, v.name  # both renal arteries drawn (428-915 voxels)
        assert (renal & near).sum() / renal.sum() < 0.03, v.name
