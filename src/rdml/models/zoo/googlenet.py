"""GoogLeNet / Inception v1 (Szegedy et al. 2014) for 32×32 inputs.

`googlenet` is the network of weiaicunzai/pytorch-cifar100, `models/googlenet.py` as of commit 49ddb26
(2020-12-29; unchanged through 11d8418, 2022-03-27), which the RDML paper's footnote 4 names and the
released RDML code copies (parklize/rdml, `torchversion/nets/googlenet.py`, commit 57f381f):

- prelayer: three 3×3 convolutions 3→64→64→192 without bias, each with BatchNorm and ReLU;
- a 3×3 max-pool of stride 2 (padding 1) after the prelayer and again before 4a and 5a, so on 32×32
  inputs inception 3a runs at 16×16, 4a at 8×8 and 5a at 4×4;
- inception modules whose convolutions keep their bias (PyTorch's default), the 5×5 branch as two 3×3
  convolutions, the pool branch a 3×3 max-pool of stride 1 then a 1×1 convolution;
- head: global average pool, `Dropout2d(p=0.4)` on the N×1024×1×1 map, then a 1024→classes linear layer.

Its layer order, bias flags, pools and head are upstream's; the input's channel count replaces the
hard-coded 3. Upstream and the RDML copy write the first BatchNorm after the 5×5 branch's first 3×3
convolution as `nn.BatchNorm2d(n5x5, n5x5)`, which passes the channel count as `eps` (32 to 128 instead
of 1e-5); `googlenet` does not inherit that bug (every BatchNorm has the default eps), while
`googlenet_as_released` replicates it on exactly that BatchNorm of every inception module.

`inception_v1` keeps the original 5×5 branch, the network the DML paper calls InceptionV1. It is
rdml's earlier layout, not upstream's: no max-pool after the stem (inception 3a at 32×32, max-pools
only before 4a and 5a), no bias in any convolution, and element-wise `Dropout(0.4)` in the head.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, k: int, bias: bool = False, eps: float = 1e-5) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias), nn.BatchNorm2d(cout, eps=eps), nn.ReLU(inplace=True)]


class Inception(nn.Module):
    def __init__(self, cin, n1, r3, n3, r5, n5, pool, five_as_two_threes: bool, bias: bool = False,
                 eps_bug: bool = False):
        super().__init__()
        self.b1 = nn.Sequential(*_conv(cin, n1, 1, bias))
        self.b2 = nn.Sequential(*_conv(cin, r3, 1, bias), *_conv(r3, n3, 3, bias))
        if five_as_two_threes:  # the released code's BatchNorm2d(n5x5, n5x5) sits after the first 3×3
            five = [*_conv(r5, n5, 3, bias, eps=n5 if eps_bug else 1e-5), *_conv(n5, n5, 3, bias)]
        else:
            five = _conv(r5, n5, 5, bias)
        self.b3 = nn.Sequential(*_conv(cin, r5, 1, bias), *five)
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv(cin, pool, 1, bias))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


MODULES = {  # name: (in, 1×1, 3×3 reduce, 3×3, 5×5 reduce, 5×5, pool proj), from the paper's Table 1
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """`pytorch_cifar100` selects upstream's network (stem max-pool, biased inception convolutions, 5×5
    branch as two 3×3, Dropout2d); otherwise rdml's InceptionV1 layout (see the module docstring)."""

    def __init__(self, input_shape, num_classes: int, pytorch_cifar100: bool, eps_bug: bool = False):
        super().__init__()
        self.stem = nn.Sequential(*_conv(input_shape[0], 64, 3), *_conv(64, 64, 3), *_conv(64, 192, 3))
        pooled = ("3a", "4a", "5a") if pytorch_cifar100 else ("4a", "5a")
        blocks = []
        for name, spec in MODULES.items():
            if name in pooled:
                blocks.append(nn.MaxPool2d(3, 2, 1))
            blocks.append(Inception(*spec, five_as_two_threes=pytorch_cifar100, bias=pytorch_cifar100,
                                    eps_bug=eps_bug))
        self.blocks = nn.Sequential(*blocks)
        if pytorch_cifar100:  # upstream drops whole channels of the pooled N×1024×1×1 map, then flattens
            head = [nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout2d(0.4), nn.Flatten()]
        else:
            head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4)]
        self.head = nn.Sequential(*head, nn.Linear(1024, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def googlenet(input_shape, num_classes):
    """pytorch-cifar100's GoogLeNet, every BatchNorm with the default eps (the eps bug not inherited)."""
    return GoogLeNet(input_shape, num_classes, pytorch_cifar100=True)


def googlenet_as_released(input_shape, num_classes):
    """pytorch-cifar100's GoogLeNet as the RDML code releases it: identical to `googlenet` except that,
    in every inception module, the BatchNorm after the 5×5 branch's first 3×3 convolution has eps = n5x5
    (upstream's and the RDML copy's `nn.BatchNorm2d(n5x5, n5x5)`, line 45 of both files)."""
    return GoogLeNet(input_shape, num_classes, pytorch_cifar100=True, eps_bug=True)


def inception_v1(input_shape, num_classes):
    """The original 5×5 branch (DML's InceptionV1) in rdml's layout: no max-pool after the stem."""
    return GoogLeNet(input_shape, num_classes, pytorch_cifar100=False)
