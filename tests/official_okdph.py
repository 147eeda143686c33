"""Transcriptions of the official OKDPH code (tianlizhang/OKDPH at a562089) that its baselines' files repeat word
for word, shared by tests/test_one.py, test_okddip.py, test_ffl.py and test_pcl.py (`from official_okdph import
...`): each piece here stands in several official files with the same text, cited below. Pieces whose official
text differs stay in their test file (resnet_ffl.py's BasicBlock takes `base_width`; FFL's `KLLoss`, PCL's
`KDLoss` and ramp-up are other code; each model's __init__ and forward). Last, the comparison the tests share."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


# ---- src/models/resnet.py L18-64 = resnet_one.py L20-66 = resnet_okddip.py L18-64 = resnet_pcl.py L16-62 -------
# (torchvision's, the paths the OKDPH runs take: groups 1, base_width 64, dilation 1, BatchNorm2d)

def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, groups=1, bias=False, dilation=1)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class OfficialBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


def official_make_layer(self, block, planes, blocks, stride=1):
    """The ResNets' stage builder, resnet.py L157-179 = resnet_one.py L185-207 = resnet_okddip.py L163-185
    = resnet_pcl.py L184-206, on the path the OKDPH runs take (no dilation, groups 1, BatchNorm2d); a method of
    each official ResNet: set `_make_layer = official_make_layer`."""
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
        downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                   nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    for _ in range(1, blocks):
        layers.append(block(self.inplanes, planes))
    return nn.Sequential(*layers)


# ---- VGG's stage builder: vgg.py L62-69 = vgg_one.py L87-94 = vgg_okddip.py L68-75 = vgg_ffl.py L66-73
# = vgg_pcl.py L91-98 (a method of each official VGG: set `_make_layers = official_make_layers`)

def official_make_layers(self, input, num_layer):
    layers = []
    for i in range(num_layer):
        conv2d = nn.Conv2d(self.inplances, input, kernel_size=3, padding=1)
        layers += [conv2d, nn.BatchNorm2d(input), nn.ReLU(inplace=True)]
        self.inplances = input
    layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
    return nn.Sequential(*layers)


# ---- DenseNet's pieces: densenet.py L20-83 = densenet_one.py L23-86 = densenet_okddip.py L20-83
# = densenet_ffl.py L21-84 = densenet_pcl.py L21-84 (efficient=False, drop_rate=0, as the OKDPH runs build them)

def _bn_function_factory(norm, relu, conv):
    def bn_function(*inputs):
        concated_features = torch.cat(inputs, 1)
        return conv(relu(norm(concated_features)))
    return bn_function


class OfficialDenseLayer(nn.Module):
    def __init__(self, num_input_features, growth_rate, bn_size):
        super().__init__()
        self.add_module('norm1', nn.BatchNorm2d(num_input_features))
        self.add_module('relu1', nn.ReLU(inplace=True))
        self.add_module('conv1', nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False))
        self.add_module('norm2', nn.BatchNorm2d(bn_size * growth_rate))
        self.add_module('relu2', nn.ReLU(inplace=True))
        self.add_module('conv2', nn.Conv2d(bn_size * growth_rate, growth_rate,
                        kernel_size=3, stride=1, padding=1, bias=False))

    def forward(self, *prev_features):
        bottleneck_output = _bn_function_factory(self.norm1, self.relu1, self.conv1)(*prev_features)
        return self.conv2(self.relu2(self.norm2(bottleneck_output)))


class OfficialTransition(nn.Sequential):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.add_module('norm', nn.BatchNorm2d(num_input_features))
        self.add_module('relu', nn.ReLU(inplace=True))
        self.add_module('conv', nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False))
        self.add_module('pool', nn.AvgPool2d(kernel_size=2, stride=2))


class OfficialDenseBlock(nn.Module):
    def __init__(self, num_layers, num_input_features, bn_size, growth_rate):
        super().__init__()
        for i in range(num_layers):
            self.add_module('denselayer%d' % (i + 1),
                            OfficialDenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))

    def forward(self, init_features):
        features = [init_features]
        for name, layer in self.named_children():
            features.append(layer(*features))
        return torch.cat(features, 1)


# ---- the initialisation loops, the same text in every file of a backbone (each at the end of its model's __init__)

def official_init_resnet(model):
    """resnet.py L141-146 = resnet_one.py L167-172 = resnet_okddip.py L147-152 = resnet_pcl.py L168-173."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def official_init_vgg(model):
    """vgg.py L50-60 = vgg_one.py L75-85 = vgg_ffl.py L54-64 = vgg_pcl.py L79-89 (vgg_okddip.py L57-66 leaves the
    linear biases: written out in tests/test_okddip.py)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)


def official_init_densenet(model):
    """densenet.py L148-155 = densenet_one.py L190-197 = densenet_okddip.py L196-203 = densenet_ffl.py L153-160
    = densenet_pcl.py L185-192."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.constant_(m.bias, 0)


# ---- the scripts: src/02_ONE.py L18-37 = src/04_OKDDip.py L18-37; the ramp-up also src/05_FFL.py L35-42 -------

class OfficialKLLoss(nn.Module):
    """`KL_Loss`."""

    def __init__(self, temperature=1):
        super().__init__()
        self.T = temperature

    def forward(self, output_batch, teacher_outputs):
        output_batch = F.log_softmax(output_batch / self.T, dim=1)
        teacher_outputs = F.softmax(teacher_outputs / self.T, dim=1) + 10 ** (-7)
        loss = self.T * self.T * nn.KLDivLoss(reduction='batchmean')(output_batch, teacher_outputs)
        return loss


def get_current_consistency_weight(current, rampup_length):
    # Consistency ramp-up from https://arxiv.org/abs/1610.02242
    if rampup_length == 0:
        return 1.0
    else:
        current = np.clip(current, 0.0, rampup_length)
        phase = 1.0 - current / rampup_length
        return float(np.exp(-5.0 * phase * phase))


# ---- the OKDPH scripts' optimiser (02_ONE.py L119, 04_OKDDip.py L130, 05_FFL.py L121, 06_PCL.py L178) as rdml keys
SGD = ["optimizer=sgd", "lr=0.1", "momentum=0.9", "nesterov=false", "weight_decay=5e-4"]


# ---- comparing a network with its official counterpart ------------------------------------------------------

def assert_same_state(ours, official):
    """The same state_dict keys in the same order, every tensor equal to the bit."""
    mine, theirs = ours.state_dict(), official.state_dict()
    assert list(mine) == list(theirs)
    for key, value in mine.items():
        assert torch.equal(value, theirs[key]), key
