"""Synthetic abdominal CTA phantoms whose geometry and calcium are known exactly.

Takes a seed and scanner/patient options (spacing, contrast level, noise, blur, field of
view, plaques, metal, ...); gives a :class:`~.generator.Phantom`: the CT in HU, the
artery/calcification labels (1/2), the artery-group labels (1 aorta, 2 iliac,
3 mesenteric, 4 renal), each plaque's id and the metadata of every branch and plaque.
:mod:`.anatomy` draws the branch centrelines and radii, :mod:`.plaques` places the
calcified plaques, :mod:`.render` paints tissues, partial volume and noise on a voxel
grid, and :mod:`.generator` assembles them (:func:`~.generator.make_phantom`).
"""

from .generator import Phantom, make_group_labels, make_phantom

__all__ = ["Phantom", "make_group_labels", "make_phantom"]
