"""Command line: ``vascular-calcium demo OUTPUT_DIR`` and ``vascular-calcium run CT OUTPUT_DIR``.

``demo`` generates a phantom CTA and runs everything of the pipeline that exists
on it; ``run`` takes a CT and an artery-group label map (until the bundled
networks land) and writes the shortened arteries, the branch report and a picture.
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


def _shorten_and_report(ct, groups, out, args, title, truth=None):
    from ArteryShorteningLib import shorten_arteries

    from .figures import case_figure

    t = time.perf_counter()
    res = shorten_arteries(groups, stump_length_mm=args.stump_length, aorta_margin_mm=args.aorta_margin)
    t_short = time.perf_counter() - t
    sitk.WriteImage(res.labelmap, str(out / "artery_groups_shortened.nii.gz"))
    res.branches.to_csv(out / "shortening_report.csv", index=False)
    vv = float(np.prod(groups.GetSpacing()))
    full, short = sitk.GetArrayViewFromImage(groups), sitk.GetArrayViewFromImage(res.labelmap)
    rows = []
    for v, name in ((1, "aorta"), (2, "iliac"), (3, "mesenteric"), (4, "renal")):
        rows.append({"group": name, "artery_volume_mm3": round(float((full == v).sum() * vv), 1),
                     "shortened_volume_mm3": round(float((short == v).sum() * vv), 1)})
    import pandas as pd

    volumes = pd.DataFrame(rows)
    if truth is not None:
        volumes["true_calcium_mm3"] = [round(truth.get(r["group"], 0.0), 1) for r in rows]
    volumes.to_csv(out / "artery_volumes.csv", index=False)
    case_figure(out / "report.png", ct, groups, res.labelmap, title=title, table=volumes)
    prov = {"tool": "vascular-calcium", "version": __version__, "shortening": res.parameters,
            "warnings": res.warnings, "seconds_shortening": round(t_short, 2)}
    (out / "provenance.json").write_text(json.dumps(prov, indent=2))
    print(volumes.to_string(index=False))
    print(f"\nshortening: {len(res.branches)} side-artery components in {t_short:.1f} s; "
          f"aorta cut at z = {res.aorta_cut_z_mm} mm")
    for w in res.warnings:
        print(f"warning: {w}")
    print(f"outputs in {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


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
    print("note: artery groups come from the phantom's reference labels (no bundled network yet)")
    return _shorten_and_report(ph.ct, ph.groups, out, args, f"phantom seed {args.seed}",
                               truth=ph.meta["calcium_volume_mm3"])


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
    return _shorten_and_report(ct, sitk.Cast(groups, sitk.sitkUInt8), out, args,
                               Path(args.input).name)


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
        p.add_argument("output", help="output folder (created)")
        if name == "demo":
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 1.0])
        p.add_argument("--stump-length", type=float, default=25.0, help="mm (default 25)")
        p.add_argument("--aorta-margin", type=float, default=10.0, help="mm (default 10)")
        p.set_defaults(func=fn)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
