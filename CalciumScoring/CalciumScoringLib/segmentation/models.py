"""Model folders, model cards and the registry of available models.

A model is a folder with ``model.json`` (the model card) and a weights file
(safetensors).  The card holds: ``name``, ``version`` (semantic), ``labels``
(value -> name), ``spacing_mm`` (x, y, z), ``normalization``, ``patch_size``
(x, y, z voxels), ``architecture`` (name + params), ``weights`` (file name),
``sha256`` of the weights, ``training`` (data and recipe), ``metrics``,
``license``, ``intended_use`` and optionally ``postprocessing``, ``tile_step``,
``mirroring`` and ``label_resampling`` (``linear``, ``bspline`` or ``nearest``).
``postprocessing`` may hold ``largest_component``, ``tree_of``, ``brighter_than`` and
``refine_by_hu`` (see :mod:`.engine` and :mod:`.refine`), ``grow_by_hu`` (:mod:`.lumen`) and
``branches`` (a second network for the side branches, :mod:`.branches`); such a network's
own card says ``second_stage_of`` (the model it serves), which keeps it out of
:func:`model_names`, the list users choose from.

Bundled models live in ``CalciumScoring/Resources/Models/<name>/``; users add
folders with :func:`register` or the ``VASCULAR_CALCIUM_MODELS`` environment
variable (folders separated by the path separator).  nnU-Net v2 results folders
(``dataset.json`` + ``plans.json`` + ``fold_*``) are recognised too and run
through ``nnunetv2`` (:func:`nnunet_info` here; the run in :mod:`.nnunet`).
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..resources import resources_dir

REQUIRED = ("name", "version", "labels", "spacing_mm", "normalization", "patch_size",
            "architecture", "weights", "sha256", "license", "intended_use")
#: how labels go from the model grid to the CT grid (card ``label_resampling``, optional)
LABEL_RESAMPLING = ("linear", "bspline", "nearest")
_USER_FOLDERS = []


class ModelError(ValueError):
    """A model folder or card that cannot be used; the message says what to do."""


@dataclass
class ModelInfo:
    name: str
    version: str
    labels: dict
    folder: Path
    kind: str  # "bundled", "user" or "nnunet"
    card: dict

    def as_row(self):
        return {"name": self.name, "version": self.version, "kind": self.kind,
                "labels": ", ".join(f"{k}: {v}" for k, v in self.labels.items()),
                "folder": str(self.folder)}


def sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _pair_of_labels(rule, card, extra):
    """True when a postprocessing ``rule`` is a dict of integer ``label`` and ``reference``
    values of the card, and keys from ``extra``."""
    return (isinstance(rule, dict) and set(rule) <= {"label", "reference"} | set(extra)
            and all(isinstance(rule.get(k), int) and str(rule[k]) in card["labels"]
                    for k in ("label", "reference")))


def read_card(folder):
    """Parse and check ``model.json`` of a folder; raises :class:`ModelError`."""
    folder = Path(folder)
    path = folder / "model.json"
    if not path.exists():
        raise ModelError(f"{folder} has no model.json; a model folder needs model.json and its "
                         "weights (or an nnU-Net results folder with dataset.json and plans.json)")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ModelError(f"{path} lacks {missing}")
    how = card.get("label_resampling", "linear")
    if how not in LABEL_RESAMPLING:
        raise ModelError(f"{path}: label_resampling {how!r} is not one of "
                         f"{', '.join(LABEL_RESAMPLING)}; fix the card")
    rule = card.get("postprocessing", {}).get("brighter_than")
    if rule is not None:
        ok = (_pair_of_labels(rule, card, {"margin_hu", "erode"})
              and isinstance(rule.get("margin_hu"), (int, float))
              and isinstance(rule.get("erode", 2), int))
        if not ok:
            raise ModelError(f"{path}: postprocessing brighter_than must be "
                             '{"label": L, "reference": R, "margin_hu": HU} with integer labels '
                             f"of the card; got {rule!r}; fix the card")
    refine = card.get("postprocessing", {}).get("refine_by_hu")
    if refine is not None:
        ok = (_pair_of_labels(refine, card, {"threshold"})
              and isinstance(refine.get("threshold", 0.5), (int, float))
              and 0 < refine.get("threshold", 0.5) < 1)
        if not ok:
            raise ModelError(f"{path}: postprocessing refine_by_hu must be "
                             '{"label": L, "reference": R, "threshold": T} with integer labels '
                             f"of the card and 0 < T < 1; got {refine!r}; fix the card")
        if how == "nearest":
            raise ModelError(f"{path}: refine_by_hu needs the class probabilities on the CT grid; "
                             "use label_resampling linear or bspline")
    grow = card.get("postprocessing", {}).get("grow_by_hu")
    if grow is not None:
        known = {"reference", "groups", "reach_mm", "min_contrast_hu", "bright_sd", "bright_hu",
                 "disc_scale", "need_lumen"}
        lists = {"reference", "groups", "need_lumen"}
        labels = {int(k) for k in card["labels"]}
        ok = (isinstance(grow, dict) and set(grow) <= known and grow.get("reference") in labels
              and set(grow.get("groups") or []) <= labels and set(grow.get("need_lumen") or []) <= labels
              and all(isinstance(grow.get(k, 1.0), (int, float)) for k in known - lists))
        if not ok:
            raise ModelError(f"{path}: postprocessing grow_by_hu must be "
                             '{"reference": L} with optional groups, need_lumen (labels of the card), '
                             "reach_mm, disc_scale, min_contrast_hu, bright_sd, bright_hu (numbers); "
                             f"got {grow!r}; fix the card")
    branches = card.get("postprocessing", {}).get("branches")
    if branches is not None:
        ok = (isinstance(branches, dict)
              and set(branches) <= {"model", "band_mm", "trim_to_lumen", "wall_mm", "keep_first"}
              and isinstance(branches.get("trim_to_lumen", False), bool)
              and isinstance(branches.get("keep_first", []), list)
              and all(str(v) in card.get("labels", {}) and not isinstance(v, bool)
                      and isinstance(v, int) for v in branches.get("keep_first", []))
              and isinstance(branches.get("model"), str)
              and all(isinstance(branches.get(k, 1.0), (int, float)) and
                      not isinstance(branches.get(k, 1.0), bool) and branches.get(k, 1.0) > 0
                      for k in ("band_mm", "wall_mm")))
        if not ok:
            raise ModelError(f"{path}: postprocessing branches must be "
                             '{"model": NAME, "band_mm": MM, "trim_to_lumen": BOOL, "wall_mm": MM, '
                             '"keep_first": [LABEL, ...]} (a model name or folder, positive numbers, '
                             "true/false, labels of the card; all but model optional); "
                             f"got {branches!r}; fix the card")
    return card


def provenance(info):
    """What a result made by the model ``info`` records: name, version and weight checksum,
    and the same of its branch network (with the band) where the card names one."""
    out = {"model": info.name, "version": info.version, "sha256": info.card.get("sha256")}
    spec = (info.card or {}).get("postprocessing", {}).get("branches")
    if spec:
        b = find_model(spec["model"])
        out["branches"] = {"model": b.name, "version": b.version, "sha256": b.card.get("sha256"),
                           "band_mm": float(spec.get("band_mm", 35.0)),
                           "trim_to_lumen": bool(spec.get("trim_to_lumen", False)),
                           "keep_first": [int(v) for v in spec.get("keep_first", [])]}
        if spec.get("wall_mm"):
            out["branches"]["wall_mm"] = float(spec["wall_mm"])
    return out


def verify_weights(folder, card):
    """Path of the weights after checking their sha256 against the card."""
    w = Path(folder) / card["weights"]
    if not w.exists():
        raise ModelError(f"weights {w} are missing; reinstall the extension or the model folder")
    digest = sha256(w)
    if digest != card["sha256"]:
        raise ModelError(f"weights {w} do not match the model card (sha256 {digest[:12]}... vs "
                         f"{card['sha256'][:12]}...): the file is corrupt or was replaced; "
                         "reinstall the model, do not use it")
    return w


def nnunet_info(folder):
    """The :class:`ModelInfo` of an nnU-Net v2 results folder (``dataset.json``, ``plans.json``,
    ``fold_*/checkpoint_final.pth``); raises :class:`ModelError`."""
    folder = Path(folder)
    try:
        ds = json.loads((folder / "dataset.json").read_text())
        json.loads((folder / "plans.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder} is not an nnU-Net results folder: {exc}") from exc
    folds = sorted(p.name for p in folder.glob("fold_*") if (p / "checkpoint_final.pth").exists())
    if not folds:
        raise ModelError(f"{folder} has no fold_*/checkpoint_final.pth")
    labels = {str(v): k for k, v in ds.get("labels", {}).items() if int(v) != 0}
    name = ds.get("name") or folder.name
    card = {"name": name, "version": "nnU-Net v2", "labels": labels, "folds": folds,
            "license": ds.get("licence", ds.get("license", "see dataset.json")),
            "intended_use": "research"}
    return ModelInfo(name, "nnU-Net v2", labels, folder, "nnunet", card)


def register(folder):
    """Add a user model folder (or a folder of model folders) to the registry."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise ModelError(f"{folder} is not a folder")
    if folder not in _USER_FOLDERS:
        _USER_FOLDERS.append(folder)
    return folder


