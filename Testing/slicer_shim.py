"""Test shim: the headless MRML harness of CalciumScoringLib.scene.headless.

It supplies only what the slicer-core wheel lacks (``slicer.app``, ``slicer.mrmlScene``,
``slicer.modules``), from real logic objects; see that module's docstring.
"""

from CalciumScoringLib.scene.headless import Harness  # noqa: F401
