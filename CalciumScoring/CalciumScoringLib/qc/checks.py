"""Input checks and quality-control flags for a CT before and after processing.

``check_ct`` refuses what cannot be processed (:class:`InputError`, with a message
that says what to do) and returns flags for what can be processed with care.
``check_result`` adds flags that need the segmentation (no contrast in the lumen,
metal near the arteries, aorta cut by the field of view, no arteries found);
``groups_missing_flag`` says which groups an artery source does not label;
``calcium_network_flags`` whether a calcification network recognised the arteries at all;
``metal_flags`` what was taken out of the calcium as metal; ``short_arteries_flag`` which
side arteries the segmentation follows for less than the stump the method compares.

Every flag is a short code plus a sentence: ``{"code": ..., "message": ...}``.
"""

import numpy as np
import SimpleITK as sitk

from ..scoring.thresholds import METAL_HU, METAL_NEAR_MM

#: refuse volumes whose processing is estimated above this fraction of free memory
MEMORY_FRACTION = 0.6
#: bytes of working memory per CT voxel (float copies, labels, resampling), measured
BYTES_PER_VOXEL = 40
#: metal (> 2500 HU) this close to the arteries is flagged (streak artefacts reach far)
METAL_DISTANCE_MM = 50.0
#: a calcification network that labels less than this share of the artery groups as
#: artery or calcium does not recognise these arteries (arteries-calcium 0.4.6874, trained
#: on phantoms alone, inside the bundled groups of real CT: 9.8 % of ts_dicom_series's, 0.3 %
#: of ircad01_abdomen's; a network trained on real anatomy: 95 % and 81 %; on a held-out
#: phantom above 80 %, Testing/test_bundled_models.py)
CALCIUM_COVERAGE_MIN = 0.5
#: a side artery followed for less than this share of the stump length is flagged: real
#: iliac, renal and superior mesenteric arteries all run well beyond 25 mm from the aorta
SHORT_FRACTION = 0.8


class InputError(ValueError):
    """A CT that cannot be processed; the message says what to do."""


def flag(code, message):
    return {"code": code, "message": message}


