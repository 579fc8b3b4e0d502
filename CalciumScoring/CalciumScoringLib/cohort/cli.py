"""Command line of VascularCalcium.

  vascular-calcium demo OUTPUT_DIR          the pipeline on a generated phantom CTA
  vascular-calcium run INPUT OUTPUT_DIR     one case or a cohort (see cohort.py)
  vascular-calcium validate COHORT.csv OUT  the published evaluation against a reference
  vascular-calcium compare A.csv B.csv OUT  agreement of two score tables

Inputs are only read; outputs go to OUTPUT_DIR, one folder per case.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import SimpleITK as sitk

from .. import __version__


def _options(args):
    from .runner import Options

    gm = getattr(args, "groups_model", None)
    return Options(groups_model=None if gm in (None, "none") else gm,
                   calcium_model=getattr(args, "calcium_model", None),
                   calcium_method=args.calcium_method, stump_length_mm=args.stump_length,
                   aorta_margin_mm=args.aorta_margin, device=getattr(args, "device", "cpu"),
                   threads=getattr(args, "threads", None), scene=not getattr(args, "no_scene", False),
                   groups_classes=getattr(args, "groups_classes", None))


def cmd_demo(args):
    import pandas as pd

    from ..phantoms.generator import make_phantom
    from ..scoring.scores import score
    from .runner import Case, process_case

    out = Path(args.output)
    inputs = out / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    ph = make_phantom(args.seed, spacing=tuple(args.spacing))
    print(f"phantom CTA seed {args.seed}: {ph.ct.GetSize()} voxels at {tuple(args.spacing)} mm, "
          f"{len(ph.meta['plaques'])} plaques, made in {time.perf_counter() - t:.1f} s")
    sitk.WriteImage(ph.ct, str(inputs / "ct.nrrd"), True)
    sitk.WriteImage(ph.groups, str(inputs / "artery_groups_reference.nii.gz"))
    sitk.WriteImage(ph.arteries, str(inputs / "arteries_calcium_reference.nii.gz"))
    meta = {k: v for k, v in ph.meta.items() if k != "branches"}
    (inputs / "phantom.json").write_text(json.dumps(meta, indent=2, default=str))
    from ..segmentation.models import bundled_model

    options = _options(args)
    groups_net, calcium_net = bundled_model("artery-groups"), bundled_model("arteries-calcium")
    if args.reference_groups or groups_net is None:
        print("note: artery groups come from the phantom's reference labels"
              + ("" if args.reference_groups else " (the bundled artery-groups network is not "
                 "installed)"))
        case = Case(f"phantom{args.seed}", str(inputs / "ct.nrrd"),
                    groups=str(inputs / "artery_groups_reference.nii.gz"))
    else:
        print(f"artery groups: bundled network {groups_net.name} {groups_net.version}")
        options.groups_model = groups_net.name
        case = Case(f"phantom{args.seed}", str(inputs / "ct.nrrd"))
    if args.calcium_network and calcium_net is not None:
        options.calcium_model = calcium_net.name
        print(f"calcification: bundled network {calcium_net.name} {calcium_net.version}")
    else:
        print(f"calcification: the '{args.calcium_method}' threshold method")
    res = process_case(case, out, options)
    if res["status"] != "ok":
        print(f"error: {res.get('error')}")
        return 1
    folder = out / case.case_id
    table = pd.read_csv(folder / "scores.csv")
    short = sitk.ReadImage(str(folder / "arteries.nii.gz"))
    truth = score(ph.ct, short, ph.arteries == 2, groups_full=ph.groups).table
    table["true_calcium_mm3"] = truth.calcium_volume_mm3.values
    cols = ["region", "artery_volume_mm3", "calcium_volume_mm3", "true_calcium_mm3", "burden",
            "cluster_count", "agatston"]
    with pd.option_context("display.width", 200):
        print(table[table.region.isin(["aorta", "iliac", "mesenteric", "renal", "combined"])][cols]
              .round(4).to_string(index=False))
    if case.groups is None:
        full = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "arteries_full.nii.gz")))
        ref = sitk.GetArrayFromImage(ph.groups_as_shown())
        from ..validation.evaluate import overlap

        dice = {g: overlap(full == v, ref == v)["dice"]
                for v, g in ((1, "aorta"), (2, "iliac"), (3, "mesenteric"), (4, "renal"))}
        print("network vs phantom truth as the CT shows it (side branches: lumen and calcified "
              "wall), Dice: " + ", ".join(f"{g} {d:.3f}" for g, d in dice.items()))
    record = json.loads((folder / "scores.json").read_text())
    for f in record["qc"]:
        print(f"QC {f['code']}: {f['message']}")
    for w in record["warnings"]:
        print(f"warning: {w}")
    print(f"processed in {record['seconds']} s; outputs in {folder}: "
          + ", ".join(sorted(p.name for p in folder.iterdir())))
    return 0


def cmd_run(args):
    from .runner import discover, run_cohort

    try:
        cases = discover(args.input)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}")
    if args.groups or args.calcium:
        if len(cases) != 1:
            raise SystemExit("error: --groups/--calcium go with a single input case; for a "
                             "cohort give 'groups'/'calcium' columns in a CSV case list")
        cases[0].groups, cases[0].calcium = args.groups, args.calcium
    shard = None
    if args.shard:
        try:
            i, n = (int(v) for v in args.shard.split("/"))
            assert 0 <= i < n
        except (ValueError, AssertionError):
            raise SystemExit("error: --shard takes i/N with 0 <= i < N, e.g. --shard 0/4")
        shard = (i, n)
    _check_writable(args.output)
    if getattr(args, "progress", False):  # for the Slicer module that started this process
        from . import runner

        runner.PROGRESS["hook"] = lambda f, s: print(f"PROGRESS {f:.3f} {s}", flush=True)
    print(f"{len(cases)} case(s) found in {args.input}" +
          (f"; shard {shard[0]}/{shard[1]}" if shard else ""), flush=True)
    try:
        summaries = run_cohort(cases, args.output, _options(args), workers=args.workers,
                               shard=shard, log=lambda m: print(m, flush=True),
                               scheduler=args.scheduler)
    except (RuntimeError, ValueError, OSError) as exc:  # no dask, a dead scheduler, ids
        raise SystemExit(f"error: {exc}")
    failed = [s for s in summaries if s["status"] == "failed"]
    ok = [s for s in summaries if s["status"] != "failed"]
    print(f"done: {len(ok)} ok/skipped, {len(failed)} failed; outputs in {args.output}")
    if args.export_nnunet:
        from .export_nnunet import export_nnunet

        for ds in export_nnunet(args.output, args.export_nnunet, args.dataset_id,
                                log=lambda m: print(m, flush=True)):
            print(f"nnU-Net dataset: {ds}")
    return 1 if failed else 0


def _check_writable(folder):
    """A one-line error (SystemExit) when ``folder`` cannot be created or written to."""
    import tempfile

    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise SystemExit(f"error: cannot write to the output folder {out} ({exc.strerror or exc}): "
                         "choose a folder you can write to, or fix its permissions")


def cmd_validate(args):
    from ..validation.evaluate import read_cohort, validate_cohort
    from ..validation.report import write_report

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

    from ..validation.evaluate import compare_tables

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
            p.add_argument("input", help="CT file (NIfTI, NRRD, MHA), DICOM series folder, folder "
                           "of those, or CSV case list (case_id, ct[, groups, calcium])")
            p.add_argument("--groups", help="artery groups of a single case: a label map (1 aorta, "
                           "2 iliac, 3 mesenteric, 4 renal), or a TotalSegmentator output "
                           "(its folder of masks, or its multi-label file)")
            p.add_argument("--groups-classes", help="JSON of label id -> structure name for a "
                           "TotalSegmentator multi-label file without a label table in its header")
            p.add_argument("--calcium", help="calcification mask of a single case")
            p.add_argument("--groups-model", default="auto",
                           help="artery-group model (registry name or folder; default 'auto': "
                           "the bundled artery-groups network when installed; 'none': only "
                           "--groups files / 'groups' columns)")
            p.add_argument("--calcium-model", help="artery/calcification model (label 2 = calcium)")
            p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
            p.add_argument("--threads", type=int, help="torch threads per worker")
            p.add_argument("--workers", type=int, default=1, help="cases processed in parallel")
            p.add_argument("--scheduler", help="run the cases on a Dask cluster: its scheduler "
                           "address (tcp://host:8786) or local:N for N local worker processes "
                           "(needs: pip install 'vascular-calcium[dask]')")
            p.add_argument("--shard", help="i/N: process every N-th case from the i-th (array jobs)")
            p.add_argument("--progress", action="store_true",
                           help="print 'PROGRESS <fraction> <stage>' lines as a case advances "
                           "(read by the Slicer module, which runs the pipeline this way)")
            p.add_argument("--export-nnunet", metavar="DIR",
                           help="also write the (reviewed) cases as nnU-Net v2 raw datasets")
            p.add_argument("--dataset-id", type=int, default=501,
                           help="nnU-Net dataset id of the first dataset (default 501)")
        p.add_argument("output", help="output folder (created)")
        if name == "demo":
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 1.0])
            p.add_argument("--reference-groups", action="store_true",
                           help="use the phantom's reference artery groups, not the network")
            p.add_argument("--calcium-network", action="store_true",
                           help="calcification from the bundled arteries-calcium network "
                           "(default: --calcium-method)")
        p.add_argument("--stump-length", type=float, default=25.0, help="mm (default 25)")
        p.add_argument("--aorta-margin", type=float, default=10.0, help="mm (default 10)")
        p.add_argument("--calcium-method", default="lumen_relative",
                       help="threshold method when no calcification mask/network: "
                            "lumen_relative (default: 130 HU above the lumen's median, pieces "
                            ">= 2 mm3), adaptive (lumen median + 4 robust SD), fixed (470 HU), "
                            "display_8bit, otsu")
        p.add_argument("--no-scene", action="store_true",
                       help="skip the .seg.nrrd and .mrb files (they need slicer-core)")
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
    """Run the command line; an input or environment error ends with one line saying what
    to do (set VASCULAR_CALCIUM_DEBUG=1 for the traceback)."""
    import os

    from ..qc.checks import InputError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InputError, OSError, ValueError) as exc:
        if os.environ.get("VASCULAR_CALCIUM_DEBUG"):
            raise
        what = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        raise SystemExit(f"error: {what}{where}")


if __name__ == "__main__":
    sys.exit(main())
