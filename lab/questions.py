"""Q1-Q4 of the lab, computed from the live model: conv layers, the last linear layer's input, and the
trainable parameters and gradients after one step of SGD and of Adam (Adam's state is not gradients)."""
from __future__ import annotations

import torch
import torch.nn as nn

from . import model as M
from .files import save_json
from .train import build_optimizer


def after_one_step(optimizer_name: str) -> dict:
    """Parameters, gradients and optimizer state values after one step on a random batch of 8."""
    torch.manual_seed(0)
    net = M.resnet18()
    optimizer = build_optimizer(optimizer_name, net.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    optimizer.zero_grad()
    nn.functional.cross_entropy(net(x), y).backward()
    optimizer.step()
    return {"parameters": M.count_trainable_parameters(net), "gradients": M.count_gradients(net),
            "optimizer_state": M.count_optimizer_state(optimizer)}


def answers() -> dict:
    net = M.resnet18()
    return {"conv_layers": M.count_conv_layers(net), "last_linear_in_features": M.last_linear_in_features(net),
            "sgd": after_one_step("sgd"), "adam": after_one_step("adam"),
            "parameters_without_bn": M.count_trainable_parameters(M.resnet18(batch_norm=False))}


def text(a: dict) -> str:
    """The answers as the notebook prints them (its stored output is checked by nbval)."""
    conv, sgd, adam = a["conv_layers"], a["sgd"], a["adam"]
    return "\n".join([
        f"Q1 conv layers: {conv['total']} = {conv['3x3']} 3x3 + {conv['1x1']} 1x1 shortcut convs",
        f"Q2 input dimension of the last linear layer: {a['last_linear_in_features']}",
        f"Q3 SGD:  {sgd['parameters']:,} trainable parameters, {sgd['gradients']:,} gradients",
        f"Q4 Adam: {adam['parameters']:,} trainable parameters, {adam['gradients']:,} gradients",
        f"   Adam also keeps {adam['optimizer_state']:,} state values (exp_avg + exp_avg_sq = 2 x parameters); state "
        f"is not gradients. SGD's momentum buffers: {sgd['optimizer_state']:,}.",
        f"   without batch norm: {a['parameters_without_bn']:,} trainable parameters"])


def save(a: dict, out) -> None:
    save_json(out / "answers.json", a)
