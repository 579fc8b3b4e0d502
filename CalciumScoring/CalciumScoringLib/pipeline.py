"""The CalciumScoring pipeline on scene nodes (MRML adapter layer).

Today: artery groups (an existing segmentation) -> shortening -> report table,
plus a synthetic phantom loader for demos and tests.  The network and scoring
stages plug in here as they land, so the Slicer module, the console and the CLI
keep calling one object.
"""

from dataclasses import dataclass, field

import pandas as pd

from . import mrml_nodes as mn
from . import segment_terms as st
from .phantoms import make_phantom


@dataclass
class PipelineResult:
    """Nodes created by one run and the report as a pandas DataFrame."""

    shortened: object
    table: object
    dataframe: pd.DataFrame
    warnings: list = field(default_factory=list)


class CalciumScoringPipeline:
    """Runs the stages on nodes of one scene; collaborators are injectable for tests."""

    def __init__(self, shortening_logic=None):
        if shortening_logic is None:
            from ArteryShorteningLib.mrml_logic import ArteryShorteningMRMLLogic

            shortening_logic = ArteryShorteningMRMLLogic()
        self.shortening = shortening_logic

    def load_phantom(self, scene, seed=0, spacing=(0.8, 0.8, 1.0), **options):
        """Add a phantom CTA volume and its artery-group segmentation to ``scene``."""
        ph = make_phantom(seed, spacing=spacing, **options)
        name = f"Phantom CTA {seed}"
        volume = mn.volume_node_from_image(scene, ph.ct, name)
        groups = mn.segmentation_node_from_labelmap(scene, ph.groups, st.group_segments(),
                                                    volume, f"{name} artery groups")
        prov = {"source": "CalciumScoringLib.phantoms.make_phantom", "seed": seed,
                "spacing": list(spacing), "options": {k: repr(v) for k, v in options.items()}}
        mn.set_provenance(volume, prov)
        mn.set_provenance(groups, prov)
        return volume, groups

    def process(self, volume, artery_groups, progress=None, **params):
        """Shorten ``artery_groups`` on the grid of ``volume``; returns a :class:`PipelineResult`."""
        if volume is None or artery_groups is None:
            raise ValueError("select a CTA volume and an artery-group segmentation")
        mn.image_from_volume_node(volume)  # clear error for an empty volume
        if progress:
            progress(0.1, "shortening arteries")
        out, table, res = self.shortening.process(artery_groups, reference_volume=volume, **params)
        out.SetName(f"{volume.GetName()} arteries shortened")
        table.SetName(f"{volume.GetName()} shortening report")
        if progress:
            progress(1.0, "done")
        return PipelineResult(out, table, res.branches, list(res.warnings))
