"""The networks of DML's Market-1501 experiments (person re-identification, DML §4.1, §4.3): each is trained
for 751-way classification and "the resulting feature output of the last pooling layer" is the representation
for nearest-neighbour matching. The official code takes it as `end_points['PreLogits']`
(YingZhangDUT/Deep-Mutual-Learning eval_models.py L145-150), the pooled map after a dropout that is inactive
at evaluation (nets/mobilenet_v1.py L339-345, nets/inception_v1.py L292-294).

The interface every re-ID network here follows (rdml.train.evaluate.split_features relies on it):

- `features(x) -> (N, D)`: the output of the last pooling layer (global average pooling, flattened), before
  any dropout and the classifier;
- `classify(f) -> (N, classes)`: the logits of features `f`: the network's dropout (where it has one, active
  in training mode only), then its classifier;
- `forward(x) = classify(features(x))`;
- `feature_dim = D`, the width of `features`.

Networks:

- `mobilenetv1_100`: timm's MobileNet-V1 (ReLU6, width multiplier 1, 1024-d feature), as TF-slim's
  `mobilenet_v1` (nets/mobilenet_v1.py) in its layers, widths and parameters: 3,206,976 in the backbone
  (slim's table, L32-62, counts its 3,185,088 convolution weights; the 10,944 batch-norm channels add their
  scale and offset), and 769,775 in a 751-way head. Slim's logits are a 1×1 convolution with bias on the
  1×1×1024 pooled map (L348-349), timm's a Linear: the same function and parameters. Slim drops out with
  keep_prob 0.999 before it (L271, L344): so does this network (`drop_rate=0.001`; timm's default is none).
  What differs: slim pads a stride-2 convolution 'SAME' (one pixel at the bottom and right of a 224-px map),
  timm one pixel on each side; slim's batch norm has ε = 0.001 and moving-average decay 0.9997
  (L409-415), torch's ε = 1e-5 and momentum 0.1; slim draws convolution weights from a truncated normal of
  σ = 0.09 (L418), timm by its EfficientNet initialisation. Slim pools with a fixed 7×7 window
  (`global_pool=False`, L338-341), which at 224 px is the global average here.
- `tv_googlenet`: torchvision's GoogLeNet, `googlenet(aux_logits=False, init_weights=True,
  transform_input=False)`: a batch-normalised Inception-V1 with a 1024-d average-pooled feature, dropout
  0.2, then a Linear classifier, as slim's `inception_v1` (nets/inception_v1.py: batch norm after every
  convolution, dropout keep_prob 0.8 before a 1×1-convolution classifier, L248-305, no auxiliary heads).
  Both use 3×3 convolutions where the paper's 5×5 branches are (torchvision calls it a known bug), and their
  convolution weights agree layer by layer (5,585,344). What differs: slim's batch norm has no scale
  (`inception_arg_scope` sets none, nets/inception_utils.py L48-55, and slim's default is `scale=False`),
  torchvision's has one: 6,369,679 parameters with 751 classes here, 6,362,399 in slim (7,280 fewer); the
  moving-average decay is 0.9997 in slim, momentum 0.1 here (ε = 0.001 in both); slim pads the stride-2
  7×7 stem 'SAME' (2 before, 3 after), torchvision 3 on each side. Both draw convolution weights from a
  normal of σ = 0.01 (slim truncates it at 2σ, L57-59, torchvision at ±2); slim's classifier is initialised
  by variance scaling (nets/inception_utils.py L65-67), torchvision's as its convolutions.
- `reid_tiny`: a small network of the same interface for smoke runs and tests: a stride-4 convolution, two
  stride-2 convolutions, a global average pool to 64 features and a Linear classifier.

Published ImageNet weights (the "pretrained" rows of DML Table 3) are data (rdml.models.pretrained): timm's
`mobilenetv1_100.ra4_e3600_r224_in1k` for `mobilenetv1_100` (loaded through timm's pretrained path, which
leaves out a classifier of another size) and torchvision's `GoogLeNet_Weights.IMAGENET1K_V1` for
`tv_googlenet` (its auxiliary heads left out). They are not the TF-slim checkpoints the DML authors
presumably started from: ImageNet top-1 75.38 % at 224 px for timm's (3600 epochs of its RA4 recipe; timm's
README), against 70.9 % for slim's MobileNet_v1_1.0_224 (70.7 % as first released, June 2017;
tensorflow/models research/slim README); 69.778 % for torchvision's GoogLeNet (its weights' metadata), 69.8 %
for slim's inception_v1. Both take inputs scaled to [-1, 1], the `inception` normalisation of the
pedestrians kind: timm's configuration gives mean = std = 0.5, and torchvision's `transform_input=True`,
which it sets for these weights, maps ImageNet-normalised inputs to that scale, so with the `inception`
normalisation the network is built with `transform_input=False`. A classifier of another size than the
file's is drawn anew (from the run's init seed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rdml.keys import ConfigError
from rdml.models.timm_zoo import create

__all__ = ["ReidNetwork", "TimmReid", "GoogLeNetReid", "ReidTiny", "mobilenetv1_100", "tv_googlenet", "reid_tiny"]

SLIM_MOBILENET_DROPOUT = 1 - 0.999  # slim's dropout_keep_prob (nets/mobilenet_v1.py L271)


class ReidNetwork(nn.Module, ABC):
    """What every re-ID network has (the module docstring): `features`, `classify`, `feature_dim`."""

    feature_dim: int

    @abstractmethod
    def features(self, x: Tensor) -> Tensor:
        """(N, feature_dim): the last pooling layer's output, what retrieval matches on."""

    @abstractmethod
    def classify(self, f: Tensor) -> Tensor:
        """(N, classes): the network's dropout (training mode only), then its classifier."""

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.features(x))


