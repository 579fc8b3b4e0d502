"""CalciumScoringLib: the VascularCalcium pipeline as a Python package, one sub-package a stage.

A CT angiogram flows down the stages; each imports only the stages above it:

- :mod:`.phantoms` -- synthetic CTA phantoms with exact truth (tests, demos, training);
- :mod:`.segmentation` -- CT -> artery-group and artery/calcium label maps (networks,
  model registry and cards, nnU-Net adapter, calcium refinement at the CT's resolution);
- :mod:`.scoring` -- CT + shortened groups + calcification -> scores (burden, clusters,
  Agatston, volume, mass) and the threshold baselines;
- :mod:`.qc` -- CT and masks -> input errors and quality-control flags;
- :mod:`.validation` -- scores and masks against references (agreement statistics,
  cohort validation and its report);
- :mod:`.scene` -- the MRML adapters and the scene pipeline of the Slicer module
  (the only sub-package that imports ``slicer``, and only its MRML/logic classes);
- :mod:`.cohort` -- the headless command line: folders of cases, resumable runs, exports
  and report figures.

The shortening itself lives in the sibling package ``ArteryShorteningLib``.  Shared
pieces below every stage: :mod:`.imagecheck` (grid and mask checks), :mod:`.errors`
(``Cancelled``), :mod:`.resources` (the module's Resources folder) and
:mod:`.dependencies` (optional packages inside Slicer).
"""

__version__ = "0.1.0"
