"""Headless processing of one case or a whole cohort, safely.

- Inputs are only read.  Each case is written to a temporary folder inside OUTPUT
  and renamed to ``OUTPUT/<case>/`` when complete, so an interrupted run never
  leaves a half-written case that looks finished; finished cases are skipped on
  the next run (resumable).
- One failing case never stops the cohort: its error goes to
  ``OUTPUT/<case>.error.json`` and ``OUTPUT/errors.csv``; the exit code counts failures.
- ``shard=(i, n)`` processes every n-th case starting at i (array jobs on a
  cluster); ``workers`` runs cases in parallel processes; ``scheduler`` sends them to a
  Dask cluster (:mod:`.distributed`).  :func:`process_case` is a plain function of
  picklable arguments, so any executor can run it.
- A case is claimed by one process at a time (:mod:`.claims`), so runs sharing an output
  folder never compute a case twice or corrupt it, and what a killed process left is
  cleaned by the next one to claim the case.
"""

import json
import os
import shutil
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .. import __version__
from ..imagecheck import on_grid
from ..qc import checks as qc
from ..qc.states import sides_not_measured
from ..scoring.thresholds import threshold_record
from .claims import claim, sweep, tmp_folder, write_atomic
from .reuse import finished, fingerprint
from .review import ReviewPage

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
#: ``progress(fraction, stage)`` of the case being processed in this process (the command
#: line's ``--progress`` prints it for the Slicer module that started it); None: silent
PROGRESS = {"hook": None}


def _report(fraction, stage):
    hook = PROGRESS["hook"]
    if hook is not None:
        hook(min(max(float(fraction), 0.0), 1.0), stage)


@dataclass
class Case:
    case_id: str
    ct: str
    groups: str = None
    calcium: str = None


@dataclass
class Options:
    # "auto": the bundled artery-groups network when installed; None: none (a groups file
    # must be given per case)
    groups_model: str = "auto"
    calcium_model: str = None
    calcium_method: str = "lumen_relative"
    stump_length_mm: float = 25.0
    aorta_margin_mm: float = 10.0
    device: str = "cpu"
    threads: int = None
    scene: bool = True
    # id -> structure name (or a JSON file of it) for a TotalSegmentator multi-label groups
    # file that carries no label table in its header
    groups_classes: object = None
    extra: dict = field(default_factory=dict)


def _stem(p):
    name = Path(p).name
    for s in IMAGE_SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return Path(p).stem


def _is_dicom_dir(p):
    return bool(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(p)))


def discover(input_path):
    """Cases of INPUT: an image file, a DICOM series folder, a folder of files/series, or a CSV."""
    p = Path(input_path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    if p.is_file() and p.suffix.lower() == ".csv":
        df = pd.read_csv(p)
        if "ct" not in df.columns:
            raise ValueError(f"{p}: a case list needs a 'ct' column (and optionally case_id, "
                             "groups, calcium)")
        base = p.resolve().parent
        cases = []
        for i, r in df.iterrows():
            def path(col):
                v = r.get(col)
                return str(base / v) if isinstance(v, str) and v and not Path(v).is_absolute() \
                    else (v if isinstance(v, str) and v else None)
            cid = str(r["case_id"]) if "case_id" in df.columns else _stem(r["ct"])
            cases.append(Case(cid, path("ct"), path("groups"), path("calcium")))
        return cases
    if p.is_file():
        return [Case(_stem(p), str(p))]
    if _is_dicom_dir(p):
        return [Case(p.name, str(p))]
    cases = []
    for child in sorted(p.iterdir()):
        if child.is_file() and child.name.lower().endswith(IMAGE_SUFFIXES):
            cases.append(Case(_stem(child), str(child)))
        elif child.is_dir() and _is_dicom_dir(child):
            cases.append(Case(child.name, str(child)))
    if not cases:
        raise ValueError(f"{p} holds no CT files ({', '.join(IMAGE_SUFFIXES)}) or DICOM series")
    return cases


def read_ct(path):
    """A CT from a file or a DICOM series folder; clear errors for empty or truncated series."""
    p = Path(path)
    if p.is_dir():
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(p))
        if not ids:
            raise qc.InputError(f"{p} holds no DICOM series")
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(p), ids[0])
        if len(files) < 2:
            raise qc.InputError(f"the DICOM series in {p} has {len(files)} slice(s): incomplete")
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        img = reader.Execute()
        z = []
        for f in files:
            r = sitk.ImageFileReader()
            r.SetFileName(f)
            r.ReadImageInformation()
            z.append(np.array(r.GetOrigin()))
        gaps = np.linalg.norm(np.diff(np.array(z), axis=0), axis=1)
        if len(gaps) and gaps.max() > 1.5 * np.median(gaps) + 1e-3:
            raise qc.InputError(f"the DICOM series in {p} has missing slices (gap "
                                f"{gaps.max():.2f} mm vs {np.median(gaps):.2f} mm): re-export it")
        return img
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    _check_header_spacing(p)
    return sitk.ReadImage(str(p))