class TimmReid(ReidNetwork):
    """A timm network with a global pool, dropout and a classifier in its head (timm's `forward_head`:
    `global_pool`, `F.dropout(p=drop_rate)`, `classifier`), split at the pool."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.feature_dim = net.num_features

    def features(self, x: Tensor) -> Tensor:
        return self.net.global_pool(self.net.forward_features(x))

    def classify(self, f: Tensor) -> Tensor:
        return self.net.classifier(F.dropout(f, p=self.net.drop_rate, training=self.training))


class GoogLeNetReid(ReidNetwork):
    """torchvision's GoogLeNet without auxiliary heads, split at its average pool (the layers of
    `GoogLeNet._forward` in its order)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        if net.aux_logits:
            raise ValueError("GoogLeNetReid takes a GoogLeNet built with aux_logits=False")
        self.net = net
        self.feature_dim = net.fc.in_features

    def features(self, x: Tensor) -> Tensor:
        n = self.net
        x = n._transform_input(x)
        for layer in (n.conv1, n.maxpool1, n.conv2, n.conv3, n.maxpool2, n.inception3a, n.inception3b, n.maxpool3,
                      n.inception4a, n.inception4b, n.inception4c, n.inception4d, n.inception4e, n.maxpool4,
                      n.inception5a, n.inception5b, n.avgpool):
            x = layer(x)
        return torch.flatten(x, 1)

    def classify(self, f: Tensor) -> Tensor:
        return self.net.fc(self.net.dropout(f))


class ReidTiny(ReidNetwork):
    """A stand-in for smoke runs: 224-px inputs reduced at once by a stride-4 convolution, fast on a CPU."""

    def __init__(self, channels: int, num_classes: int, widths=(16, 32, 64)):
        super().__init__()
        layers, cin = [], channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(cin, width, 4 if i == 0 else 3, stride=4 if i == 0 else 2, padding=0 if i == 0 else 1,
                                 bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            cin = width
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        self.feature_dim = cin

    def features(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)

    def classify(self, f: Tensor) -> Tensor:
        return self.classifier(f)


def start_from(model: nn.Module, weights: str | Path, head: str, leave_out: tuple[str, ...] = ()) -> nn.Module:
    """`model` with the parameters and buffers of the safetensors file `weights` (rdml.models.pretrained),
    those under `leave_out` not taken, the classifier `head` only where its shape is the model's (else the
    model's own, as drawn). Refuses a file that is not the network's weights."""
    from safetensors.torch import load_file

    published = {k: v for k, v in load_file(str(weights)).items() if not k.startswith(leave_out)}
    own = model.state_dict()
    if any(published.get(k) is not None and published[k].shape != v.shape for k, v in own.items() if k.startswith(f"{head}.")):
        published = {k: v for k, v in published.items() if not k.startswith(f"{head}.")}
    wrong = sorted(k for k, v in published.items() if k not in own or own[k].shape != v.shape)
    missing = sorted(k for k in own if k not in published and not k.startswith(f"{head}."))
    if wrong or missing:
        raise ConfigError(f"{weights} does not hold this network's weights (not in the network or of another shape: "
                          f"{', '.join(wrong[:5]) or 'none'}; missing: {', '.join(missing[:5]) or 'none'})")
    model.load_state_dict(published, strict=False)
    return model


def mobilenetv1_100(input_shape, num_classes, weights=None):
    return TimmReid(create("mobilenetv1_100", input_shape, num_classes, weights, drop_rate=SLIM_MOBILENET_DROPOUT))


def tv_googlenet(input_shape, num_classes, weights=None):
    from torchvision.models import googlenet

    if input_shape[0] != 3:
        raise ConfigError(f"tv_googlenet takes 3-channel images, not {input_shape[0]}")
    net = GoogLeNetReid(googlenet(weights=None, aux_logits=False, init_weights=True, transform_input=False,
                                  num_classes=num_classes))
    if weights is not None:
        start_from(net.net, weights, "fc", leave_out=("aux1.", "aux2."))  # torchvision's file has its aux heads
    return net


def reid_tiny(input_shape, num_classes, weights=None):
    model = ReidTiny(input_shape[0], num_classes)
    return model if weights is None else start_from(model, weights, "classifier")
