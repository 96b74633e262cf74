"""Q1-Q4, answered from the live ResNet-18 that the lab trains: its conv layers, the last linear layer's input,
and the trainable parameters and gradients after one step of SGD and of Adam (Adam's state is not gradients)."""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn as nn

from ..core import results
from ..engine import model as M
from ..engine.memory import parameter_bytes, state_bytes
from ..engine.train import build_optimizer
from . import display
from .base import Part, Runs

ID = "Q_model"
QUESTIONS = (("Q1", "Convolutional layers"), ("Q2", "Input of the last linear layer"),
             ("Q3", "Parameters and gradients, SGD"), ("Q4", "Parameters and gradients, Adam"))


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
            "optimizer_state": M.count_optimizer_state(optimizer), "optimizer_state_bytes": state_bytes(optimizer),
            "parameter_bytes": parameter_bytes(net)}


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
        f"   Adam's state in memory: {adam['optimizer_state_bytes']:,} bytes, measured from its tensors "
        f"({adam['optimizer_state_bytes'] / adam['parameter_bytes']:.2f} x the parameters' {adam['parameter_bytes']:,} "
        "bytes)",
        f"   without batch norm: {a['parameters_without_bn']:,} trainable parameters"])


OPTIMIZER_FIELDS = {"parameters": "values", "gradients": "values", "optimizer_state": "values",
                    "optimizer_state_bytes": "bytes", "parameter_bytes": "bytes"}


def save(a: dict, results_dir) -> None:
    """The answers as rows of the report's measurements (a part run again replaces them)."""
    rows = results.Rows(results_dir, ID).start()
    rows.extend([rows.row("conv_layers", n, "layers", kind=kind) for kind, n in a["conv_layers"].items()]
                + [rows.row("last_linear_in_features", a["last_linear_in_features"], "features"),
                   rows.row("parameters_without_bn", a["parameters_without_bn"], "values")]
                + [rows.row(metric, a[opt][metric], unit, setting=opt) for opt in ("sgd", "adam")
                   for metric, unit in OPTIMIZER_FIELDS.items() if metric in a[opt]])


def read(results_dir) -> dict | None:
    """The answers as `answers()` gives them, from the report's rows; None where this part did not run."""
    rows = results.read(results_dir, part=ID) if results_dir is not None else None
    if rows is None or not len(rows):
        return None
    whole = lambda metric, **setting: int(results.value(rows, metric, **setting))  # noqa: E731
    conv = rows[rows["metric"] == "conv_layers"]
    return {"conv_layers": {k: int(v) for k, v in zip(conv["kind"], conv["value"])},
            "last_linear_in_features": whole("last_linear_in_features"),
            "parameters_without_bn": whole("parameters_without_bn"),
            **{opt: {m: whole(m, setting=opt) for m in OPTIMIZER_FIELDS
                     if results.value(rows, m, setting=opt) is not None} for opt in ("sgd", "adam")}}


def runs(config, params: dict, report) -> Runs:
    return Runs()  # nothing trains


def conv_line(conv: dict) -> str:
    return f"{conv['total']} ({conv['3x3']} 3x3 + {conv['1x1']} 1x1 shortcut)"


def answers_table(results_dir) -> pd.DataFrame:
    a = read(results_dir)
    if not a:
        return pd.DataFrame({"answer": ["Q_model did not run in this report"]})
    rows = [("Q1 conv layers", conv_line(a["conv_layers"])),
            ("Q2 input size of the last linear layer", f"{a['last_linear_in_features']}"),
            ("Q3 SGD: trainable parameters / gradients", f"{a['sgd']['parameters']:,} / {a['sgd']['gradients']:,}"),
            ("Q4 Adam: trainable parameters / gradients", f"{a['adam']['parameters']:,} / {a['adam']['gradients']:,}"),
            ("Q4 Adam optimizer state (not gradients)", f"{a['adam']['optimizer_state']:,} (2 x parameters)"),
            ("Q4 Adam optimizer state, bytes", state_line(a["adam"])),
            ("trainable parameters without batch norm", f"{a['parameters_without_bn']:,}")]
    return pd.DataFrame(rows, columns=["question", "answer"]).set_index("question")


def state_line(adam: dict) -> str:
    """Adam's state in bytes, measured from the optimizer's tensors, against 2 x the parameters' bytes."""
    if "optimizer_state_bytes" not in adam:
        return "not measured in this report"
    state, params = adam["optimizer_state_bytes"], adam["parameter_bytes"]
    return f"{state:,} bytes ({state / 2 ** 20:.1f} MiB) = {state / params:.2f} x the parameters' {params:,} bytes"


def section(records, results_dir, figures_dir=None) -> None:
    display.show(answers_table(results_dir))


def findings(df, results_dir) -> list[display.Finding]:
    a = read(results_dir)
    if not a:
        return display.not_answered(ID, QUESTIONS, "Q_model did not run in this report")
    sgd, adam = a["sgd"], a["adam"]
    source = "counted on the live model (lab.engine.model)"
    return [display.Finding("Q1", QUESTIONS[0][1], conv_line(a["conv_layers"]), source, ID),
            display.Finding("Q2", QUESTIONS[1][1], str(a["last_linear_in_features"]), source, ID),
            display.Finding("Q3", QUESTIONS[2][1], f"{sgd['parameters']:,} trainable parameters, {sgd['gradients']:,} "
                            "gradients", f"after one SGD step; momentum buffers {sgd['optimizer_state']:,}", ID),
            display.Finding("Q4", QUESTIONS[3][1], f"{adam['parameters']:,} trainable parameters, "
                            f"{adam['gradients']:,} gradients", f"after one Adam step; its state, "
                            f"{adam['optimizer_state']:,} values (2 x parameters), is not gradients; in memory: "
                            f"{state_line(adam)}", ID)]


PART = Part(ID, "Q1–Q4 — the model", QUESTIONS, (), runs, section, findings)