def _check_header_spacing(p):
    """Refuse files whose header has no or zero voxel spacing (ITK would assume 1 mm or fail)."""
    r = sitk.ImageFileReader()
    r.SetFileName(str(p))
    try:
        r.ReadImageInformation()
    except RuntimeError as exc:
        msg = str(exc)
        if "spacing" in msg.lower():
            raise qc.InputError(f"{p.name}: invalid (zero or unreadable) voxel spacing in the file "
                                "header; convert the scan again from DICOM or fix the spacing") from exc
        raise qc.InputError(f"{p.name} cannot be read as an image: "
                            f"{msg.strip().splitlines()[-1][:200]}") from exc
    keys = set(r.GetMetaDataKeys())
    name = p.name.lower()
    if name.endswith(".nrrd") and not ({"NRRD_space"} & keys or any("spacing" in k.lower() for k in keys)):
        raise qc.InputError(f"{p.name}: the NRRD header gives no voxel spacing or space; "
                            "convert the scan again from DICOM or add the spacing")
    if name.endswith((".nii", ".nii.gz")):
        pix = [float(r.GetMetaData(f"pixdim[{i}]")) for i in (1, 2, 3) if f"pixdim[{i}]" in keys]
        if len(pix) == 3 and min(pix) <= 0:
            raise qc.InputError(f"{p.name}: zero voxel spacing in the NIfTI header (pixdim "
                                f"{pix}); convert the scan again from DICOM or fix the header")


def _artery_groups(case, ct, o):
    if case.groups:
        from ..segmentation.totalsegmentator import load_groups

        ts = load_groups(case.groups, ct, o.groups_classes)
        if ts is not None:
            return ts.image, ts.provenance()
        return sitk.Cast(on_grid(read_ct(case.groups), ct), sitk.sitkUInt8), \
            {"source": case.groups}
    model = o.groups_model
    if model == "auto":
        from ..segmentation.models import bundled_model

        model = bundled_model("artery-groups")
    if model:
        from ..segmentation.engine import segment
        from ..segmentation.models import find_model, provenance

        info = find_model(model)
        lab = segment(ct, info, device=o.device, threads=o.threads,
                      progress=lambda f, s: _report(0.05 + 0.55 * f, f"artery groups: {s}"))
        return lab, provenance(info)
    raise qc.InputError("no artery source: give --groups-model NAME or a 'groups' column/"
                        "--groups file" + (" (the bundled artery-groups network is not installed)"
                                           if o.groups_model == "auto" else ""))


def _calcium(case, ct, groups, o):
    """(calcification, provenance): the case's own file as it is, else the network's or the
    threshold's without metal (:func:`..scoring.thresholds.without_metal`)."""
    from ..scoring import thresholds

    if case.calcium:
        return _given_calcium(case, ct)
    img, src = _found_calcium(ct, groups, o)
    img, metal = thresholds.without_metal(ct, img)
    return img, dict(src, **metal)


