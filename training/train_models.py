#!/usr/bin/env python3
"""Train the bundled networks on randomised phantoms (2 CPU cores; checkpoints and resumes).

    python training/train_models.py artery-groups --minutes 40
    python training/train_models.py arteries-calcium --minutes 40
    python training/train_models.py artery-groups --export   # write the model folder + card

Not installed into Slicer.  Training data: phantoms (CalciumScoringLib.phantoms.generator) with
strong randomisation of what differs between scanners and patients (contrast level,
tissue intensities, noise, blur, bias field, slice spacing, field of view, gas, oral
contrast, metal, anatomy).  Seeds >= 100000 are never used for training: they are the
held-out validation phantoms.  Everything (checkpoint, log, cache) lives in
``training/<model>/`` (git-ignored); ``--export`` writes
``CalciumScoring/Resources/Models/<model>/`` with the measured validation metrics.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from CalciumScoringLib.segmentation.models import save_model
from CalciumScoringLib.segmentation.networks import UNet3D
from recipes import (
    CONFIGS,
    NORM,
    RANDOMISATION,
    ROOT,
    TEST_SEEDS,
    VALIDATION_SEEDS,
    pad_to,
    sample,
    window_around,
)


def patch_of(x, y, patch, rng, fg_prob=0.7):
    x, y = pad_to(patch, (x, y), (float(x.min()), 0))
    if rng.random() < fg_prob and y.any():
        labels = np.unique(y[y > 0])
        lab = rng.choice(labels)  # balance classes: rare calcium is picked as often as arteries
        idx = np.argwhere(y == lab)
        sl = window_around(idx[rng.integers(len(idx))], patch, x.shape, rng)
    else:
        start = [int(rng.integers(0, n - q + 1)) for q, n in zip(patch, x.shape)]
        sl = tuple(slice(s, s + q) for s, q in zip(start, patch))
    return x[sl], y[sl]


def loss_fn(logits, y, ncls, weights=None):
    ce = F.cross_entropy(logits, y, weight=None if weights is None else torch.tensor(weights))
    prob = logits.softmax(1)
    onehot = F.one_hot(y, ncls).permute(0, 4, 1, 2, 3).float()
    inter = (prob * onehot).sum((0, 2, 3, 4))
    dice = (2 * inter + 1e-5) / (prob.sum((0, 2, 3, 4)) + onehot.sum((0, 2, 3, 4)) + 1e-5)
    return ce + (1 - dice[1:].mean())


def train(name, minutes, threads, pool_size, log):
    cfg = CONFIGS[name]
    torch.set_num_threads(threads)
    work = ROOT / "training" / name
    work.mkdir(parents=True, exist_ok=True)
    ncls = len(cfg["labels"]) + 1
    net = UNet3D(1, ncls, cfg["features"])
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    state = {"iteration": 0, "seed": 0, "history": []}
    ck = work / "checkpoint.pt"
    if not ck.exists() and cfg.get("init_model"):  # a bundled model's weights, a fresh optimiser
        from safetensors.torch import load_file

        from CalciumScoringLib.segmentation.models import find_model, verify_weights
        from CalciumScoringLib.segmentation.refine import REFINER_PREFIX

        info = find_model(cfg["init_model"])
        weights = load_file(str(verify_weights(info.folder, info.card)))
        net.load_state_dict({k: v for k, v in weights.items() if not k.startswith(REFINER_PREFIX)})
        state = {"iteration": int(cfg["decay_from"]), "seed": 0, "history": []}
        log(f"initialised from the bundled {info.name} {info.version}")
    elif not ck.exists() and cfg.get("init_from"):
        ck = ROOT / "training" / cfg["init_from"] / "checkpoint.pt"
        log(f"initialised from {ck}")
    if ck.exists():
        saved = torch.load(ck, weights_only=False)
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        log(f"resumed at iteration {state['iteration']}")
    ck = work / "checkpoint.pt"
    scan = None
    if cfg.get("real"):
        import real_finetune as rf

        if not rf.available():
            raise SystemExit(f"{name} needs the labelled real scan in {rf.TRAIN_SCAN}")
        scan = rf.load_scan(cfg["spacing_mm"])
    anatomies = None
    if cfg.get("anatomy"):
        import synth_anatomy
        from synth_paint import anatomy_patch

        if not synth_anatomy.available():
            raise SystemExit(f"{name} needs the label maps in {synth_anatomy.DATA}")
        anatomies = synth_anatomy.variants(4, seed=state["iteration"],
                                           renal_radius_mm=cfg.get("renal_radius_mm", (2.0, 3.5)))
        if cfg.get("ircad"):  # real artery trees of the IRCAD expert label maps
            import synth_ircad

            anatomies += synth_ircad.anatomies(np.random.default_rng(state["iteration"]),
                                               synth_anatomy._plaques)
        log(f"{len(anatomies)} anatomy variants: " + ", ".join(sorted({a.name for a in anatomies})))
    rng = np.random.default_rng(state["iteration"] + 12345)
    pool = []
    t_end = time.time() + 60 * minutes
    t_ck = time.time()
    stop = []
    import signal

    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))  # `kill` stops after a checkpoint
    patch = tuple(cfg["patch_size"][::-1])
    while time.time() < t_end and not stop:
        if len(pool) < pool_size or rng.random() < 0.05:  # refresh the phantom pool slowly
            seed = state["seed"]
            state["seed"] += 1
            item = sample(seed, cfg)
            pool = (pool + [item])[-pool_size:]
        xs, ys = zip(*[anatomy_patch(anatomies[rng.integers(len(anatomies))], patch,
                                     cfg["spacing_mm"], NORM, rng, cfg["target"],
                                     cfg.get("group_weights"))
                       if anatomies and rng.random() < cfg["anatomy_fraction"] else
                       patch_of(*pool[rng.integers(len(pool))], patch, rng) for _ in range(2)])
        x = torch.from_numpy(np.stack(xs)[:, None].copy())
        if rng.random() < 0.5:  # intensity augmentation on top of the phantom randomisation
            x = x * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.1, 0.1))
        y = torch.from_numpy(np.stack(ys).copy())
        d0 = cfg.get("decay_from", 0)
        lr = cfg.get("lr", 2e-3) * max(0.05, 1 - (state["iteration"] - d0) / (cfg.get("decay_iterations", 20000) - d0))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        if scan is not None:
            real = rf.real_patch(scan, patch, NORM, rng, cfg["spacing_mm"])
            loss = rf.combined_loss(net, loss_fn, ncls, x, y, real, cfg.get("ce_weights"))
        else:
            loss = loss_fn(net(x), y, ncls, cfg.get("ce_weights"))
        loss.backward()
        opt.step()
        state["iteration"] += 1
        if state["iteration"] % 20 == 0:
            state["history"].append((state["iteration"], loss.item()))
            log(f"it {state['iteration']} loss {loss.item():.4f} lr {lr:.2e} phantoms {state['seed']}")
        if time.time() - t_ck > 300:
            torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "state": state}, ck)
            t_ck = time.time()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "state": state}, ck)
    log(f"checkpoint at iteration {state['iteration']}")
    return net


REAL_NOTE = (
    "real scans of ../shared/data; none was used for training, and the last checkpoint was "
    "bundled without a choice among checkpoints, but they are development data, not held-out "
    "evidence: ts_abdomen_ct's anatomy and texture are in the synthesis; ircad01_abdomen and "
    "stent_cta were looked at during training; grow_by_hu was added after ts_dicom_series was "
    "measured (see training.real_scans_used). References: ts_dicom_series corrected aorta, "
    "ircad01_abdomen team-drawn aorta, SMA, celiac trunk and renal arteries (docs/references; "
    "the renal ones drawn on 2026-12-01), ts_abdomen_ct aorta and iliacs; far_5mm = share of "
    "predicted artery voxels more than 5 mm from a labelled artery (an upper bound where not every artery is labelled)")


REAL_CALCIUM_NOTE = (
    "real scans of ../shared/data, none used for training (ts_abdomen_ct's texture and its own "
    "arterial calcium are in the synthesis); no real scan has a calcium reference, so each "
    "reports, inside the bundled artery-groups network's groups: network_artery_coverage (the "
    "share of the groups this network labels artery or calcium; the pipeline flags "
    "calcium_network_unsure below 0.5), the calcium of this network and of the adaptive "
    "threshold (mm3, and the part >= 1,500 HU: stent metal in stent_cta) and their Dice")


def real_ct(folder, log):
    """The network on every real scan (training/evaluate_real_ct.py)."""
    from evaluate_real_ct import cases, measure
    from CalciumScoringLib.segmentation.engine import segment

    out = {}
    for name, ct, ref, labelled in cases():
        out[name] = measure(name, ct, ref, labelled, segment(ct, folder, threads=2))
        log(f"real data {name}: {out[name]}")
    return out


STUMPS_NOTE = (
    "training/evaluate_stumps.py: the expert artery masks of ircad01_abdomen and ircad07_abdomen "
    "grouped by where each branch leaves the aorta (training/artery_tree.group_expert), both "
    "they and the network's groups shortened to the 25 mm stumps; share_found = share of each "
    "reference stump labelled with its group (bar 0.5), stump_dice_pooled over the side groups "
    "(bar 0.6). ircad01_abdomen is development data; ircad07_abdomen chose the keep_first rule "
    "(its per-stage losses were looked at), so neither is held-out evidence")


def real_stumps(folder, log, figures=None):
    """The side-artery stumps on the IRCAD CTs with expert arteries (evaluate_stumps.py),
    with a picture per scan (labels only) in ``figures`` if given."""
    from evaluate_stumps import measure_scans

    out = measure_scans(folder, figures)
    for scan, r in out.items():
        log(f"stumps {scan}: {r}")
    return out


def real_calcium(folder, log):
    """The calcium network on every real scan, inside the bundled artery-groups network's
    groups (training/evaluate_real_ct.py calcium_inside: no calcium reference exists)."""
    from evaluate_real_ct import PHASE, calcium_inside, cases
    from CalciumScoringLib.segmentation.engine import segment
    from CalciumScoringLib.segmentation.models import find_model

    out = {}
    groups_model = find_model("artery-groups")
    for name, ct, _, _ in cases():
        groups = segment(ct, groups_model, threads=2)
        out[name] = dict(phase=PHASE.get(name, ""), **calcium_inside(ct, groups, folder),
                         groups_model=f"artery-groups {groups_model.version}")
        log(f"real data {name}: {out[name]}")
    return out


def export(name, log, out_dir=None, measure=True):
    cfg = CONFIGS[name]
    saved = torch.load(ROOT / "training" / name / "checkpoint.pt", weights_only=False)
    out_name = cfg.get("export_as", name)
    data = "synthetic phantoms (CalciumScoringLib.phantoms.generator), randomised"
    if cfg.get("real"):
        data += ("; plus the real non-contrast abdomen CT ts_abdomen_ct (TotalSegmentator example "
                 "case, CC BY 4.0; its automatic aorta/iliac labels, marginal loss for the "
                 "unlabelled groups), as scanned (30 %) and with a simulated bolus of 150-650 HU (70 %)")
    if cfg.get("anatomy"):
        data += ("; plus real anatomy (training/synth_anatomy.py, synth_paint.py): patches of "
                 "TotalSegmentator's whole-anatomy map of the real abdomen-pelvis CT "
                 "ts_abdomen_ct (its CT as texture) and of the AMOS organ maps amos_0013 and "
                 "niivue_torso (body and spine drawn around them), with celiac trunk, SMA, "
                 "renal (and, for AMOS, iliac) arteries drawn from the aorta per variant, "
                 "randomly deformed and painted as arterial (250-600 HU lumen), portal-venous "
                 "(120-220 HU, veins, liver, spleen and kidneys alike) or unenhanced CT"
                 + cfg.get("data_extra", ""))
    if cfg.get("ircad"):
        data += ("; plus the real artery trees, veins and organs of eight 3D-IRCADb-01 expert "
                 "label maps (patients 4, 5, 6, 8, 9, 11, 12, 13; their CT is not used; "
                 "CC BY-NC-ND 4.0: used to train, not redistributed), the arteries grouped by "
                 "where each branch leaves the aorta (training/artery_tree.py)")
    card = {"name": out_name, "version": f"{cfg.get('version_prefix', '0.1')}.{saved['state']['iteration']}",
            "labels": cfg["labels"],
            "spacing_mm": cfg["spacing_mm"], "normalization": NORM, "patch_size": cfg["patch_size"],
            "tile_step": cfg["tile_step"], "postprocessing": cfg["postprocessing"],
            "architecture": {"name": "unet3d", "params": {"in_channels": 1,
                                                          "num_classes": len(cfg["labels"]) + 1,
                                                          "features": cfg["features"]}},
            "training": {"data": data,
                         "randomisation": RANDOMISATION,
                         "recipe": f"training/train_models.py: AdamW (lr {cfg.get('lr', 2e-3):g} decaying linearly "
                                   f"to 0 at iteration {cfg.get('decay_iterations', 20000)}, floor 5 %; "
                                   "weight decay 1e-4), "
                                   "batch 2 patches (70 % centred on a label, classes balanced), "
                                   "cross-entropy (class weights: " + str(cfg.get("ce_weights", "none"))
                                   + ") + soft Dice, +-10 % intensity scale/shift"
                                   + (f"; {cfg['history']}" if "history" in cfg else ""),
                         "iterations": saved["state"]["iteration"],
                         "phantoms": saved["state"]["seed"],
                         "held_out": f"seeds {VALIDATION_SEEDS[0]}-{VALIDATION_SEEDS[-1]} on "
                                     "voxel grids never used in training (held_out_options); "
                                     "they chose the checkpoint",
                         "test": f"seeds {TEST_SEEDS[0]}-{TEST_SEEDS[-1]}, drawn the same way, "
                                 "never used for any choice"},
            "metrics": {}, "license": "Apache-2.0",
            "intended_use": "research only; not for clinical use"}
    if "real_scans_used" in cfg:  # which real scans informed what (none is clean evidence)
        card["training"]["real_scans_used"] = cfg["real_scans_used"]
    folder = Path(out_dir) if out_dir else ROOT / "CalciumScoring" / "Resources" / "Models" / out_name
    if cfg.get("init_model"):  # the bundled weights it started from, read before they are replaced
        from CalciumScoringLib.segmentation.models import find_model

        parent = find_model(cfg["init_model"]).card
        lineage = parent.get("training", {})
        if parent.get("version") == card["version"] and "initialised_from" in lineage:
            card["training"]["initialised_from"] = lineage["initialised_from"]  # exported again
        else:
            ini = {k: parent[k] for k in ("name", "version", "sha256") if k in parent}
            ini.update({k: lineage[k] for k in ("soup", "initialised_from") if k in lineage})
            card["training"]["initialised_from"] = ini
    save_model(folder, saved["net"], card)
    if not measure:  # a preview of the running training, no metrics
        return
    if cfg.get("branch_of"):
        return export_cascade(cfg, folder, card, log)
    from evaluate_models import evaluate, evaluate_real

    card["metrics"] = {"held_out_phantoms": evaluate(folder, cfg, log),
                       "test_phantoms": evaluate(folder, cfg, log, TEST_SEEDS),
                       "real_data": (real_calcium(folder, log) if cfg.get("anatomy") and cfg["target"] == "arteries"
                                     else real_ct(folder, log) if cfg.get("anatomy") else evaluate_real(
                           folder, cfg, log, ROOT / "training" / name / "real.png"))}
    if cfg.get("anatomy") and cfg["target"] == "arteries":
        card["metrics"]["real_data_note"] = REAL_CALCIUM_NOTE
    elif cfg.get("anatomy"):
        card["metrics"]["real_data_note"] = REAL_NOTE
    else:
        card["metrics"]["real_data_note"] = (
            "both real scans are non-contrast; *_bolus350_* = the same scan with a simulated "
            "350 HU bolus in its labelled arteries" + (
                "; ts_abdomen_ct is in the training data (not a held-out measure), "
                "ts_dicom_series is held out" if cfg.get("real") else ""))
    save_model(folder, saved["net"], card)
    log(json.dumps(card["metrics"]))


def export_cascade(cfg, folder, card, log):
    """A branch network (``cfg["branch_of"]``: the model it serves) as that model's second
    stage: the served model's card names it (``segmentation/branches.py``) under the version
    prefix ``cascade_version_prefix`` (its weights unchanged), and both cards carry the
    metrics of the two together.  Beside a folder given with ``--export-to``, the served
    model is copied to ``<folder>-<served>`` and changed there, not in the bundle."""
    import shutil

    from CalciumScoringLib.segmentation.models import read_card
    from evaluate_models import evaluate

    base = ROOT / "CalciumScoring" / "Resources" / "Models" / cfg["branch_of"]
    bundled = folder.resolve().parent == base.resolve().parent
    served = base if bundled else folder.with_name(f"{folder.name}-{cfg['branch_of']}")
    if not bundled:
        shutil.copytree(base, served, dirs_exist_ok=True)
    gcard = read_card(served)
    weights_of = str(gcard["version"]).split(".")[-1]
    gcard["version"] = f"{cfg['cascade_version_prefix']}.{weights_of}"
    spec = dict(gcard.get("postprocessing", {}).get("branches", {}),  # wall_mm etc. stay
                model=card["name"] if bundled else str(folder.resolve()), band_mm=cfg["band_mm"],
                trim_to_lumen=bool(cfg.get("trim_to_lumen", False)))
    if "keep_first" in cfg:
        spec["keep_first"] = [int(v) for v in cfg["keep_first"]]
    gcard["postprocessing"] = dict(gcard.get("postprocessing", {}), branches=spec)
    gcard["training"]["branches"] = (
        f"{cfg['cascade_version_prefix']}.{weights_of} = the weights of iteration {weights_of} plus "
        f"the branch network {card['name']} {card['version']}: its mesenteric and renal labels "
        + "replace this network's" + (
            ", except that this network's " + "/".join(cfg["labels"][str(v)] for v in spec["keep_first"])
            + " labels stay where the branch network finds no side branch" if spec.get("keep_first") else "")
        + f" in the box of the aorta widened by {cfg['band_mm']:g} mm "
        "(segmentation/branches.py)" + (", then cut to the lumen the CT shows "
        "(segmentation/lumen.trim_to_lumen)" * bool(cfg.get("trim_to_lumen"))) +
        (f"; side pieces wholly within {spec['wall_mm']:g} mm of the aorta are given to it"
         if spec.get("wall_mm") else "") +
        "; its recipe, and what the real scans were used for, are in its own card")
    (served / "model.json").write_text(json.dumps(gcard, indent=2))
    groups_cfg = CONFIGS[cfg["branch_of"]]
    metrics = {"held_out_phantoms": evaluate(served, groups_cfg, log),
               "test_phantoms": evaluate(served, groups_cfg, log, TEST_SEEDS),
               "real_data": real_ct(served, log), "real_data_note": REAL_NOTE,
               "real_stumps": real_stumps(served, log, ROOT / "docs" / "figures" if bundled else None),
               "real_stumps_note": STUMPS_NOTE}
    gcard["metrics"] = metrics
    (served / "model.json").write_text(json.dumps(gcard, indent=2))
    card["metrics"] = dict(metrics, measured_as=f"the second stage of {gcard['name']} {gcard['version']}")
    (folder / "model.json").write_text(json.dumps(dict(read_card(folder), metrics=card["metrics"],
                                                       second_stage_of=gcard["name"]), indent=2))
    log(json.dumps(metrics))


def remeasure_real(name, log):
    """Measure a bundled model again on the real scans as they stand now and rewrite only the
    ``real_data`` section of its card (weights, version and phantom metrics unchanged): the
    calcium network runs inside the groups of the bundled artery-groups model, so its real-data
    numbers change when that model does."""
    from CalciumScoringLib.segmentation.models import read_card

    cfg = CONFIGS[name]
    folder = ROOT / "CalciumScoring" / "Resources" / "Models" / cfg.get("export_as", name)
    card = read_card(folder)
    if cfg["target"] == "arteries":
        real, note = real_calcium(folder, log), REAL_CALCIUM_NOTE
        if not cfg.get("anatomy"):
            note = "real scans of ../shared/data, none used for training (phantoms only)" + \
                note[note.index(";"):]
    else:
        real, note = real_ct(folder, log), REAL_NOTE
    card["metrics"].update(real_data=real, real_data_note=note,
                           real_data_measured=time.strftime("%Y-%m-%d"))
    (folder / "model.json").write_text(json.dumps(card, indent=2))
    to_second_stage(folder, card, ("real_data", "real_data_note", "real_data_measured"))
    log(f"real data of {card['name']} {card['version']} re-measured: {json.dumps(real)}")


def to_second_stage(folder, card, keys):
    """Copy the metrics ``keys`` of the bundled ``card`` (in ``folder``) into the card of the
    second stage it names, if any: a branch network carries the numbers of the two together,
    as ``export_cascade`` writes them."""
    from CalciumScoringLib.segmentation.models import read_card

    stage = card.get("postprocessing", {}).get("branches")
    if stage:
        second_folder = folder.parent / stage["model"]
        second = read_card(second_folder)
        second["metrics"].update({k: card["metrics"][k] for k in keys},
                                 measured_as=f"the second stage of {card['name']} {card['version']}")
        (second_folder / "model.json").write_text(json.dumps(second, indent=2))


def remeasure_phantoms(name, log):
    """Measure a bundled model again on the held-out phantoms (validation and test seeds)
    and rewrite only those two sections of its card; a second stage it names (artery-branches
    under artery-groups) gets the same numbers, as ``export_cascade`` writes them."""
    from CalciumScoringLib.segmentation.models import read_card
    from evaluate_models import evaluate

    cfg = CONFIGS[name]
    models = ROOT / "CalciumScoring" / "Resources" / "Models"
    folder = models / cfg.get("export_as", name)
    card = read_card(folder)
    phantoms = {"held_out_phantoms": evaluate(folder, cfg, log),
                "test_phantoms": evaluate(folder, cfg, log, TEST_SEEDS)}
    card["metrics"].update(phantoms, phantoms_measured=time.strftime("%Y-%m-%d"))
    (folder / "model.json").write_text(json.dumps(card, indent=2))
    to_second_stage(folder, card, ("held_out_phantoms", "test_phantoms", "phantoms_measured"))
    log(f"phantoms of {card['name']} {card['version']} re-measured: {json.dumps(phantoms)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=sorted(CONFIGS))
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pool", type=int, default=12, help="phantoms kept in memory")
    ap.add_argument("--export", action="store_true")
    ap.add_argument("--preview", help="write the current checkpoint as a model folder here, "
                    "without measuring it (to look at a running training)")
    ap.add_argument("--export-to", help="folder for the exported model (default: the bundled "
                    "models folder; use another one for a preliminary model)")
    ap.add_argument("--remeasure-real", action="store_true", help="measure the bundled model "
                    "again on the real scans and rewrite only its card's real_data section")
    ap.add_argument("--remeasure-phantoms", action="store_true", help="measure the bundled "
                    "model again on the held-out phantoms and rewrite only those card sections")
    a = ap.parse_args()
    logf = ROOT / "training" / a.model / "log.txt"
    logf.parent.mkdir(parents=True, exist_ok=True)

    def log(msg):
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(logf, "a") as f:
            f.write(line + "\n")

    if a.remeasure_real:
        remeasure_real(a.model, log)
    elif a.remeasure_phantoms:
        remeasure_phantoms(a.model, log)
    elif a.preview:
        export(a.model, log, a.preview, measure=False)
    elif a.export or a.export_to:
        export(a.model, log, a.export_to)
    else:
        train(a.model, a.minutes, a.threads, a.pool, log)


if __name__ == "__main__":
    main()
