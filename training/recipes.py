"""What each bundled network is trained on: configurations, phantom randomisation,
held-out seeds and patch sampling (shared by every training script here).

``CONFIGS`` holds one recipe per network (labels, model grid, patch, features,
postprocessing, learning-rate history); ``random_options`` draws the scanner and patient
variation of a training phantom, ``held_out_options`` that of a validation or test
phantom (voxel grids never used in training).  ``sample``, ``pad_to`` and
``window_around`` turn a phantom into training patches.  Not installed into Slicer.
"""

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from CalciumScoringLib.phantoms.generator import make_phantom
from CalciumScoringLib.segmentation.engine import _resample, normalise

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "artery-groups": {"labels": {"1": "aorta", "2": "iliac", "3": "mesenteric", "4": "renal"},
                      "spacing_mm": [2.0, 2.0, 2.0], "patch_size": [64, 64, 64],
                      "features": [8, 16, 32, 64], "tile_step": 0.75, "target": "groups",
                      "postprocessing": {"largest_component": [1], "tree_of": 1}},
    "arteries-calcium": {"labels": {"1": "artery", "2": "calcification"},
                         "spacing_mm": [1.0, 1.0, 1.0], "patch_size": [48, 48, 48],
                         "features": [12, 24, 48, 96], "tile_step": 0.75, "target": "arteries",
                         "version_prefix": "0.2",  # 0.2: with the brighter_than rule
                         # calcium must be denser than the contrast lumen (the margin chosen
                         # on the validation seeds among 0, 50 and 100 HU)
                         "postprocessing": {"largest_component": [1], "brighter_than": {
                             "label": 2, "reference": 1, "margin_hu": 50.0}},
                         "ce_weights": [1.0, 1.0, 1.0], "decay_iterations": 9200, "lr": 9.89e-4,
                         "history": "iterations 0-370 on 64^3 patches; 957-2300 cross-entropy "
                                    "weight 3 on calcification (calcium is ~0.2 % of a patch and "
                                    "had not emerged), then 1 (weight 3 over-called calcium by "
                                    "10-25 % on held-out phantoms); learning rate decayed over "
                                    "20000 iterations until 2124, annealed to 6500 until 2820, then to 5400 "
                                    "until 4548, then from the same rate (3.16e-4) to 7400 until 6874, "
                                    "then restarted at 2.5e-4 to 9200 (floor from 8940), stopped at 9236"},
}
# arteries-calcium: the bundled weights are iteration 6874 (0.2.6874 = 0.1.6874 plus the
# brighter_than rule; 0.3.6874 = 0.2.6874 plus the refine_by_hu classifier of
# training/fit_refiner.py, which --export here does not write: run fit_refiner.py --export
# after it; 0.4.6874: the classifier's wider band and five-member ensemble).  The run on
# to 9236 (restart at lr 2.5e-4) measured held-out
# calcification Dice 0.749 (0.754 at 6874, both without the rule) and a pooled calcified
# volume further below the truth, so it was not bundled.  The committed
# training/arteries-calcium/checkpoint.pt is iteration 9236; the 6874 weights are the
# bundled safetensors.
# Experiment: the artery-groups network fine-tuned with the real (non-contrast,
# aorta/iliac-labelled) scan beside the phantoms (training/real_finetune.py).  With one real
# scan it memorises that scan (training/artery-groups-real/log.txt): the held-out real series
# got worse, so the bundled artery-groups is NOT this.  Kept for when more labelled real
# scans are available; would export as artery-groups 0.2.x.
CONFIGS["artery-groups-real"] = dict(
    CONFIGS["artery-groups"], real=True, init_from="artery-groups", export_as="artery-groups",
    version_prefix="0.2", lr=5e-4,
    history="3590 iterations on phantoms alone (artery-groups 0.1.3590), then fine-tuned at "
            "lr 5e-4 with one patch of the real scan per batch beside two phantom patches")
