"""The headless command line: one case or a folder of thousands, resumable.

Takes CT files or DICOM folders (optionally with artery groups or calcification per
case) and an output folder; gives per case the segmentations (NIfTI, ``.seg.nrrd``),
``scores.csv``/``scores.json`` with provenance and QC flags, ``scene.mrb`` and
``report.png``, and per cohort ``scores.csv`` and ``errors.csv``.  :mod:`.cli` is the
``vascular-calcium`` command, :mod:`.runner` reads the inputs and processes the cases
(parallel, sharded, atomic per case), :mod:`.figures` draws the report pictures, and
:mod:`.export_scene` / :mod:`.export_nnunet` write the Slicer scene and nnU-Net datasets.
"""
