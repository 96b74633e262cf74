"""FLOPs of a model's step, two ways that must agree to the FLOP: counted by torch
(torch.utils.flop_counter.FlopCounterMode) and derived from the layers' shapes (`analytic`). One FLOP is one
multiply or one add: a multiply-add is 2 FLOPs. Both count convolutions and matrix products only (batch norm,
ReLU, the residual add and the optimizer count 0, as FlopCounterMode counts them)."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

MATMUL_OPS = ("addmm", "mm", "bmm", "baddbmm", "matmul")


def conv_flops(output_shape, weight_shape) -> int:
    """2 × multiply-adds of a (non-transposed) convolution: every output element is a dot product over
    (in_channels / groups) × kernel, i.e. over one filter, weight_shape[1:]."""
    return 2 * math.prod(output_shape) * math.prod(weight_shape[1:])


def matmul_flops(m: int, k: int, n: int) -> int:
    """2 × multiply-adds of an (m×k)·(k×n) product (a bias added to it is not counted, as torch does not)."""
    return 2 * m * k * n


def eager_copy(model: nn.Module) -> nn.Module:
    """A deep copy of the model without torch.compile's wrapper: FlopCounterMode cannot see inside a compiled
    graph, and counting must not touch the caller's model."""
    return copy.deepcopy(getattr(model, "_orig_mod", model))


def _kind(op) -> str:
    name = str(op).split(".")[-1]
    return "conv" if "conv" in name else "linear" if name in MATMUL_OPS else "other"


def count(model: nn.Module, batch: int, train: bool, device="cpu", image: int = 32) -> dict:
    """FLOPs of one step on a batch of `image`×`image` RGB images, as FlopCounterMode counts them:
    {"conv", "linear", "other", "total"} (integers). train: forward + backward (of the output's sum: the loss
    adds no counted FLOPs); else the forward under no_grad (under inference_mode the counter sees nothing).
    device "meta" counts from shapes alone, in a fraction of a second at any batch (the counts are the same:
    the counter reads shapes, not values)."""
    net = eager_copy(model).to(device).train(train)
    x = torch.randn(batch, 3, image, image, device=device)
    with FlopCounterMode(display=False) as counter:
        if train:
            net(x).sum().backward()
        else:
            with torch.no_grad():
                net(x)
    flops = {"conv": 0, "linear": 0, "other": 0}
    for op, n in counter.get_flop_counts()["Global"].items():
        flops[_kind(op)] += int(n)
    flops["total"] = sum(flops.values())
    return flops


def analytic(model: nn.Module, batch: int, train: bool, image: int = 32) -> dict:
    """The same FLOPs from the layers' shapes ({"conv", "linear", "other": 0, "total"}).

    Forward: every Conv2d (shortcuts included) 2 × output elements × (in_channels/groups × kernel), every
    Linear 2 × batch × in × out; the output shapes come from forward hooks on a meta-device copy.
    Train adds the backward as FlopCounterMode counts it: the weight gradient of every layer whose weight
    requires a gradient, and the input gradient of every layer whose input requires one, each as many FLOPs
    as the layer's forward. The image needs no gradient, so the first conv has no input gradient: for
    ResNet-18 that is 3 × forward − the stem conv's forward."""
    net = eager_copy(model).to("meta").train(train)
    seen = []

    def hook(module, inputs, output):
        seen.append((module, inputs[0].requires_grad, tuple(output.shape)))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        net(torch.empty(batch, 3, image, image, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    flops = {"conv": 0, "linear": 0, "other": 0}
    for module, input_grad, out in seen:
        if isinstance(module, nn.Conv2d):
            kind, forward = "conv", conv_flops(out, module.weight.shape)
        else:
            kind, forward = "linear", matmul_flops(math.prod(out[:-1]), module.in_features, module.out_features)
        passes = 1 + (int(module.weight.requires_grad) + int(input_grad) if train else 0)
        flops[kind] += passes * forward
    flops["total"] = sum(flops.values())
    return flops