# The real-anatomy network (issue #19): the bundled phantom network fine-tuned on patches of
# real label maps painted as CT of every phase (synth_anatomy.py, synth_paint.py) beside
# the phantoms, which keep the phantom accuracy.
CONFIGS["artery-groups-anatomy"] = dict(
    CONFIGS["artery-groups"], postprocessing={
        "largest_component": [1], "tree_of": 1,
        # localise, then delineate: the aorta completed to its lumen edge slice by slice
        # (CalciumScoringLib.segmentation.lumen); added after the trained network was seen
        # to find the aorta of ts_dicom_series but only half of its lumen (Dice 0.669)
        "grow_by_hu": {"reference": 1, "groups": [1], "disc_scale": 1.15}},
    anatomy=True, anatomy_fraction=0.65, init_from="artery-groups",
    export_as="artery-groups", version_prefix="0.3", lr=5e-4, decay_from=3990,
    decay_iterations=5100,
    history="3590 iterations on phantoms alone (artery-groups 0.1.3590), then fine-tuned from "
            "those weights with each batch patch drawn from the real-anatomy synthesis "
            "(65 %) or a phantom (35 %): lr 1e-3 * (1 - it / 7590) until 3990, then 5e-4 "
            "decaying linearly from 3990 to the 5 % floor at 5100; stent-graft struts in 10 % "
            "of the synthetic patches from 3990")
# The same network trained on with veins and a chest in the synthesis (issue #19,
# 2026-12-01): on ircad01_abdomen 0.3.5130 labelled the splenic-portal confluence and the
# oesophagus as mesenteric and found no renal artery; the synthesis had no renal, superior
# mesenteric or splenic veins, so a bright tube in front of the aorta was always an artery;
# and no label map reaches above the diaphragm, while the team measures a thoracic CTA.
CONFIGS["artery-groups-veins"] = dict(
    CONFIGS["artery-groups-anatomy"], postprocessing={
        "largest_component": [1], "tree_of": 1,
        # need_lumen: side-group pieces without lumen go (the oesophagus at ircad01's hiatus
        # was called mesenteric by 0.3.5130 and by this run's checkpoint 6120: added then)
        "grow_by_hu": {"reference": 1, "groups": [1], "disc_scale": 1.15, "need_lumen": [2, 3, 4]}},
    init_from="artery-groups-anatomy", version_prefix="0.4",
    lr=4e-4, decay_from=5130, decay_iterations=7200,
    history=CONFIGS["artery-groups-anatomy"]["history"] + "; then from 5130 with drawn veins "
            "in the synthesis (renal veins, superior mesenteric vein, splenic and portal veins "
            "where the map has none), and from 5385 a procedural chest above half of the AMOS "
            "maps (synth_body.add_chest) and 35 % of renal arteries leaving at the level of the "
            "other side's (a long oblique course to a low kidney): lr 4e-4 decaying linearly from 5130 to the 5 % floor "
            "at 7200 (to 6700 until 5385)",
    data_extra="; from iteration 5130 with veins drawn beside the branches (renal veins into "
               "the IVC, the left one across the aorta; superior mesenteric vein; splenic and "
               "portal veins for AMOS) and, from 5385, a procedural chest above half of the AMOS "
               "variants (training/synth_body.py: heart, ascending aorta, arch and descending "
               "aorta, pulmonary arteries, SVC, supra-aortic arteries of no group, lungs, ribs)",
    real_scans_used="none in training; ts_abdomen_ct's anatomy and CT texture are in the "
                    "synthesis; ircad01_abdomen was looked at before this run (its confluence and "
                    "oesophagus labelled mesenteric by 0.3.5130; thin vessels running obliquely "
                    "from its low right kidney up to the aorta) and shaped the veins and the "
                    "oblique renal arteries of the synthesis; the bundled checkpoint is the last "
                    "one, no choice among "
                    "checkpoints; grow_by_hu as in 0.3 (added after ts_dicom_series was measured); "
                    "its need_lumen rule was added after ircad01_abdomen was measured on "
                    "checkpoint 6120 (mesenteric 0.347; 0.465 with the rule)")
