#!/usr/bin/env python3
"""Calibrate the ``refine_by_hu`` threshold of the bundled calcium model on development phantoms.

    python training/calibrate_refiner.py                 # cache, sweep, report the choice
    python training/calibrate_refiner.py --set           # write it to the card, re-measure

Not installed into Slicer.  The classifier of ``segmentation.refine`` averages its members'
probabilities and calls a voxel calcium above ``threshold``.  Fitted by binary cross-entropy
on training-distribution phantoms, 0.5 is where it is as likely right as wrong per voxel,
not where the calcified volume summed over a cohort is unbiased, which is what the burden
score needs.  This sweeps the threshold on the network's own outputs for the development
phantoms (``recipes.DEVELOPMENT_SEEDS``, held-out grids, never used for training or test)
and the validation phantoms, cached once per seed in ``training/<model>/calibration/``, and
chooses by a rule fixed before the sweep (``choose``).  ``--set`` writes the chosen
threshold into the card (the weights and their checksum are unchanged), bumps the
version prefix and measures the held-out metrics again: validation, test and the wide test
set (``recipes.WIDE_TEST_SEEDS``), and the real scans.
"""

import argparse
import json
import time
from pathlib import Path

import evaluate_models as em
import numpy as np
import recipes as tm
import SimpleITK as sitk
from CalciumScoringLib.phantoms.anatomy import GROUP_NAMES
from CalciumScoringLib.phantoms.generator import make_phantom
from CalciumScoringLib.segmentation.engine import refiner_inputs
from CalciumScoringLib.segmentation.models import find_model, read_card
from CalciumScoringLib.segmentation.refine import (
    FEATURES,
    band_features,
    load_refiner,
    mlp_probability,
    refine_problem,
    relabel_band,
)
from scipy import ndimage

THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
#: a threshold may cost at most this much of the best mean visible-calcium Dice
DICE_TOLERANCE = 0.01
#: largest pooled errors closer than this count as equal (the higher Dice wins)
ERROR_TIE = 0.005
#: the version prefix a calibrated card takes (0.6: the threshold 0.5 of the fit)
VERSION_PREFIX = "0.7"
_FULL = np.ones((3, 3, 3), bool)


def cache_case(folder, seed, path):
    """Store what re-deciding one held-out-distribution phantom needs: the network's labels
    before the refiner, the band voxels' features, and the visible-calcium truth of
    ``evaluate_models.visible_calcium`` (plaques >= 100 HU above the lumen)."""
    o = tm.held_out_options(seed)
    ph = make_phantom(seed, spacing=o.pop("spacing"), **o)
    got = refiner_inputs(ph.ct, folder, 2, 1, threads=2, roi=ph.groups > 0)
    truth = sitk.GetArrayFromImage(ph.arteries) == 2
    dim = [q["id"] for q in ph.meta["plaques"] if q["hu"] < o["lumen_hu"] + em.MARGIN_HU]
    hidden = np.isin(sitk.GetArrayFromImage(ph.plaque_ids), dim)
    d = dict(truth=truth & ~hidden, groups=sitk.GetArrayFromImage(ph.groups).astype(np.uint8),
             near=ndimage.binary_dilation(hidden, _FULL, iterations=em.NEAR_VOXELS),
             vv=float(np.prod(ph.ct.GetSpacing())))
    if got is not None:
        d["before"] = sitk.GetArrayFromImage(got[0])
        problem = refine_problem(got[0], ph.ct, got[1], got[2], 2, 1)
        if problem is not None:
            box, hu, sub, p_lab, p_ref, lumen = problem
            idx, X = band_features(hu, sub, p_lab, p_ref, ph.ct.GetSpacing(), lumen, 2)
            d.update(box=np.array([[b.start, b.stop] for b in box]), idx=idx, X=X)
    np.savez_compressed(path, **d)


def relabel(case, probability, threshold):
    """The calcium mask of ``case`` after the refiner at ``threshold`` (as refine_label)."""
    if "before" not in case:
        return np.zeros(case["truth"].shape, bool)
    lab = case["before"].copy()
    if probability is not None:
        box = tuple(slice(int(a), int(b)) for a, b in case["box"])
        sub = lab[box].copy()
        relabel_band(sub.reshape(-1), case["idx"], probability > threshold)
        lab[box] = sub
    return lab == 2


def measure(case, pred):
    """({group: (predicted, true) visible calcium mm3}, visible-calcium Dice) of one case."""
    a, b = pred & ~case["near"], case["truth"]
    vols = {g: (float((a & (case["groups"] == g)).sum() * case["vv"]),
                float((b & (case["groups"] == g)).sum() * case["vv"])) for g in GROUP_NAMES}
    return vols, float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def sweep(work, seeds, params, thresholds=THRESHOLDS):
    """{threshold: {seed: (volumes, Dice)}} over the cached ``seeds``."""
    out = {t: {} for t in thresholds}
    for seed in seeds:
        case = dict(np.load(work / f"{seed}.npz"))
        p = (mlp_probability(case["X"], params)
             if "idx" in case and case["idx"].size else None)
        for t in thresholds:
            out[t][seed] = measure(case, relabel(case, p, t))
    return out


def pooled_errors(rows):
    """Pooled relative volume error per group name over ``rows`` ({seed: (volumes, Dice)})."""
    tot = {g: [0.0, 0.0] for g in GROUP_NAMES}
    for vols, _ in rows.values():
        for g, (a, b) in vols.items():
            tot[g][0] += a
            tot[g][1] += b
    return {GROUP_NAMES[g]: a / b - 1 for g, (a, b) in tot.items() if b > 0}


