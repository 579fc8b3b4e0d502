"""CT -> label maps: the networks, their model cards and registry, and how they are run.

Takes a CT (SimpleITK image, HU) and a model (a bundled or registered name, a model
folder, or an nnU-Net v2 results folder); gives a label map on the CT's own grid (the
artery groups 1-4, or artery 1 / calcification 2).  :mod:`.models` reads and checks the
model cards and keeps the registry, :mod:`.networks` holds the architectures,
:mod:`.engine` runs a network by sliding window on the model grid and takes the labels
back to the CT grid (with the card's postprocessing), :mod:`.refine` re-decides the
calcium edge at the CT's resolution from its HU, and :mod:`.nnunet` runs nnU-Net folders.
"""