# The side branches (issue #19): 0.4.7182 finds no renal artery of
# ircad01_abdomen (mean renal probability 0.02 inside the drawn reference) and, on
# renal-centred patches of the synthesis itself, renal Dice 0.38: with the group of a patch
# drawn uniformly it has seen too few side branches among aorta-filled patches.  Trained on
# with the patches centred on renal and mesenteric arteries more often, a higher
# cross-entropy weight on renal, and more of the batch from the synthesis.
# Result (0.5.9329, 2,147 iterations): IRCAD renal 0.02, SMA + celiac 0.52, pooled branches
# 0.41 (0.4.7182: 0.00, 0.50, 0.35); stent_cta gains a wrong iliac piece; not bundled.
CONFIGS["artery-groups-renal"] = dict(
    CONFIGS["artery-groups-veins"], init_from="artery-groups-veins", version_prefix="0.5",
    anatomy_fraction=0.7, group_weights=[0.15, 0.15, 0.3, 0.4], renal_radius_mm=(1.8, 3.4),
    ce_weights=[1.0, 1.0, 1.0, 1.0, 1.5], lr=3e-4, decay_from=7182, decay_iterations=9400,
    history=CONFIGS["artery-groups-veins"]["history"] + "; then from 7182 with 70 % of the "
            "batch patches from the synthesis, their artery centre drawn from the groups with "
            "weights 0.15/0.15/0.3/0.4 (aorta/iliac/mesenteric/renal; equal before), renal "
            "radius 1.8-3.4 mm and cross-entropy weight 1.5 on renal: lr 3e-4 decaying "
            "linearly from 7182 to the 5 % floor at 9400",
    real_scans_used=CONFIGS["artery-groups-veins"]["real_scans_used"] + "; this run was "
                    "started after 0.4.7182 was seen to miss ircad01_abdomen's renal arteries "
                    "(reference drawn on 2026-12-01)")
# Thinner renal arteries (issue #19): artery-groups-renal 0.5.9329 still labels
# 14 mm3 of ircad01_abdomen as renal (Dice 0.02) at its 2 mm grid, but run on a 1.6 or
# 1.8 mm grid (IRCAD's 3-5 mm renal arteries then look 11-25 % wider) its renal Dice is
# 0.29 / 0.23: it detects renal arteries of the synthesis's width (3.6-6.8 mm) and misses
# thinner ones.  Drawn 2.6-6.0 mm wide here (renal radius 1.3-3.0 mm).
# Result (0.5.10318, 989 iterations): IRCAD renal 0.00, pooled branches 0.41; not bundled.
CONFIGS["artery-groups-thin"] = dict(
    CONFIGS["artery-groups-renal"], init_from="artery-groups-renal", renal_radius_mm=(1.3, 3.0),
    lr=2e-4, decay_from=9329, decay_iterations=10600,
    history=CONFIGS["artery-groups-renal"]["history"] + "; then from 9329 with renal radius "
            "1.3-3.0 mm: lr 2e-4 decaying linearly from 9329 to the 5 % floor at 10600",
    real_scans_used=CONFIGS["artery-groups-renal"]["real_scans_used"] + "; the thinner renal "
                    "radius was chosen after 0.5.9329 was run on ircad01_abdomen at 1.4-2.0 mm grids")
# The side branches at a finer grid (issue #19): localise, then delineate.
# 0.5.9329 run on a 1.6 mm grid found IRCAD's renal arteries (Dice 0.29) that it misses at
# its own 2 mm, and a 1 mm artery network (arteries-calcium-anatomy) finds 83 % of the
# SMA but only 24 % of the renal arteries there.  This network works at 1.25 mm inside
# the neighbourhood of the aorta that artery-groups found (segmentation/branches.py): its
# mesenteric and renal labels replace those of artery-groups there; the aorta and the
# iliacs stay artery-groups'.  Same architecture and labels as artery-groups, initialised
# from artery-groups-renal 0.5.9329 (weights of a 2 mm network, fine-tuned here to 1.25 mm),
# with most patches from the synthesis and centred on side branches.
CONFIGS["artery-branches"] = dict(
    CONFIGS["artery-groups-renal"], spacing_mm=[1.25, 1.25, 1.25], init_from="artery-groups-renal",
    export_as="artery-branches", version_prefix="0.1", anatomy_fraction=0.85,
    branch_of="artery-groups", cascade_version_prefix="0.6", band_mm=35.0, trim_to_lumen=True,
    group_weights=[0.1, 0.1, 0.35, 0.45], renal_radius_mm=(1.5, 3.2),
    lr=3e-4, decay_from=9329, decay_iterations=11500,
    history=CONFIGS["artery-groups-renal"]["history"] + "; then, as the side-branch network, "
            "on a 1.25 mm grid from 9329 with 85 % of the batch patches from the synthesis, "
            "their artery centre drawn with weights 0.1/0.1/0.35/0.45, renal radius 1.5-3.2 mm: "
            "lr 3e-4 decaying linearly from 9329 to the 5 % floor at 11500",
    real_scans_used=CONFIGS["artery-groups-renal"]["real_scans_used"] + "; the 1.25 mm grid "
                    "was chosen after 0.5.9329 was run on ircad01_abdomen at 1.4-2.0 mm grids"
                    + "; ircad01_abdomen is development data for the cascade: checkpoints "
                    "9535 and 10832 of this run were measured on it during training (the "
                    "bundled one is the last, 11539, no choice among checkpoints), and "
                    "trim_to_lumen was added after measuring 10832 there (pooled branches "
                    "0.493 -> 0.573); the 35 mm band was set before any measurement; "
                    "ts_dicom_series and stent_cta were measured only")