def _candidates():
    bundled = resources_dir() / "Models"
    roots = [(bundled, "bundled")]
    env = os.environ.get("VASCULAR_CALCIUM_MODELS", "")
    roots += [(Path(p), "user") for p in env.split(os.pathsep) if p]
    roots += [(p, "user") for p in _USER_FOLDERS]
    for root, kind in roots:
        if not root.is_dir():
            continue
        if (root / "model.json").exists() or (root / "dataset.json").exists():
            yield root, kind
        else:
            for sub in sorted(p for p in root.iterdir() if p.is_dir()):
                yield sub, kind


def list_models():
    """All usable models: a list of :class:`ModelInfo` (bundled first); broken folders skipped."""
    out, seen = [], set()
    for folder, kind in _candidates():
        try:
            if (folder / "model.json").exists():
                card = read_card(folder)
                info = ModelInfo(card["name"], str(card["version"]), dict(card["labels"]),
                                 folder, kind, card)
            elif (folder / "dataset.json").exists():
                info = nnunet_info(folder)
            else:
                continue
        except (ModelError, OSError, ValueError):
            continue
        if info.name not in seen:
            seen.add(info.name)
            out.append(info)
    return out


def model_names(label=None):
    """Names of the models a user chooses among (optionally only those that output
    ``label``, e.g. "aorta"): a second-stage network (card ``second_stage_of``: run by the
    model it serves, :mod:`.branches`) is not one of them."""
    return [m.name for m in list_models() if not (m.card or {}).get("second_stage_of")
            and (label is None or label in m.labels.values())]


