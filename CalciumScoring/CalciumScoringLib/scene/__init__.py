"""The Slicer scene: MRML adapters and the pipeline of the CalciumScoring module.

Takes scene nodes (a CT volume, artery or calcification segmentations, tables); gives new
nodes (shortened arteries, calcifications with one segment per group, the score table, a
burden chart) with provenance, and run records saved with the scene.  :mod:`.terms`
holds the segment names, colours and terminology codes, :mod:`.nodes` converts nodes
to and from images and tables, :mod:`.runs` records runs, :mod:`.headless` makes a real
MRML scene outside Slicer (slicer-core), and :mod:`.pipeline` runs a case on the scene
(prepare, compute in the background, publish).  Only MRML/logic classes of ``slicer``
are imported here; the widget lives in ``CalciumScoring.py``.
"""
