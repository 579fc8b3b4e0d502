"""Command line: ``vascular-calcium demo OUTPUT_DIR`` and ``vascular-calcium run CT OUTPUT_DIR``.

``demo`` generates a phantom CTA and runs everything of the pipeline that exists
on it; ``run`` takes a CT and an artery-group label map (until the bundled
networks land), finds calcification by a threshold method (or takes a mask) and
writes the shortened arteries, the calcification, the branch report, the scores
(CSV, JSON with provenance) and a picture.
Inputs are only read; outputs go to OUTPUT_DIR.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__


def _pipeline(ct, groups, calcium, out, args, title, reference_calcium=None):
    """Shorten, score, write files and the picture; returns 0."""
    import pandas as pd
    from ArteryShorteningLib import shorten_arteries

    from .figures import case_figure
    from .scoring import score

    t = time.perf_counter()
    res = shorten_arteries(groups, stump_length_mm=args.stump_length,
                           aorta_margin_mm=args.aorta_margin)
    t_short = time.perf_counter() - t
    t = time.perf_counter()
    scores = score(ct, res.labelmap, calcium, groups_full=groups)
    t_score = time.perf_counter() - t
    sitk.WriteImage(res.labelmap, str(out / "artery_groups_shortened.nii.gz"))
    sitk.WriteImage(calcium, str(out / "calcification.nii.gz"))
    res.branches.to_csv(out / "shortening_report.csv", index=False)
    scores.to_csv(out / "scores.csv")
    table = scores.table.copy()
    truth = None
    if reference_calcium is not None:  # the reference scored on the same shortened arteries
        truth = score(ct, res.labelmap, reference_calcium, groups_full=groups).table
        table["true_calcium_mm3"] = truth.calcium_volume_mm3.values
    shown = table[table.region.isin(["aorta", "iliac", "mesenteric", "renal", "combined"])]
    cols = ["region", "artery_volume_mm3", "calcium_volume_mm3", "burden", "cluster_count",
            "agatston"] + (["true_calcium_mm3"] if truth is not None else [])
    pic = shown[cols].copy()
    pic.columns = ["region", "artery mm³", "calcium mm³", "burden", "clusters", "Agatston"] + \
        (["true calcium mm³"] if truth is not None else [])
    case_figure(out / "report.png", ct, groups, res.labelmap, calcium, title=title,
                table=pic.round(3))
    prov = {"tool": "vascular-calcium", "version": __version__,
            "calcification": args.calcium_method, "shortening": res.parameters,
            "scoring": scores.parameters, "warnings": res.warnings + scores.warnings,
            "seconds": {"shortening": round(t_short, 2), "scoring": round(t_score, 2)}}
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    (out / "scores.json").write_text(json.dumps(dict(scores.to_dict(), provenance=prov),
                                                indent=2, default=float))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(pic.round(4).to_string(index=False))
    print(f"\nshortening {t_short:.1f} s, scoring {t_score:.2f} s")
    for w in res.warnings + scores.warnings:
        print(f"warning: {w}")
    print(f"outputs in {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


def _calcium(ct, groups, method):
    from . import thresholds

    fn = thresholds.METHODS.get(method)
    if fn is None or method == "idealised":
        raise SystemExit(f"error: unknown calcification method {method!r}; choose one of "
                         "fixed, display_8bit, adaptive, otsu")
    return fn(ct, groups > 0)


def cmd_demo(args):
    from .phantoms import make_phantom

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    ph = make_phantom(args.seed, spacing=tuple(args.spacing))
    print(f"phantom CTA seed {args.seed}: {ph.ct.GetSize()} voxels at {tuple(args.spacing)} mm, "
          f"{len(ph.meta['plaques'])} plaques, made in {time.perf_counter() - t:.1f} s")
    sitk.WriteImage(ph.ct, str(out / "ct.nrrd"), True)
    sitk.WriteImage(ph.groups, str(out / "artery_groups_reference.nii.gz"))
    sitk.WriteImage(ph.arteries, str(out / "arteries_calcium_reference.nii.gz"))
    meta = {k: v for k, v in ph.meta.items() if k != "branches"}
    (out / "phantom.json").write_text(json.dumps(meta, indent=2, default=str))
    print("note: artery groups come from the phantom's reference labels (no bundled network "
          f"yet); calcification from the '{args.calcium_method}' threshold method")
    calcium = _calcium(ph.ct, ph.groups, args.calcium_method)
    return _pipeline(ph.ct, ph.groups, calcium, out, args, f"phantom seed {args.seed}",
                     reference_calcium=ph.arteries == 2)


def _read(path, what):
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"error: {what} {p} does not exist")
    if p.is_dir():
        reader = sitk.ImageSeriesReader()
        files = reader.GetGDCMSeriesFileNames(str(p))
        if not files:
            raise SystemExit(f"error: {p} holds no DICOM series; pass a NIfTI/NRRD/MHA file or a "
                             "DICOM series folder")
        reader.SetFileNames(files)
        return reader.Execute()
    return sitk.ReadImage(str(p))


def cmd_run(args):
    ct = _read(args.input, "input CT")
    if not args.groups:
        raise SystemExit("error: no bundled segmentation network yet: pass the artery-group "
                         "label map with --groups FILE (1 aorta, 2 iliac, 3 mesenteric, 4 renal)")
    groups = _read(args.groups, "artery-group label map")
    if groups.GetSize() != ct.GetSize():
        groups = sitk.Resample(groups, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    groups = sitk.Cast(groups, sitk.sitkUInt8)
    if args.calcium:
        calcium = _read(args.calcium, "calcification mask")
        if calcium.GetSize() != ct.GetSize():
            calcium = sitk.Resample(calcium, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        calcium = sitk.Cast(calcium > 0, sitk.sitkUInt8)
    else:
        calcium = _calcium(ct, groups, args.calcium_method)
    return _pipeline(ct, groups, calcium, out, args, Path(args.input).name)


def cmd_validate(args):
    from .validation import read_cohort, validate_cohort
    from .validation_report import write_report

    cases = read_cohort(args.cohort)
    shortening = {"stump_length_mm": args.stump_length, "aorta_margin_mm": args.aorta_margin}

    def progress(f, cid):
        print(f"[{f * 100:5.1f}%] {cid}", flush=True)

    res = validate_cohort(cases, methods=tuple(args.methods), shortening=shortening,
                          progress=progress)
    summary = write_report(res, args.output, figures=not args.no_figures)
    brief = summary[(summary.region == "combined") & (summary.score == "burden")]
    cols = [c for c in ("method", "n", "r", "bias", "loa_low", "loa_high", "icc_agreement")
            if c in brief.columns]
    print(brief[cols].to_string(index=False))
    errors = res.errors[~res.errors.error.str.startswith("note")]
    for _, e in errors.iterrows():
        print(f"error: {e.case_id}: {e.error}")
    print(f"outputs in {args.output}")
    return 1 if len(errors) else 0


def cmd_compare(args):
    import pandas as pd

    from .validation import compare_tables

    summary, problems = compare_tables(pd.read_csv(args.test), pd.read_csv(args.reference))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "summary_agreement.csv", index=False)
    problems.to_csv(out / "errors.csv", index=False)
    print(summary[[c for c in ("region", "score", "n", "r", "bias", "icc_agreement")
                   if c in summary]].to_string(index=False))
    for _, p in problems.iterrows():
        print(f"warning: {p.case_id}: {p.error}")
    return 0


def build_parser():
    ap = argparse.ArgumentParser(prog="vascular-calcium", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (("demo", cmd_demo, "run the pipeline on a generated phantom CTA"),
                            ("run", cmd_run, "run the pipeline on a CT")):
        p = sub.add_parser(name, help=help_)
        if name == "run":
            p.add_argument("input", help="CT file (NIfTI, NRRD, MHA) or DICOM series folder")
            p.add_argument("--groups", help="artery-group label map (1-4) on the CT")
            p.add_argument("--calcium", help="calcification mask on the CT (else a threshold method)")
        p.add_argument("output", help="output folder (created)")
        if name == "demo":
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 1.0])
        p.add_argument("--stump-length", type=float, default=25.0, help="mm (default 25)")
        p.add_argument("--aorta-margin", type=float, default=10.0, help="mm (default 10)")
        p.add_argument("--calcium-method", default="adaptive",
                       help="threshold method when no calcification mask/network: adaptive "
                            "(default), fixed (470 HU), display_8bit, otsu")
        p.set_defaults(func=fn)
    p = sub.add_parser("validate", help="the published evaluation of a cohort against a "
                       "reference (CSV: case_id, ct, ref_groups, ref_calcium, auto_groups, auto_calcium)")
    p.add_argument("cohort")
    p.add_argument("output")
    p.add_argument("--methods", nargs="+", default=["automated", "idealised", "fixed", "adaptive"])
    p.add_argument("--stump-length", type=float, default=25.0)
    p.add_argument("--aorta-margin", type=float, default=10.0)
    p.add_argument("--no-figures", action="store_true")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("compare", help="agreement of two score tables (case_id, region, scores)")
    p.add_argument("test")
    p.add_argument("reference")
    p.add_argument("output")
    p.set_defaults(func=cmd_compare)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