def _trained_on(base, start, end, what, why, **changes):
    """The recipe of ``base`` trained on from its checkpoint at iteration ``start`` (lr 3e-4
    decaying linearly to the 5 % floor at ``end``); ``what`` is added to its history, ``why``
    to what the real scans were used for."""
    return dict(CONFIGS[base], init_from=base, lr=3e-4, decay_from=start, decay_iterations=end,
                history=CONFIGS[base]["history"] + f"; then {what}: lr 3e-4 decaying linearly "
                        f"from {start} to the 5 % floor at {end}",
                real_scans_used=CONFIGS[base]["real_scans_used"] + f"; this run was started {why}",
                **changes)


# Renal arteries beyond their first 10 mm (issue #19): with artery-branches
# 0.1.11539 as the second stage, IRCAD's renal arteries are found 0-10 mm from the aorta
# (199 of 742 reference voxels) and hardly beyond (26 of 559 at 10-20 mm, none further).
# The same second stage on a 1 mm grid, the patches centred on renal arteries more often
# and the synthetic renal arteries thinner (2.6-5.6 mm), from 11539.  Started on
# 2026-12-02; measured on 2026-12-02 (12157 -> 14015): not bundled.
CONFIGS["artery-branches-fine"] = _trained_on(
    "artery-branches", 11539, 14000, "on a 1 mm grid from 11539 with the artery centre drawn "
    "with weights 0.05/0.05/0.3/0.6, renal radius 1.3-2.8 mm", "after artery-branches "
    "0.1.11539 was seen to follow ircad01_abdomen's renal arteries for only 10 mm",
    spacing_mm=[1.0, 1.0, 1.0], version_prefix="0.2", cascade_version_prefix="0.7",
    group_weights=[0.05, 0.05, 0.3, 0.6], renal_radius_mm=(1.3, 2.8))
# Renal arteries drawn where they run (issue #19): artery-branches-fine
# (12157 -> 14015) ended worse than 0.1.11539 on IRCAD (renal 0.115), ts_dicom_series and
# the phantoms, and both find only 21-38 % of the renal arteries of the synthesis itself
# (synthetic_recall).  Looking at those patches: 12 % of the drawn renal-artery voxels lay in
# vertebral marrow (a bright tube inside a vertebral body) and 9 % in muscle, since the
# path from the aorta to the hilum was not kept off the spine.  synth_anatomy._routed now
# keeps it in front of the spine and psoas (marrow 0.1 %).  Otherwise artery-branches as
# it was, from its 11539 on the corrected synthesis.
CONFIGS["artery-branches-routed"] = _trained_on(
    "artery-branches", 11539, 13500, "from 11539 with the renal arteries routed in front of "
    "the spine and psoas (synth_anatomy._routed)", "after the synthesis' renal arteries were "
    "seen to cross vertebrae, not after a real-scan measurement", version_prefix="0.3",
    cascade_version_prefix="0.8")
# Real side-artery geometry (issue #35): the bundled branch network (the 0.25/0.75 average
# of 11539 and artery-branches-routed 13852) finds the aorta on the team's held-out CT but
# few of its stumps (celiac 8 %, SMA 42 %, renal 0 %; IRCAD01/07 per stump in
# docs/models.md).  Trained on from the bundled weights (a fresh optimiser) with the eight
# IRCAD expert label maps' real artery trees, veins and organs added to the synthesis
# (synth_ircad.py: 8 of the 20 anatomies).  Started on 2026-12-07 before any measurement
# of it; IRCAD01/07 (other patients) stay measurement data.
CONFIGS["artery-branches-ircad"] = dict(
    CONFIGS["artery-branches"], init_from=None, init_model="artery-branches", ircad=True,
    lr=2e-4, decay_from=13852, decay_iterations=17000, version_prefix="0.5",
    cascade_version_prefix="0.9", keep_first=[3],
    history=CONFIGS["artery-branches"]["history"] + "; bundled as the average 0.25 x 11539 + "
            "0.75 x artery-branches-routed 13852 (0.4.13852); then from those weights, a fresh "
            "optimiser, with the IRCAD label maps' real artery trees in the synthesis: lr 2e-4 "
            "decaying linearly from 13852 to the 5 % floor at 17000",
    real_scans_used=CONFIGS["artery-branches"]["real_scans_used"] + "; this run was started "
                    "after the team measured the bundled cascade on its held-out CT (side "
                    "stumps mostly missed); ircad01_abdomen and ircad07_abdomen are other "
                    "patients than the IRCAD label maps trained on; checkpoint 15165 was "
                    "measured on both (evaluate_stumps.py), and the stage at which each "
                    "stump was lost was looked at on both: the keep_first rule (the first "
                    "network's mesenteric labels kept where this one finds none) was chosen "
                    "then, so ircad07_abdomen is no longer held out; its renal labels are not "
                    "kept: on the validation phantoms they cost 0.03 renal Dice, on the IRCAD "
                    "CTs they found 0-7 % of a renal stump")
