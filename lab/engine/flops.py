"""FLOPs of a model's step, two ways that must agree to the FLOP: counted by torch (FlopCounterMode) and derived
from the layers' shapes (`analytic`). A multiply-add is 2 FLOPs. Both count convolutions and matrix products only
(batch norm, ReLU, the residual add and the optimizer count 0, as FlopCounterMode counts them)."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

MATMUL_OPS = ("addmm", "mm", "bmm", "baddbmm", "matmul")


def conv_flops(output_shape, weight_shape) -> int:
    """Every output element is a dot product over one filter, weight_shape[1:] (non-transposed convolutions)."""
    return 2 * math.prod(output_shape) * math.prod(weight_shape[1:])


def matmul_flops(m: int, k: int, n: int) -> int:
    """An (m×k)·(k×n) product; a bias added to it is not counted, as torch does not."""
    return 2 * m * k * n


def eager_copy(model: nn.Module) -> nn.Module:
    """A deep copy without torch.compile's wrapper: FlopCounterMode cannot see inside a compiled graph."""
    return copy.deepcopy(getattr(model, "_orig_mod", model))


def _kind(op) -> str:
    name = str(op).split(".")[-1]
    return "conv" if "conv" in name else "linear" if name in MATMUL_OPS else "other"


def _totals(counted) -> dict:
    """{"conv", "linear", "other", "total"} from (kind, FLOPs) pairs."""
    flops = {"conv": 0, "linear": 0, "other": 0}
    for kind, n in counted:
        flops[kind] += int(n)
    return {**flops, "total": sum(flops.values())}


def count(model: nn.Module, batch: int, train: bool, device="cpu", image: int = 32) -> dict:
    """FLOPs of one step on a batch of `image`×`image` RGB images as FlopCounterMode counts them. train: forward +
    backward of the output's sum (the loss adds no counted FLOPs); else the forward under no_grad (under
    inference_mode the counter sees nothing). Device "meta" counts from shapes alone, at any batch in a moment."""
    net = eager_copy(model).to(device).train(train)
    x = torch.randn(batch, 3, image, image, device=device)
    with FlopCounterMode(display=False) as counter:
        if train:
            net(x).sum().backward()
        else:
            with torch.no_grad():
                net(x)
    return _totals((_kind(op), n) for op, n in counter.get_flop_counts()["Global"].items())


def analytic(model: nn.Module, batch: int, train: bool, image: int = 32) -> dict:
    """The same FLOPs from the layers' output shapes (forward hooks on a meta-device copy). Train adds the backward
    as FlopCounterMode counts it: a weight gradient per layer whose weight requires one and an input gradient per
    layer whose input requires one, each the layer's forward FLOPs. The image needs no gradient, so for ResNet-18
    that is 3 × forward − the stem conv's forward."""
    net = eager_copy(model).to("meta").train(train)
    seen = []
    for module in net.modules():  # the copy is thrown away: its hooks need no removing
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(lambda m, inputs, out: seen.append((m, inputs[0].requires_grad, out.shape)))
    net(torch.empty(batch, 3, image, image, device="meta"))
    flops = []
    for m, input_grad, out in seen:
        passes = 1 + (int(m.weight.requires_grad) + int(input_grad) if train else 0)
        flops.append(("conv", passes * conv_flops(out, m.weight.shape)) if isinstance(m, nn.Conv2d) else
                     ("linear", passes * matmul_flops(math.prod(out[:-1]), m.in_features, m.out_features)))
    return _totals(flops)
