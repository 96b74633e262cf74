"""ResNet-18 for CIFAR-10 exactly as kuangliu/pytorch-cifar defines it, with a batch-norm switch,
and helpers that answer the lab's questions (Q1-Q4) from the live model rather than from constants."""
from __future__ import annotations

from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, batch_norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(planes, batch_norm)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = _norm(planes, batch_norm)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                _norm(planes, batch_norm),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, num_blocks=(2, 2, 2, 2), num_classes: int = 10, batch_norm: bool = True):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = _norm(64, batch_norm)
        self.layer1 = self._make_layer(64, num_blocks[0], 1, batch_norm)
        self.layer2 = self._make_layer(128, num_blocks[1], 2, batch_norm)
        self.layer3 = self._make_layer(256, num_blocks[2], 2, batch_norm)
        self.layer4 = self._make_layer(512, num_blocks[3], 2, batch_norm)
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes, num_blocks, stride, batch_norm):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s, batch_norm))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        return self.linear(out.view(out.size(0), -1))


def resnet18(batch_norm: bool = True, num_classes: int = 10) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes=num_classes, batch_norm=batch_norm)


# --- the lab's questions, answered from the model -------------------------------------------------

def count_conv_layers(model: nn.Module) -> dict:
    """Q1: conv layers by kernel size, e.g. {'3x3': 17, '1x1': 3, 'total': 20}."""
    counts = Counter("x".join(map(str, m.kernel_size)) for m in model.modules() if isinstance(m, nn.Conv2d))
    return {**counts, "total": sum(counts.values())}


def last_linear_in_features(model: nn.Module) -> int:
    """Q2: input dimension of the last linear layer."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].in_features


def _size(tensors, in_bytes: bool = False) -> int:
    return sum(t.numel() * (t.element_size() if in_bytes else 1) for t in tensors)


def count_trainable_parameters(model: nn.Module, in_bytes: bool = False) -> int:
    """Q3: trainable parameter elements (or their bytes)."""
    return _size((p for p in model.parameters() if p.requires_grad), in_bytes)


def count_gradients(model: nn.Module) -> int:
    """Q3/Q4: gradient elements present after a backward pass (one per trainable parameter element)."""
    return _size(p.grad for p in model.parameters() if p.grad is not None)


def count_optimizer_state(optimizer: torch.optim.Optimizer, in_bytes: bool = False) -> int:
    """Q4: tensor elements (or their bytes) the optimizer keeps as state (Adam: exp_avg and exp_avg_sq, 2x the
    parameters), measured from its tensors; scalar bookkeeping such as Adam's per-parameter `step` is left out."""
    return _size((v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v) and v.dim()),
                 in_bytes)