# The calcium network on the real-anatomy synthesis (issue #19): 0.4.6874,
# trained on phantoms alone, labels 163 of ircad01_abdomen's 52,348 mm3 of artery groups as
# artery and none of its 191 mm3 >= 400 HU as calcium; it has not seen a real abdomen.
# Trained on from the committed checkpoint (9236) with the synthesis's painted patches
# (target: artery = every drawn or mapped artery, calcification = the drawn plaques and the
# real CT's own calcium where it shows >= 100 HU above the painted lumen) beside phantoms.
CONFIGS["arteries-calcium-anatomy"] = dict(
    CONFIGS["arteries-calcium"], anatomy=True, anatomy_fraction=0.6,
    init_from="arteries-calcium", export_as="arteries-calcium", version_prefix="0.5",
    ce_weights=[1.0, 1.0, 1.0], lr=3e-4, decay_from=9236, decay_iterations=11600,
    history=CONFIGS["arteries-calcium"]["history"] + "; then from 9236 with 60 % of the batch "
            "patches from the real-anatomy synthesis (half of them centred on a plaque): lr "
            "3e-4 decaying linearly from 9236 to the 5 % floor at 11600",
    data_extra="; for this network the target is artery (every drawn or mapped artery, the "
               "supra-aortic ones included) and calcification (plaques of 1-3 mm radius drawn "
               "on the aortic and iliac walls at 300-1300 HU and >= 100 HU above the lumen, "
               "and ts_abdomen_ct's own arterial calcium where it shows >= 100 HU above the "
               "painted lumen), with veins and the procedural chest as in artery-groups 0.4",
    real_scans_used="none in training; ts_abdomen_ct's anatomy, CT texture and its own "
                    "arterial calcium are in the synthesis; ircad01_abdomen, ts_dicom_series "
                    "and stent_cta are measured only (no reference calcium: the network's "
                    "artery coverage of the artery groups and its calcium against the "
                    "adaptive threshold and the >= 1,500 HU part); the bundled checkpoint is "
                    "the last one, no choice among checkpoints")
# The real-anatomy calcium network with fewer synthesis patches (issue #19):
# 0.5.11758 sees real arteries (coverage 95 % / 81 % on ts_dicom_series / IRCAD against
# 9.8 % / 0.3 %) but its artery label falls on the phantoms, even measured as the CT shows
# the arteries (Phantom.groups_as_shown): validation 0.869 against the bundled 0.903, the loss
# in the iliacs (0.865 against 0.950), whose phantom wall the synthesis never shows.  From
# 11758 with 35 % synthesis patches instead of 60 %.  Trained to 13366 on 2026-12-02;
# bundled on 2026-12-02 as arteries-calcium 0.6.13366 (refiner: fit_refiner.py, 60 phantoms,
# ten perceptrons); its refiner's threshold calibrated to 0.4 on 2026-12-03 (0.7.13366,
# calibrate_refiner.py).
CONFIGS["arteries-calcium-mixed"] = _trained_on(
    "arteries-calcium-anatomy", 11758, 13300, "from 11758 with 35 % of the patches from the "
    "real-anatomy synthesis", "after 0.5.11758's phantom artery label was seen to fall in the "
    "iliacs, not after a real-scan measurement", anatomy_fraction=0.35, version_prefix="0.6")
