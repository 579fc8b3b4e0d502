"""Network architectures of the bundled models (torch), built from a model card.

- ``unet3d``: a compact 3D U-Net (instance norm, leaky ReLU, strided-conv
  down-sampling, transposed-conv up-sampling), the nnU-Net design scaled down to
  run on a laptop CPU.  Parameters: ``in_channels``, ``num_classes``, ``features``
  (channels per level, e.g. ``[8, 16, 32, 64]``).
- ``voxelwise``: one 1x1x1 convolution, i.e. a per-voxel logistic model of the
  normalised intensity.  Useful as a transparent baseline and in tests, where its
  output is known exactly.
"""

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    def __init__(self, cin, cout, stride=1):
        super().__init__(
            nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False),
            nn.InstanceNorm3d(cout, affine=True), nn.LeakyReLU(0.01, inplace=True))


class UNet3D(nn.Module):
    """Compact 3D U-Net; input (N, C, D, H, W) with D, H, W divisible by 2**(levels-1)."""

    def __init__(self, in_channels=1, num_classes=2, features=(8, 16, 32, 64)):
        super().__init__()
        f = list(features)
        self.down = nn.ModuleList([ConvBlock(in_channels, f[0])] +
                                  [ConvBlock(f[i - 1], f[i], stride=2) for i in range(1, len(f))])
        self.up = nn.ModuleList([nn.ConvTranspose3d(f[i], f[i - 1], 2, stride=2)
                                 for i in range(len(f) - 1, 0, -1)])
        self.dec = nn.ModuleList([ConvBlock(2 * f[i - 1], f[i - 1])
                                  for i in range(len(f) - 1, 0, -1)])
        self.head = nn.Conv3d(f[0], num_classes, 1)

    @property
    def divisor(self):
        return 2 ** (len(self.down) - 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class Voxelwise(nn.Module):
    def __init__(self, in_channels=1, num_classes=2):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, num_classes, 1)
        self.divisor = 1

    def forward(self, x):
        return self.conv(x)


ARCHITECTURES = {"unet3d": UNet3D, "voxelwise": Voxelwise}


def build(architecture):
    """A network from the card's ``architecture`` dict: ``{"name": ..., "params": {...}}``."""
    name = architecture.get("name")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](**architecture.get("params", {}))