def available_memory():
    """Free memory in bytes (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_ct(ct, memory=None):
    """Refuse unusable CTs; return the list of QC flags of a usable one."""
    flags = []
    if ct.GetDimension() == 2 or (ct.GetDimension() == 3 and min(ct.GetSize()) == 1):
        raise InputError("the image is 2D (one slice): a CT volume of the abdomen is needed")
    if ct.GetDimension() != 3:
        raise InputError(f"the image is {ct.GetDimension()}D: pass one 3D CT volume (split 4D "
                         "series into their phases first)")
    if ct.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"the image has {ct.GetNumberOfComponentsPerPixel()} components per "
                         "voxel (colour or vector image): pass a grey-level CT in HU")
    sp = np.array(ct.GetSpacing())
    if np.any(~np.isfinite(sp)) or np.any(sp <= 0):
        raise InputError(f"invalid voxel spacing {tuple(sp)}: the file lacks geometry; "
                         "convert it again from DICOM or set the spacing")
    need = int(np.prod(ct.GetSize())) * BYTES_PER_VOXEL
    free = available_memory() if memory is None else memory
    if free is not None and need > MEMORY_FRACTION * free:
        raise InputError(f"the volume needs about {need / 2**30:.1f} GiB but {free / 2**30:.1f} GiB "
                         "are free: crop it to the abdomen or run on a larger machine")
    arr = sitk.GetArrayViewFromImage(ct)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            flags.append(flag("nan_voxels", f"{int(bad.sum())} NaN/Inf voxels replaced by -1024 HU"))
    sample = arr[::max(arr.shape[0] // 16, 1), ::4, ::4]
    sample = sample[np.isfinite(sample)] if arr.dtype.kind == "f" else sample.ravel()
    values = np.unique(sample)
    if len(values) <= 16 and values.min() >= 0 and values.max() <= 255:
        raise InputError(f"the image holds only {len(values)} distinct small values "
                         f"({values[:8].tolist()}...): it looks like a label map, not a CT")
    lo, hi = np.percentile(sample, [1, 99.5]) if sample.size else (0, 0)
    if lo > -50 or hi < 100 or hi > 20000:  # an abdomen always holds fat (about -100 HU)
        raise InputError(f"intensities {lo:.0f}..{hi:.0f} are not CT Hounsfield units (fat "
                         "should be near -100 HU, air near -1000 HU): is this an MR image or "
                         "unscaled CT? Apply the DICOM rescale slope/intercept or pass a CT")
    if sp[2] > 5.0:
        flags.append(flag("thick_slices", f"slice spacing {sp[2]:.1f} mm > 5 mm: small "
                          "calcifications are missed and scores are unreliable"))
    D = np.array(ct.GetDirection()).reshape(3, 3)
    if not np.allclose(np.abs(D), np.eye(3), atol=1e-3):
        flags.append(flag("oblique", "oblique volume: processed in patient coordinates; Agatston "
                          "lesions are defined on the image's own (oblique) slices"))
    return flags


def clean_ct(ct):
    """A float-free int16-range copy with NaN/Inf replaced by -1024 HU (input untouched)."""
    arr = sitk.GetArrayViewFromImage(ct)
    if arr.dtype.kind != "f" or np.all(np.isfinite(arr)):
        return ct
    fixed = np.where(np.isfinite(arr), arr, -1024.0).astype(np.float32)
    out = sitk.GetImageFromArray(fixed)
    out.CopyInformation(ct)
    return out


def _metal_near(arr, arteries, spacing_kji, distance_mm):
    from scipy import ndimage

    from ..imagecheck import crop_box

    pad = [int(np.ceil(distance_mm / s)) for s in spacing_kji]
    box = crop_box(arteries, pad=0)
    box = tuple(slice(max(b.start - p, 0), b.stop + p) for b, p in zip(box, pad))
    bright = arr[box] > METAL_HU
    if not bright.any():
        return 0
    dist = ndimage.distance_transform_edt(~arteries[box], sampling=spacing_kji)
    return int(np.count_nonzero(bright & (dist <= distance_mm)))


def check_result(ct, groups, calcium=None):
    """QC flags that need the artery groups (and optionally the calcification)."""
    flags = []
    g = sitk.GetArrayViewFromImage(groups)
    if not g.any():
        return [flag("no_arteries", "no arteries found: check the input is an abdominal CT(A) "
                     "and the artery segmentation")]
    arr = sitk.GetArrayViewFromImage(ct)
    from scipy import ndimage

    aorta = g == 1
    if not aorta.any():
        flags.append(flag("no_aorta", "no aorta found: scores of side arteries are not comparable"))
    else:
        core = ndimage.binary_erosion(aorta, iterations=2)
        core = core if core.any() else aorta
        calc = sitk.GetArrayViewFromImage(calcium) > 0 if calcium is not None else np.zeros_like(core)
        lumen = arr[core & ~calc]
        med = float(np.median(lumen)) if lumen.size else float("nan")
        if med < 150:
            flags.append(flag("no_contrast", f"aortic lumen median {med:.0f} HU < 150 HU: no "
                              "arterial contrast; network and adaptive-threshold calcification "
                              "are unreliable (non-contrast scan or late phase)"))
        border = np.zeros(aorta.shape, bool)
        border[[0, -1], :, :] = True
        border[:, [0, -1], :] = True
        border[:, :, [0, -1]] = True
        if np.any(aorta & border):
            flags.append(flag("aorta_truncated", "the aorta touches the border of the volume: the "
                              "field of view cuts it, so its burden covers less anatomy"))
    n_metal = _metal_near(arr, g > 0, ct.GetSpacing()[::-1], METAL_DISTANCE_MM)
    if n_metal >= 3:
        flags.append(flag("metal", f"{n_metal} voxels above {METAL_HU:.0f} HU within "
                          f"{METAL_DISTANCE_MM:g} mm of the arteries (stent, screw, implant): "
                          "metal touching the calcium is left out of it, but its streaks may "
                          "still be counted as calcium"))
    return flags


def calcium_network_coverage(labels, groups):
    """Share of the artery-group voxels that a calcification network (``labels``: 1 artery,
    2 calcification, run on the groups as its region of interest) labels as either."""
    g = sitk.GetArrayViewFromImage(groups) > 0
    n = int(np.count_nonzero(g))
    if n == 0:
        return float("nan")
    return float(np.count_nonzero(g & (sitk.GetArrayViewFromImage(labels) > 0))) / n


def calcium_network_flags(source):
    """The flag ``calcium_network_unsure`` when a calcification network's provenance
    (``source["artery_coverage"]``, from :func:`calcium_network_coverage`) says it labelled
    too little of the artery groups as artery to be trusted; [] otherwise."""
    cov = (source or {}).get("artery_coverage")
    if cov is None or not cov < CALCIUM_COVERAGE_MIN:
        return []
    return [flag("calcium_network_unsure",
                 f"the calcification network labels only {100 * cov:.0f} % of the artery groups "
                 f"as artery (expected above {100 * CALCIUM_COVERAGE_MIN:.0f} %): it does not "
                 "recognise these arteries, so its calcium is unreliable; score with the adaptive "
                 "threshold (the default) or correct the calcification in Segment Editor")]


#: calcium is not measured reproducibly on voxels this thick (mm, largest spacing): a
#: plaque spans one or two slices, and half a voxel of resampling moves its volume by tens
#: of per cent (ts_abdomen_ct, 3 mm: -92 % to +0 % over the variants of
#: scripts/reproducibility.py; 2 mm ts_dicom_series within 9 %)
REPRODUCIBLE_MAX_MM = 2.5
#: ... nor where the noise SD exceeds this fraction of the calcium margin above the lumen
#: (noise peaks then reach the threshold and resampling moves them)
REPRODUCIBLE_NOISE_FRACTION = 0.25


def calcium_noise_flags(source, spacing=None):
    """The flag ``calcium_not_reproducible`` when a threshold's calcium cannot stay put on
    this CT: voxels thicker than :data:`REPRODUCIBLE_MAX_MM`, or a lumen noise
    (``source["noise_hu"]``) above :data:`REPRODUCIBLE_NOISE_FRACTION` of the margin
    (``source["margin_hu"]``); [] otherwise.  Only for calcium the pipeline found."""
    source = source or {}
    if "method" not in source and "model" not in source:
        return []
    why = []
    if spacing is not None and max(spacing) > REPRODUCIBLE_MAX_MM:
        why.append(f"voxels {max(spacing):.1f} mm thick (at most {REPRODUCIBLE_MAX_MM:g} mm "
                   "keeps a plaque's volume within 10 % when the scan is resampled)")
    noise, margin = source.get("noise_hu"), source.get("margin_hu")
    if noise is not None and margin and np.isfinite(noise) \
            and noise > REPRODUCIBLE_NOISE_FRACTION * margin:
        why.append(f"lumen noise {noise:.0f} HU against a calcium margin of {margin:.0f} HU above "
                   "the lumen (noise peaks reach the threshold)")
    if not why:
        return []
    return [flag("calcium_not_reproducible", "the calcium of this scan cannot be measured "
                 "reproducibly: " + "; ".join(why) + ". Its calcium scores are not valid; use a "
                 "thinner or less noisy reconstruction of the same scan if there is one")]


def metal_flags(source):
    """The flag ``metal_not_calcium`` when the calcification's provenance (from
    :func:`..scoring.thresholds.without_metal`) says pieces reaching the metal level were
    taken out of the calcium, or that calcium was kept near metal; [] otherwise."""
    source = source or {}
    mm3 = source.get("metal_excluded_mm3") or 0
    near_mm3 = source.get("metal_near_mm3") or 0
    if not (mm3 > 0 or near_mm3 > 0):
        return []
    said = []
    if mm3 > 0:
        said.append(f"{mm3:,.0f} mm3 in {source.get('metal_pieces', 0)} bright pieces reaching "
                    f"{source.get('metal_hu', METAL_HU):.0f} HU (stent, clip, coil) were taken "
                    "for metal and not scored as calcium; if one is calcium, add it back in "
                    "Segment Editor and re-score")
    if near_mm3 > 0:
        said.append(f"{near_mm3:,.0f} mm3 of the calcium scored lies within "
                    f"{METAL_NEAR_MM:.0f} mm of metal: a stent's faintest wire may be among it, "
                    "so review it there and read that segment's scores as an upper bound")
    return [flag("metal_not_calcium", ". ".join(said))]


def aorta_cut_defined(missing):
    """Whether the published aorta cut ("1 cm above the highest side artery") can be placed:
    not when the artery source has no mesenteric arteries (it would fall at the iliacs)."""
    return "mesenteric" not in missing


def groups_missing_flag(missing, source=None):
    """The flag ``groups_missing``: groups the artery source does not label at all (their
    scores are missing, not zero; without the mesenteric arteries the aorta is not cut)."""
    from ..segmentation.totalsegmentator import TASKS

    what = source or "the artery source"
    tasks = sorted({TASKS[g] for g in missing})
    return flag("groups_missing",
                f"{what} has no {', '.join(missing)} arteries: their scores are missing (not "
                "zero) and 'combined' covers the other groups only"
                + ("; without the mesenteric arteries the aorta is not cut above them, so its "
                   "scores cover the whole labelled aorta" if "mesenteric" in missing else "")
                + (f"; TotalSegmentator's task {' / '.join(tasks)} labels them"
                   if "TotalSegmentator" in what else ""))


def short_arteries_flag(branches, stump_length_mm):
    """The flag ``side_arteries_short`` when a side artery ends, in the segmentation, well
    before the stump the shortening keeps (``SHORT_FRACTION`` of ``stump_length_mm``); None
    otherwise.

    ``branches`` is the shortening report (``ShorteningResult.branches``: group, side,
    kept, length_mm per component).  Paired groups (iliac, renal) are judged per side
    (left, right; a piece spanning both counts for each) by their longest kept component,
    pieces of no clear side only where no side has one; the mesenteric group by its longest
    (a celiac trunk may end short where it divides; the SMA does not).  A missing side is
    not flagged here: the field of view or the anatomy may explain it.  Real renal arteries
    are 40-60 mm long, so a short one means the segmentation stopped, and that group's
    scores cover less of the artery than the method compares between patients.
    """
    if branches is None or len(branches) == 0:
        return None
    kept = branches[branches["kept"].astype(bool)]
    short = []
    for group in ("iliac", "mesenteric", "renal"):
        rows = kept[kept["group"] == group]
        sides = rows["side"].astype(str)
        buckets = {}  # what is judged: a side (with a piece spanning both) or the group
        if group != "mesenteric":
            for side in ("left", "right"):
                if sides.isin([side, "bilateral"]).any():
                    buckets[f"{side} {group}"] = rows[sides.isin([side, "bilateral"])]
        if not buckets and len(rows):  # the mesenteric group, or pieces of no clear side
            buckets[group] = rows
        for what, sel in buckets.items():
            length = float(sel["length_mm"].max())
            if length < SHORT_FRACTION * stump_length_mm:
                short.append(f"{what} {length:.0f} mm")
    if not short:
        return None
    return flag("side_arteries_short",
                f"the segmentation follows these side arteries only so far from the aorta: "
                f"{', '.join(short)} (the stump is {stump_length_mm:g} mm): their scores cover "
                "less of the artery than the method compares; extend them in Segment Editor "
                "and re-score (or check that the field of view holds them)")