def choose(result):
    """The rule (set after a first development sweep, before any test phantom was measured
    with a new threshold): among the thresholds whose mean visible-calcium Dice is within
    DICE_TOLERANCE of the best, the one with the smallest largest |pooled volume error| over
    the four groups (development and validation phantoms together); errors within
    ERROR_TIE of that smallest count as equal, and the higher Dice wins among them."""
    dice = {t: float(np.mean([d for _, d in rows.values()])) for t, rows in result.items()}
    worst = {t: max(abs(e) for e in pooled_errors(rows).values()) for t, rows in result.items()}
    ok = [t for t in result if dice[t] >= max(dice.values()) - DICE_TOLERANCE]
    least = min(worst[t] for t in ok)
    return max((t for t in ok if worst[t] <= least + ERROR_TIE), key=dice.get), dice, worst


def bootstrap(rows, n_cases=6, draws=5000, seed=0):
    """Share of ``draws`` sets of ``n_cases`` phantoms (drawn from ``rows`` with replacement)
    whose pooled volume error exceeds 10 % per group: how well a set that size can tell."""
    rng = np.random.default_rng(seed)
    vols = np.array([[v[g] for g in GROUP_NAMES] for v, _ in rows.values()])  # (n, 4, 2)
    beyond = np.zeros(len(GROUP_NAMES))
    for _ in range(draws):
        pick = vols[rng.integers(0, len(vols), n_cases)].sum(0)
        err = np.where(pick[:, 1] > 0, pick[:, 0] / np.maximum(pick[:, 1], 1e-9) - 1, 0.0)
        beyond += np.abs(err) > 0.10
    return {GROUP_NAMES[g]: float(b / draws) for g, b in zip(GROUP_NAMES, beyond)}


def set_threshold(folder, threshold, summary, log):
    """Write ``threshold`` into the card (weights untouched), re-measure its metrics."""
    from train_models import real_calcium

    path = folder / "model.json"
    card = json.loads(path.read_text())
    cfg = tm.CONFIGS["arteries-calcium-mixed"]
    card["version"] = f"{VERSION_PREFIX}.{card['version'].rsplit('.', 1)[1]}"
    card["postprocessing"]["refine_by_hu"]["threshold"] = threshold
    card["training"]["calibration"] = summary
    path.write_text(json.dumps(card, indent=2))
    metrics = dict(card["metrics"])
    metrics["held_out_phantoms"] = em.evaluate(folder, cfg, log)
    metrics["test_phantoms"] = em.evaluate(folder, cfg, log, tm.TEST_SEEDS)
    metrics["wide_test_phantoms"] = em.evaluate(folder, cfg, log, tm.WIDE_TEST_SEEDS)
    metrics["real_data"] = real_calcium(folder, log)
    card["metrics"] = metrics
    path.write_text(json.dumps(card, indent=2))
    log(json.dumps(metrics))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="store_true", help="write the chosen threshold to the "
                    "bundled card and measure it again")
    a = ap.parse_args()
    info = find_model("arteries-calcium")
    folder = Path(info.folder)
    network = read_card(folder)["version"].rsplit(".", 1)[1]
    work = (tm.ROOT / "training" / "arteries-calcium-mixed" / "calibration"
            / f"network-{network}-features-{len(FEATURES)}")
    work.mkdir(parents=True, exist_ok=True)

    def log(msg):
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(work.parent / "log.txt", "a") as f:
            f.write(line + "\n")

    seeds = tm.DEVELOPMENT_SEEDS + tm.VALIDATION_SEEDS
    for seed in seeds:
        if not (work / f"{seed}.npz").exists():
            cache_case(folder, seed, work / f"{seed}.npz")
            log(f"phantom {seed} cached")
    params = load_refiner(info)
    result = sweep(work, seeds, params)
    for t, rows in result.items():
        dev = {s: r for s, r in rows.items() if s in tm.DEVELOPMENT_SEEDS}
        log(f"threshold {t}: Dice {np.mean([d for _, d in rows.values()]):.4f}; pooled error "
            "development + validation " + ", ".join(f"{g} {e:+.1%}" for g, e in
                                                   pooled_errors(rows).items())
            + "; development alone " + ", ".join(f"{e:+.1%}" for e in
                                                 pooled_errors(dev).values()))
    best, dice, worst = choose(result)
    chance = bootstrap(result[best])
    log("largest pooled error per threshold " + ", ".join(f"{t}: {w:.2%}" for t, w in worst.items()))
    log(f"chosen {best} (largest pooled error {worst[best]:.1%}, Dice {dice[best]:.4f}); six "
        "phantoms drawn from these: share beyond 10 % per group " + json.dumps(chance))
    if a.set:
        before = read_card(folder)["postprocessing"]["refine_by_hu"]["threshold"]
        summary = {
            "rule": choose.__doc__.split("The rule ")[1].replace("\n", " "),
            "seeds": f"development {tm.DEVELOPMENT_SEEDS[0]}-{tm.DEVELOPMENT_SEEDS[-1]} and "
                     f"validation {tm.VALIDATION_SEEDS[0]}-{tm.VALIDATION_SEEDS[-1]} (held-out grids)",
            "threshold": best, "before": before,
            "sweep": {str(t): {"dice_visible": round(dice[t], 4),
                               "pooled_error": {g: round(e, 4) for g, e in
                                                pooled_errors(result[t]).items()}}
                      for t in result},
            "six_phantom_sets_beyond_10_percent": chance,
            "tool": "training/calibrate_refiner.py"}
        set_threshold(folder, best, summary, log)


if __name__ == "__main__":
    main()
