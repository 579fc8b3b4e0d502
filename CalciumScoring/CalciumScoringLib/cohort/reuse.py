"""When a finished case may be reused: its fingerprint.

A re-run into the same output folder reuses a finished case ("skipped (done)") only when
the case's :func:`fingerprint` is the one its ``scores.json`` records: the content of its
input files, every option that changes the result, the tool's version and the models'
checksums.  Another scan of the same name, or the same scan with another option, is
computed again and replaces the old case.
"""

import json
from dataclasses import asdict
from pathlib import Path

from .. import __version__

#: options that do not change a case's result (a rerun with other values reuses it)
NEUTRAL_OPTIONS = ("threads",)


def _hash_path(h, path):
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)


def fingerprint(case, options):
    """What a case's result depends on, as a dict: the sha256 of its input files' content
    (CT, and the groups and calcium files when given), every option that changes the
    result, the tool's version and the bundled models' checksums.  A finished case is
    reused only when its recorded fingerprint is this one."""
    import hashlib

    from ..segmentation.models import bundled_model, find_model

    o = asdict(options) if not isinstance(options, dict) else dict(options)
    inputs = {}
    for key in ("ct", "groups", "calcium"):
        path = getattr(case, key)
        if path:
            h = hashlib.sha256()
            try:
                _hash_path(h, path)
            except OSError:
                h.update(b"unreadable")
            inputs[key] = h.hexdigest()
    models = {}
    for name in (o.get("groups_model"), o.get("calcium_model")):
        info = (bundled_model("artery-groups") if name == "auto" else find_model(name)) \
            if name else None
        while info is not None:  # the model and the branch network its card names
            models[info.name] = f"{info.version} {info.card.get('sha256')}"
            branch = info.card.get("postprocessing", {}).get("branches") if info.card else None
            info = find_model(branch["model"]) if branch else None
    return {"inputs": inputs, "version": __version__, "models": models,
            "options": {k: v for k, v in sorted(o.items()) if k not in NEUTRAL_OPTIONS}}


def finished(final, expected):
    """The finished record of ``final`` when its fingerprint is ``expected``, else None."""
    try:
        record = json.loads((final / "scores.json").read_text())
    except (OSError, ValueError):
        return None
    got = record.get("provenance", {}).get("fingerprint")
    return record if got == json.loads(json.dumps(expected, default=str)) else None
