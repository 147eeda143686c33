"""What the branched networks of the OKDPH code's baselines share (tianlizhang/OKDPH at a562089:
src/models/{resnet,vgg,densenet}_{one,okddip,ffl,pcl}.py; rdml.models.zoo.one, okddip, ffl, pcl): each copies
its backbone's trunk (src/models/resnet.py, vgg.py, densenet.py: rdml.models.zoo.okdph) and its
initialisation loop, and builds the branches on top. Each function creates modules in the official order and
draws as the official loop does, so a network's state_dict keys and its initial weights from one torch seed
stay the official ones.

Left apart, because the official files differ: ONE's VGG-16 trunk (vgg_one.py L42-57 creates `maxpool` before
layer1, the others after: rdml.models.zoo.one), FFL's DenseNet trunk (densenet_ffl.py L101-143 names the
blocks `denseblock{i}_0` and builds the last one in the same loop), FFL's ResNet-32 init (`conv_init`,
resnet_ffl.py L205-211) and OKDDip's VGG-16 linear biases (`linear_bias`, vgg_okddip.py L65-66: left at
PyTorch's default draw).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from rdml.models.zoo.okdph import DenseBlock, ResNet32, Transition, VGG16

__all__ = ["init_resnet", "init_vgg", "init_densenet", "build_resnet_trunk", "resnet_trunk", "build_vgg_trunk",
           "vgg_trunk", "vgg_classifier", "build_densenet_trunk"]


# ---- initialisation loops ------------------------------------------------------------------------------

def init_resnet(network: nn.Module) -> None:
    """Conv weights Kaiming-normal (fan_out, relu), BatchNorm2d 1 and 0; linear layers keep PyTorch's default
    (resnet.py L141-146; resnet_one.py L167-172, resnet_okddip.py L147-152, resnet_pcl.py L168-173)."""
    for m in network.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def init_vgg(network: nn.Module, linear_bias: bool = True) -> None:
    """Conv weights Kaiming-normal (fan_out, relu) and biases 0, BatchNorm2d 1 and 0, linear weights N(0, 0.01)
    and biases 0 (vgg.py L50-60; vgg_one.py L75-85, vgg_ffl.py L54-64, vgg_pcl.py L79-89); `linear_bias=False`
    leaves the linear biases at PyTorch's default draw, as vgg_okddip.py L57-66 does."""
    for m in network.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if linear_bias:
                nn.init.constant_(m.bias, 0)


def init_densenet(network: nn.Module) -> None:
    """Conv weights Kaiming-normal (fan_in), BatchNorm2d 1 and 0, linear biases 0, linear weights PyTorch's
    default (densenet.py L148-155; densenet_one.py L190-197, densenet_okddip.py L196-203, densenet_ffl.py
    L153-160, densenet_pcl.py L184-192). A module registered under several names is drawn once."""
    for m in network.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, 0)


# ---- trunks --------------------------------------------------------------------------------------------

def build_resnet_trunk(network: nn.Module, in_channels: int, blocks=(5, 5)) -> int:
    """ResNet-32's stem and first two stages on `network` (conv1, bn1, relu, layer1, layer2: resnet.py L130-136,
    okdph's ResNet32 with its stage builder), as every branched ResNet-32 creates them first; returns the
    trunk's channels, which each branch's last stage starts from (`network.inplanes` is reset to it)."""
    network.inplanes = 16
    network.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
    network.bn1 = nn.BatchNorm2d(16)
    network.relu = nn.ReLU(inplace=True)
    network.layer1 = ResNet32._make_layer(network, 16, blocks[0])
    network.layer2 = ResNet32._make_layer(network, 32, blocks[1], stride=2)
    return network.inplanes


def resnet_trunk(network: nn.Module, x):
    """The forward of `build_resnet_trunk`'s modules."""
    return network.layer2(network.layer1(network.relu(network.bn1(network.conv1(x)))))


def build_vgg_trunk(network: nn.Module, in_channels: int) -> None:
    """VGG-16's conv1, conv2 and stages 1-3 on `network`, in vgg.py's order (L21-38: `maxpool` after layer1),
    as vgg_okddip.py, vgg_ffl.py and vgg_pcl.py create them; each branch adds its own fourth stage."""
    network.inplanes = 64
    network.conv1 = nn.Conv2d(in_channels, 64, 3, padding=1)
    network.bn1 = nn.BatchNorm2d(64)
    network.conv2 = nn.Conv2d(64, 64, 3, padding=1)
    network.bn2 = nn.BatchNorm2d(64)
    network.relu = nn.ReLU(True)
    network.layer1 = VGG16._make_layers(network, 128, 2)
    network.maxpool = nn.MaxPool2d(2, 2)
    network.layer2 = VGG16._make_layers(network, 256, 3)
    network.layer3 = VGG16._make_layers(network, 512, 3)


def vgg_trunk(network: nn.Module, x):
    """The forward of VGG-16's trunk (vgg.py L62-68), whichever order created it."""
    x = network.relu(network.bn1(network.conv1(x)))
    x = network.maxpool(network.relu(network.bn2(network.conv2(x))))
    return network.layer3(network.layer2(network.layer1(x)))


def vgg_classifier(num_classes: int, dropout: float) -> nn.Sequential:
    """VGG-16's 512→512→512→classes head with ReLU and Dropout(p) (vgg.py L41-49; ONE's and OKDDip's p = 0.5,
    FFL's and PCL's 0.0)."""
    return nn.Sequential(nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
                         nn.Linear(512, 512), nn.ReLU(True), nn.Dropout(p=dropout),
                         nn.Linear(512, num_classes))


def build_densenet_trunk(network: nn.Module, in_channels: int, blocks, growth: int, bn_size: int,
                         compression: float, init_features: int) -> int:
    """`network.features`: conv0, then each dense block but the last with its transition (densenet.py L109-139;
    densenet_one.py L127-158, densenet_okddip.py L153-169, densenet_pcl.py L142-158); returns its channels."""
    network.features = nn.Sequential(OrderedDict([("conv0", nn.Conv2d(in_channels, init_features, 3, 1, 1,
                                                                     bias=False))]))
    channels = init_features
    for i, layers in enumerate(blocks[:-1]):
        network.features.add_module(f"denseblock{i + 1}", DenseBlock(layers, channels, growth, bn_size))
        channels += layers * growth
        network.features.add_module(f"transition{i + 1}", Transition(channels, int(channels * compression)))
        channels = int(channels * compression)
    return channels