def bundled_model(name):
    """The bundled model ``name`` as a :class:`ModelInfo`, or None when it is not installed."""
    return next((m for m in list_models() if m.kind == "bundled" and m.name == name), None)


def find_model(model):
    """A :class:`ModelInfo` from a registered name or a folder path.

    A bare name (no path separator) is looked up in the registry first, so a folder of the
    same name in the working directory (e.g. ``training/artery-groups/``, a training work
    folder) does not shadow the model; write ``./name`` for such a folder.
    """
    if isinstance(model, ModelInfo):
        return model
    bare = not any(sep in str(model) for sep in {"/", os.sep})
    if bare:
        found = next((m for m in list_models() if m.name == str(model)), None)
        if found is not None:
            return found
    p = Path(str(model))
    if p.is_dir():
        if (p / "dataset.json").exists() and not (p / "model.json").exists():
            return nnunet_info(p)
        card = read_card(p)
        return ModelInfo(card["name"], str(card["version"]), dict(card["labels"]), p, "user", card)
    for info in list_models():
        if info.name == model:
            return info
    names = [m.name for m in list_models()]
    raise ModelError(f"no model named {model!r}; available: {names or 'none'} (add a folder "
                     "with register(path) or VASCULAR_CALCIUM_MODELS)")


def save_model(folder, state_dict, card):
    """Write weights (safetensors) and model.json with their sha256; returns the folder."""
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    card = dict(card)
    card.setdefault("weights", "weights.safetensors")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(folder / card["weights"]))
    # safetensors writes the file private (0600); give it the mode of any new file (umask),
    # so a model shared in a lab folder is readable like its model.json
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder / card["weights"], 0o666 & ~umask)
    card["sha256"] = sha256(folder / card["weights"])
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ModelError(f"model card lacks {missing}")
    (folder / "model.json").write_text(json.dumps(card, indent=2))
    return folder
