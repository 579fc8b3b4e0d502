#!/usr/bin/env python3
"""The bundled side-branch network as a weighted average of two checkpoints of one run
("model soup"), and the artery-groups card that serves it.

    python training/soup_branches.py [--share 0.75] [--wall-mm 5] [--export-to DIR]

``artery-branches-routed`` (13,852) was trained on from ``artery-branches`` 0.1.11539 on
the synthesis with the renal arteries kept off the spine.  Alone it finds twice as much of
the synthesis' renal arteries, but on the real stent-graft CTA it lost a renal artery
that 0.1.11539 finds (README, *Models*).  Both share one architecture and the routed run
started from 0.1.11539, so their weights can be averaged: ``share`` of the routed weights,
the rest of 0.1.11539's (the networks normalise per instance: no running statistics to
mend).  2026-12-03 measured the shares 0.25, 0.5 and 0.75 on the real scans and chose
0.75 (``CHOICE`` says how); the card records both parents and their checkpoints' sha256.

The artery-groups card gets the soup as its second stage and, with ``--wall-mm``, the rule
that gives the aorta the side-group pieces lying wholly within that distance of it
(``segmentation/branches.wall_pieces_to_aorta``).  Then measure both with
``train_models.py artery-groups --remeasure-phantoms`` and ``--remeasure-real`` (and
``arteries-calcium --remeasure-real``: it runs inside these groups).  Not installed into
Slicer.
"""

import argparse
import json
from pathlib import Path

import torch
from CalciumScoringLib.segmentation.models import read_card, save_model
from recipes import CONFIGS, ROOT

MODELS = ROOT / "CalciumScoring" / "Resources" / "Models"
CHOICE = (
    "2026-12-03: the shares 0.25, 0.5 and 0.75 were run on the real scans as the second stage "
    "of artery-groups (ircad01_abdomen renal / branches pooled within 30 mm: 0.198 / 0.586, "
    "0.207 / 0.589, 0.276 / 0.604; 0.1.11539 alone 0.190 / 0.586, the routed 13852 alone "
    "0.295 / 0.608; stent_cta renal 262, 269, 264 mm3, 0.1.11539 255, the routed 14); 0.75 "
    "was taken as the largest share that keeps the stent CTA's renal artery, then measured on "
    "the validation phantoms (mesenteric / renal as shown 0.802 / 0.702 against 0.810 / 0.710) "
    "and on the synthesis' renal arteries (evaluate_models.synthetic_recall, portal-venous / "
    "arterial 0.26 / 0.35 against 0.10 / 0.23); ircad01_abdomen and stent_cta are therefore "
    "development data for this choice, the test phantoms were measured after it")


def soup(a, b, share):
    """State dict ``(1 - share) * a + share * b`` of two state dicts holding the same
    tensors (float32)."""
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        raise ValueError("the two networks differ in their tensors: they cannot be averaged")
    return {k: (1.0 - share) * a[k].float() + share * b[k].float() for k in a}


def file_sha256(path):
    """sha256 (hex) of a file: the parents' checkpoints, named in the soup's card."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--share", type=float, default=0.75, help="share of the routed weights")
    ap.add_argument("--wall-mm", type=float, default=5.0)
    ap.add_argument("--base", default=str(ROOT / "training" / "artery-branches" / "checkpoint.pt"))
    ap.add_argument("--routed", default=str(ROOT / "training" / "artery-branches-routed" / "checkpoint.pt"))
    ap.add_argument("--export-to", help="folder for the soup (default: the bundled one, and the "
                    "bundled artery-groups card is changed to serve it)")
    a = ap.parse_args()
    base_ckpt = torch.load(a.base, weights_only=False)
    routed_ckpt = torch.load(a.routed, weights_only=False)
    it_a, it_b = base_ckpt["state"]["iteration"], routed_ckpt["state"]["iteration"]
    bundled = MODELS / "artery-branches"
    card = read_card(bundled)
    if card["version"] != f"0.1.{it_a}":
        raise SystemExit(f"the bundled artery-branches is {card['version']}, not the base "
                         f"checkpoint's 0.1.{it_a}: the soup is made from 0.1.{it_a} only once")
    weights = soup(base_ckpt["net"], routed_ckpt["net"], a.share)
    routed_cfg = CONFIGS["artery-branches-routed"]
    card = {k: v for k, v in card.items() if k not in ("sha256", "weights", "metrics")}
    card["version"] = f"0.4.{it_b}"
    card["metrics"] = {"measured_as": "the second stage of artery-groups (train_models.py "
                                      "--remeasure-phantoms and --remeasure-real write them here)"}
    t = dict(card["training"])
    t["recipe"] = (f"{1 - a.share:g} x the weights of 0.1.{it_a} + {a.share:g} x those of "
                   f"artery-branches-routed {it_b} (training/soup_branches.py); that run: "
                   + routed_cfg["history"].split("; then ")[-1] + "; 0.1." + str(it_a) + ": "
                   + t["recipe"])
    t["iterations"] = it_b
    t["soup"] = {"share_routed": a.share, "base": f"artery-branches 0.1.{it_a}",
                 "routed": f"artery-branches-routed {it_b}", "choice": CHOICE,
                 "checkpoint_sha256": {"base": file_sha256(a.base), "routed": file_sha256(a.routed)}}
    t["real_scans_used"] = routed_cfg["real_scans_used"] + "; " + CHOICE
    card["training"] = t
    folder = Path(a.export_to) if a.export_to else bundled
    save_model(folder, weights, card)
    if a.export_to:
        return print(f"soup written to {folder}")
    gfolder = MODELS / "artery-groups"
    g = read_card(gfolder)
    weights_of = str(g["version"]).split(".")[-1]
    g["version"] = f"0.8.{weights_of}"
    spec = dict(g["postprocessing"]["branches"], model="artery-branches")
    if a.wall_mm:
        spec["wall_mm"] = a.wall_mm
    g["postprocessing"]["branches"] = spec
    g["training"]["branches"] = (
        f"0.8.{weights_of} = the weights of iteration {weights_of} plus the branch network "
        f"artery-branches {card['version']}: its mesenteric and renal labels replace this "
        f"network's in the box of the aorta widened by {spec['band_mm']:g} mm "
        "(segmentation/branches.py), then cut to the lumen the CT shows "
        "(segmentation/lumen.trim_to_lumen)" + (
            f"; side-group pieces lying wholly within {a.wall_mm:g} mm of the aorta are given "
            "to it (branches.wall_pieces_to_aorta: calcified aortic wall that the branch "
            "network called mesenteric on ts_dicom_series, stent struts called renal on "
            "stent_cta; rule added on 2026-12-03 after seeing them there)" if a.wall_mm else "")
        + "; its recipe, and what the real scans were used for, are in its own card")
    (gfolder / "model.json").write_text(json.dumps(g, indent=2))
    print(f"artery-branches {card['version']} bundled; artery-groups {g['version']} serves it")


if __name__ == "__main__":
    main()