NORM = {"type": "ct", "clip": [-1024.0, 2000.0], "mean": 100.0, "std": 300.0}
VALIDATION_SEEDS = list(range(100000, 100006))  # held out; they chose the checkpoint to bundle
TEST_SEEDS = list(range(100006, 100012))  # held out and never used for any choice
#: development phantoms of the held-out distribution (2026-12-03): they calibrate the
#: refine_by_hu threshold (training/calibrate_refiner.py); never used for training or test
DEVELOPMENT_SEEDS = list(range(300000, 300030))
#: a wider test set, fixed on 2026-12-03 before any model was measured on it: six test
#: phantoms hold too little calcium per side group for a pooled volume bar (three of them
#: hold renal calcium); held out and never used for any choice, measured once per bundled
#: calcium model beside TEST_SEEDS
WIDE_TEST_SEEDS = list(range(400000, 400030))
RANDOMISATION = ("per phantom: in-plane spacing 0.7-1.0 mm, slice spacing 0.625-3 mm; lumen "
                 "150-650 HU (15 %: 20-150 HU, no contrast); noise SD 5-35 HU; partial-volume "
                 "blur 0.3-1.2 mm; bias field 0-40 HU; 0-7 gas bubbles; 0-2 oral contrast "
                 "loops; metal implant 15 %; accessory renal artery 30 %; 4-29 plaques of "
                 "250-1500 HU; field of view margin 20-60 mm around the arteries; anatomy "
                 "(diameters, lengths, take-off angles, tortuosity) from the phantom generator")


def random_options(rng):
    """Scanner and patient variation drawn per training phantom."""
    return dict(
        spacing=tuple(rng.choice([0.7, 0.8, 0.9, 1.0], 1).tolist() * 2 + [float(rng.choice([0.625, 1.0, 1.5, 2.0, 3.0]))]),
        # mostly arterial-phase CTA; 15 % without contrast so the artery groups are also
        # found by shape (real non-contrast scans, failed bolus)
        lumen_hu=float(rng.uniform(150, 650) if rng.random() > 0.15 else rng.uniform(20, 150)),
        noise_hu=float(rng.uniform(5, 35)),
        pv_sigma_mm=float(rng.uniform(0.3, 1.2)), bias_hu=float(rng.uniform(0, 40)),
        gas_bubbles=int(rng.integers(0, 8)), oral_contrast=int(rng.integers(0, 3)),
        metal=bool(rng.random() < 0.15), accessory_renal=bool(rng.random() < 0.3),
        n_plaques=int(rng.integers(4, 30)), fov="vessels", margin_mm=float(rng.uniform(20, 60)),
        plaque_hu=(250.0, 1500.0))


def held_out_options(seed):
    """Validation settings: the training distribution, but on voxel grids never used in
    training (in-plane 0.75/0.85/0.95 mm, slices 0.8/1.25/2.5 mm)."""
    rng = np.random.default_rng(seed)
    o = random_options(rng)
    o["spacing"] = (float(rng.choice([0.75, 0.85, 0.95])),) * 2 + (float(rng.choice([0.8, 1.25, 2.5])),)
    return o


def sample(seed, cfg, rng=None):
    """(image array normalised, target array) of one phantom on the model grid."""
    rng = rng or np.random.default_rng(seed)
    o = random_options(rng)
    spacing = o.pop("spacing")
    ph = make_phantom(seed, spacing=spacing, **o)
    ct = _resample(sitk.Cast(ph.ct, sitk.sitkFloat32), cfg["spacing_mm"], sitk.sitkLinear, -1024.0)
    tgt = sitk.Resample(getattr(ph, cfg["target"]), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return normalise(sitk.GetArrayFromImage(ct), NORM), sitk.GetArrayFromImage(tgt).astype(np.int64)


def pad_to(patch, arrays, values):
    """``arrays`` padded at their far ends to at least ``patch`` (one value each)."""
    pads = [(0, max(q - n, 0)) for q, n in zip(patch, arrays[0].shape)]
    return [np.pad(a, pads, constant_values=v) for a, v in zip(arrays, values)]


def window_around(centre, patch, shape, rng):
    """Slices of a ``patch`` window inside ``shape`` around ``centre``, moved by up to a
    quarter patch per axis."""
    start = [int(np.clip(ci - q // 2 + rng.integers(-q // 4, q // 4 + 1), 0, n - q))
             for ci, q, n in zip(centre, patch, shape)]
    return tuple(slice(s, s + q) for s, q in zip(start, patch))