def _given_calcium(case, ct):
    return sitk.Cast(on_grid(read_ct(case.calcium), ct) > 0, sitk.sitkUInt8), \
        {"source": case.calcium}


def _found_calcium(ct, groups, o):
    from ..scoring import thresholds

    if o.calcium_model:
        from ..segmentation.engine import segment
        from ..segmentation.models import find_model

        info = find_model(o.calcium_model)
        lab = segment(ct, info, device=o.device, threads=o.threads, roi=groups > 0,  # cascade
                      progress=lambda f, s: _report(0.6 + 0.15 * f, f"calcification: {s}"))
        return sitk.Cast(lab == 2, sitk.sitkUInt8), {
            "model": info.name, "version": info.version, "sha256": info.card.get("sha256"),
            "artery_coverage": round(qc.calcium_network_coverage(lab, groups), 4)}
    fn = thresholds.METHODS.get(o.calcium_method)
    if fn is None or o.calcium_method == "idealised":
        raise ValueError(f"unknown calcification method {o.calcium_method!r}")
    img = fn(ct, groups > 0)
    return img, dict({"method": o.calcium_method}, **threshold_record(img))


def process_case(case, out_root, options):
    """Process one case into ``out_root/<case_id>/``; returns a summary dict (never raises).

    The case is claimed first (:mod:`.claims`): a case another live process is working on
    is left to it ("skipped (running elsewhere)").  A finished case is reused ("skipped
    (done)") only when its input files' content and every option that changes the result
    are those it was computed with (:func:`fingerprint`); otherwise it is computed again
    and replaces the old one.
    """
    case, o = Case(**case) if isinstance(case, dict) else case, \
        Options(**options) if isinstance(options, dict) else options
    out_root = Path(out_root)
    final = out_root / case.case_id
    try:
        expected = fingerprint(case, o)
    except Exception as exc:  # e.g. a model folder that cannot be read
        return {"case_id": case.case_id, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    done = finished(final, expected)
    if done is None:
        with claim(out_root, case.case_id) as mine:
            if not mine:
                return {"case_id": case.case_id, "status": "skipped (running elsewhere)"}
            done = finished(final, expected)  # finished meanwhile by another run?
            if done is None:
                return _process(case, o, out_root, final, expected)
    return {"case_id": case.case_id, "status": "skipped (done)",
            "scores_valid": done.get("scores_valid"), "states": done.get("states"),
            "sides": sides_not_measured(done.get("scores", [])),
            "qc": ";".join(f["code"] for f in done.get("qc", []))}


def _process(case, o, out_root, final, expected=None):
    """The work of :func:`process_case`, holding the claim on the case.

    Every step works on the CT in LPS voxel order (:func:`..imagecheck.to_lps`: axes
    permuted and flipped, no interpolation); the masks written are carried back onto the
    input's own grid, voxel for voxel, so the answer does not depend on the order the file
    stores its voxels in."""
    tmp = tmp_folder(out_root, case.case_id)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        record, flags = _analyse(case, o, tmp, t0)
        record["provenance"]["fingerprint"] = json.loads(json.dumps(expected, default=str))
        (tmp / "scores.json").write_text(json.dumps(record, indent=2, default=_json_value))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # atomic: the case appears complete or not at all
        err = out_root / f"{case.case_id}.error.json"
        if err.exists():
            err.unlink()
        return {"case_id": case.case_id, "status": "ok", "qc": ";".join(f["code"] for f in flags),
                "scores_valid": record["scores_valid"], "states": record["states"],
                "sides": sides_not_measured(record["scores"]), "seconds": record["seconds"]}
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            (out_root / f"{case.case_id}.error.json").write_text(json.dumps(
                {"case_id": case.case_id, "input": case.ct, "error": f"{type(exc).__name__}: {exc}",
                 "traceback": traceback.format_exc()}, indent=2))
        except OSError:
            pass
        return {"case_id": case.case_id, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def _json_value(v):
    if isinstance(v, np.bool_):
        return bool(v)
    v = float(v)
    return v if np.isfinite(v) else None


def _analyse(case, o, tmp, t0):
    """Compute one case into ``tmp``; returns (record, flags)."""
    from ArteryShorteningLib import shorten_arteries

    from ..imagecheck import onto, to_lps
    from ..qc import states as gs
    from ..qc.plausibility import review_line
    from ..scoring.scores import attach_to_shortened, score
    from .figures import case_figure

    _report(0.01, "reading the CT")
    ct_in = read_ct(case.ct)
    flags = qc.check_ct(ct_in)
    ct_in = qc.clean_ct(ct_in)
    ct = to_lps(ct_in)
    groups, groups_src = _artery_groups(case, ct, o)
    calcium, calcium_src = _calcium(case, ct, groups, o)
    missing = groups_src.get("missing_groups", [])
    _report(0.78, "shortening the arteries")
    short = shorten_arteries(groups, stump_length_mm=o.stump_length_mm,
                             aorta_margin_mm=o.aorta_margin_mm,
                             cut_aorta=qc.aorta_cut_defined(missing))
    if "model" in groups_src and "model" in calcium_src:  # 2 mm group edge cuts the wall
        short.labelmap, groups, calcium_src["wall_calcium_attached_mm3"] = \
            attach_to_shortened(short.labelmap, groups, calcium)
    _report(0.85, "scoring and quality checks")
    result = score(ct, short.labelmap, calcium, groups_full=groups)
    flags, states, reasons, table, plausible = gs.assess(
        ct, groups, calcium, calcium_src, result.table, short.branches, o.stump_length_mm,
        missing, groups_src.get("source"), flags, user_masks=bool(case.groups and case.calcium))
    if any(f["code"] == "thick_slices" for f in flags):
        result.warnings.append("scores flagged: slices thicker than 5 mm")
    prov = {"tool": "vascular-calcium", "version": __version__, "case_id": case.case_id,
            "input": case.ct, "arteries": groups_src, "calcification": calcium_src,
            "shortening": short.parameters, "scoring": result.parameters,
            "orientation": {"input_direction": [round(v, 6) for v in ct_in.GetDirection()],
                            "processed_in": "LPS voxel order; masks written on the input grid"},
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _report(0.9, "writing the outputs")
    out_groups, out_short, out_calcium = (onto(img, ct_in) for img in
                                          (groups, short.labelmap, calcium))
    sitk.WriteImage(out_groups, str(tmp / "arteries_full.nii.gz"))
    sitk.WriteImage(out_short, str(tmp / "arteries.nii.gz"))
    sitk.WriteImage(out_calcium, str(tmp / "calcifications.nii.gz"))
    short.branches.to_csv(tmp / "shortening_report.csv", index=False)
    valid = gs.all_valid(table)
    csv = table.copy()
    csv.insert(0, "case_id", case.case_id)
    csv.insert(1, "qc_flags", ";".join(f["code"] for f in flags))
    csv.to_csv(tmp / "scores.csv", index=False)
    if o.scene:
        try:
            from .export_scene import write_case_scene

            write_case_scene(tmp, case.case_id, ct_in, out_groups, out_short, out_calcium,
                             table, prov)
        except ImportError:
            flags.append(qc.flag("no_scene", "slicer-core is not installed: no .seg.nrrd/.mrb "
                                 "written (pip install slicer-core)"))
    shown = table[table.region.isin(["aorta", "iliac", "mesenteric", "renal", "combined"])]
    pic = shown[["region", "state", "burden", "calcium_volume_mm3", "cluster_count",
                 "agatston"]].round(4)
    pic.columns = ["region", "state", "burden", "calcium mm³", "clusters", "Agatston"]
    title = case.case_id + ("  QC: " + ", ".join(f["code"] for f in flags) if flags else "")
    alerts = ([review_line(plausible)] if not plausible.ok else []) + \
        [f"{g}: {st.upper()} ({why})" for g, (st, why) in states.items() if st in gs.NAN_STATES] + \
        ([f"NOT VALID: {', '.join(reasons)}"] if reasons else [])
    case_figure(tmp / "report.png", ct, groups, short.labelmap, calcium, title=title, table=pic,
                alert="\n".join(alerts) or None)
    record = dict(result.to_dict(), provenance=prov, qc=flags, scores_valid=valid,
                  states={g: {"state": st, "reason": why} for g, (st, why) in states.items()},
                  invalidated_by=reasons, plausibility=plausible.as_dict(),
                  warnings=short.warnings + result.warnings,
                  seconds=round(time.perf_counter() - t0, 2))
    record["scores"] = json.loads(table.to_json(orient="records"))
    _report(1.0, "done")
    return record, flags


def run_cohort(cases, out_root, options, workers=1, shard=None, log=print, scheduler=None):
    """Process cases (optionally one shard), write cohort_scores.csv and errors.csv.

    ``workers`` > 1 runs cases in that many local processes; ``scheduler`` (a Dask
    scheduler address ``tcp://...`` or ``local:N``) sends them to a Dask cluster instead
    (:mod:`.distributed`).  Returns the list of per-case summaries; failures have
    ``status == "failed"``.
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    ids = [c.case_id for c in cases]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"duplicate case ids {dup}: give each case a unique case_id")
    if shard:
        i, n = shard
        cases = cases[i::n]
    opts = asdict(options) if not isinstance(options, dict) else options
    t0, done, summaries = time.perf_counter(), 0, []
    page = ReviewPage(out_root, cases, shard)

    def report(s):
        nonlocal done
        done += 1
        summaries.append(s)
        page.update(s)
        el = time.perf_counter() - t0
        eta = el / done * (len(cases) - done)
        filled = int(20 * done / max(len(cases), 1))
        gone = [f"{g} {v['state']}" for g, v in (s.get("states") or {}).items()
                if v["state"] != "measured"] + [f"{k} {v}" for k, v in (s.get("sides") or {}).items()]
        status = s["status"] + (", NOT VALID (check the QC flags)" if s.get("scores_valid") is False
                                else "") + \
            (f" ({', '.join(gone)})" if gone else "")
        log(f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{len(cases)} {s['case_id']}: {status}"
            f"{' (' + s.get('error', '') + ')' if s['status'] == 'failed' else ''}"
            f"  elapsed {el:.0f} s, ETA {eta:.0f} s")

    if scheduler:
        from .distributed import run_on_dask

        for s in run_on_dask(process_case, [asdict(c) for c in cases], str(out_root), opts,
                             scheduler, log):
            report(s)
    elif workers > 1 and len(cases) > 1:
        with ProcessPoolExecutor(workers) as ex:
            futs = [ex.submit(process_case, asdict(c), str(out_root), opts) for c in cases]
            for f in as_completed(futs):
                report(f.result())
    else:
        for c in cases:
            report(process_case(c, out_root, opts))
    sweep(out_root, [c.case_id for c in cases])  # what killed workers left, if unclaimed
    write_tables(out_root, cases, summaries, shard)
    page.write()
    return summaries


def write_tables(out_root, cases, summaries, shard=None):
    """``cohort_scores.csv`` (every finished case of ``cases``, once) and ``errors.csv``,
    each written whole or not at all (two runs may share the folder)."""
    frames = [pd.read_csv(out_root / c.case_id / "scores.csv") for c in cases
              if (out_root / c.case_id / "scores.csv").exists()]
    suffix = "" if not shard else f".shard{shard[0]}of{shard[1]}"
    if frames:
        table = pd.concat(frames, ignore_index=True)
        write_atomic(out_root / f"cohort_scores{suffix}.csv",
                     lambda p: table.to_csv(p, index=False))
    errs = pd.DataFrame([s for s in summaries if s["status"] == "failed"],
                        columns=["case_id", "status", "error"])
    write_atomic(out_root / f"errors{suffix}.csv", lambda p: errs.to_csv(p, index=False))
