"""C10: the trained ResNet-18 deployed (docs/measuring.md): each setting converted, saved and loaded back where it
has a file; its graph counted by node kind, its agreement with eager, its latency interleaved, its throughput."""
from __future__ import annotations

import copy
import math
import os
import re
import statistics
import sys
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import torch
from torch._inductor import config as inductor_config
from torch._inductor.utils import run_and_get_code

from ..core import extras, files, results, stats, timing
from ..core.words import percent
from ..data import cifar10
from .fast import c_compiler, others_load
from .interleave import abba
from .memory import EpochMemory
from .model import resnet18
from .records import cpu_name
from .resolve import compute_precision, device_type


@dataclass(frozen=True)
class Setting:
    name: str
    how: str = "eager"  # eager | script | trace | freeze | aoti | compile | onnx
    amp: str = "off"  # "bf16": autocast around the call
    channels_last: bool = False
    mode: str | None = None  # torch.compile's mode (None: default)
    devices: tuple = ("cpu", "cuda")
    heavy: bool = False  # compiles with inductor (tens of seconds on 2 cores): a quick profile leaves it out
    weights: str = "fp32"  # "bf16": converted once (model.to(torch.bfloat16)), the input cast per call; "int8": PT2E
    freezing: bool = False  # inductor's freezing (weights folded and prepacked as constants): compile and aoti

    @property
    def compiles(self) -> bool:
        """Builds kernels with inductor (a C++ compiler needed, seconds to minutes here)."""
        return self.how in ("aoti", "compile")


BASELINE = "eager fp32"
SETTINGS = [
    Setting(BASELINE),
    Setting("TorchScript scripted", "script"),
    Setting("TorchScript traced", "trace"),
    Setting("TorchScript frozen", "freeze"),
    Setting("AOTInductor frozen fp32", "aoti", heavy=True, freezing=True),
    Setting("torch.compile", "compile", heavy=True),
    Setting("eager bf16 autocast", amp="bf16"),
    Setting("eager channels_last", channels_last=True),
    Setting("torch.compile reduce-overhead", "compile", mode="reduce-overhead", devices=("cuda",), heavy=True),
    Setting("channels_last + bf16 + reduce-overhead", "compile", "bf16", True, "reduce-overhead", ("cuda",), True),
    Setting("eager bf16 weights", channels_last=True, weights="bf16"),
    Setting("TorchScript frozen bf16 weights", "freeze", channels_last=True, weights="bf16"),
    Setting("Inductor frozen fp32", "compile", freezing=True),
    Setting("Inductor frozen bf16 weights", "compile", channels_last=True, weights="bf16", freezing=True),
    Setting("int8 PT2E (torchao)", "compile", devices=("cpu",), weights="int8", freezing=True),
    Setting("ONNX Runtime fp32", "onnx"),
    Setting("AOTInductor frozen bf16 weights", "aoti", channels_last=True, heavy=True, weights="bf16", freezing=True),
    Setting("AOTInductor int8", "aoti", devices=("cpu",), heavy=True, weights="int8", freezing=True),
]
CALIBRATION = 64  # training images int8's activation ranges are observed on (docs/measuring.md)


def devices(device: str) -> list[str]:
    """The CPU, and CUDA where the node has it and `device` (a configuration's: auto, cuda, cuda:1...) allows it."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() and device_type(device) == "cuda" else [])


def settings_for(device, heavy: bool = True, names=None, inductor: bool = True) -> list[Setting]:
    """The settings that run on `device`; heavy=False leaves out AOTInductor's packages and torch.compile's default
    modes, inductor=False every setting inductor compiles."""
    kind = torch.device(device).type
    return [s for s in SETTINGS if kind in s.devices and (heavy or not s.heavy) and (names is None or s.name in names)
            and (inductor or not s.compiles)]


# Agreement with eager, logit by logit: |logit - eager logit| <= atol + rtol * |eager logit|, (atol, rtol) =
# TOLERANCES[precision]; CUDA's "fp32" convolutions run in TF32 where cuDNN allows it (resolve.compute_precision).
# Each correct conversion measured here used at most a tenth of its bound (docs/measuring.md); bf16 weights (rounded
# once, not per call as autocast) up to 0.23 of it on C2's model. int8 is lossy: no bound is 10x above a correct
# conversion and below a broken one. Measured here: C2's ResNet-18 (quick report, logits to 139) at 0.39 of this bound,
# the tests' small models at 0.04 and 0.1; a convolution's weights 10 % off at 27x, calibration on images 100x too wide
# at 2x (tests/test_deploy.py). Its top-1 agreement with eager is always shown beside it.
INT8_BOUND = (0.2, 0.2)
TOLERANCES = {"fp32": (1e-4, 1e-4), "tf32": (0.1, 0.02), "bf16": (0.4, 0.08), "int8": INT8_BOUND}
BN_IMAGES = 1024  # training images the deployed model's batch-norm statistics are estimated over


@dataclass
class Converted:
    """One setting, converted: the callable (None where it failed) and what the conversion cost."""
    name: str
    status: str = "ok"  # ok | failed
    reason: str = ""  # one line where it failed
    fn: Callable | None = field(default=None, repr=False)
    precision: str = "fp32"
    convert_s: float | None = None  # to a ready callable (torch.compile: its first, compiling call)
    file: str | None = None
    file_bytes: int | None = None
    load_s: float | None = None
    first_call_s: float | None = None
    batch: str = "any"  # AOTInductor: "dynamic 1-N" or "static N" (then one package per batch size)
    note: str = ""
    warnings: list = field(default_factory=list)  # distinct warnings of the conversion and first call
    graphs: dict = field(default_factory=dict, repr=False)  # label -> graph_summary
    kernels: dict = field(default_factory=dict, repr=False)  # what runs, counted (kernel_counts, weight_counts)
    ran_as_said: bool = True  # False: an int8 or bf16-weights setting whose timed artifact computes in fp32
    latency_s: float | None = None  # batch 1, all threads: the median of its blocks' medians (measure sets it)

    def row(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("fn", "graphs", "kernels")}


def _one_line(error) -> str:
    """An exception's or a warning's type and the first line of its message."""
    error = getattr(error, "message", error)  # a recorded warning
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"[:300]


def _wrap(module, setting: Setting, device: torch.device):
    """The module called as the setting says: channels_last input, bf16 autocast or bf16 input, a new CUDA graph
    step, inductor's freezing (read when a call compiles: a new batch size recompiles, so every call sets it;
    torch.compile's options={"freezing": True} is ignored on torch 2.14.1, docs/measuring.md)."""
    if (setting.amp, setting.weights, setting.channels_last, setting.mode, setting.freezing) == (
            "off", "fp32", False, None, False):
        return module

    def call(x):
        if setting.mode == "reduce-overhead":  # outputs of the previous replay may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()
        if setting.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (torch.autocast(device.type, torch.bfloat16, enabled=setting.amp == "bf16"),
              inductor_config.patch(freezing=True) if setting.freezing else nullcontext()):
            return module(x.to(torch.bfloat16) if setting.weights == "bf16" else x)
    return call


JIT = {"script": "scripted", "trace": "traced", "freeze": "frozen + optimized"}  # how -> its graph's label


def _write_graph(base: Path, graph, code: str) -> dict:
    """The graph and its code written beside the converted file; its graph_summary."""
    base.with_suffix(".code.txt").write_text(code)
    base.with_suffix(".graph.txt").write_text(str(graph))
    return graph_summary(graph)


class Served(torch.nn.Module):
    """What an AOTInductor package holds: the model and its input's casts (channels_last, bf16), its output as fp32,
    so that a package is called the same way from Python and from C++ (fp32 NCHW in, fp32 logits out)."""

    def __init__(self, model: torch.nn.Module, setting: Setting):
        super().__init__()
        self.model, self.channels_last, self.bf16 = model, setting.channels_last, setting.weights == "bf16"

    def forward(self, x):
        x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        return self.model(x.to(torch.bfloat16) if self.bf16 else x).float()


def _build(model, setting: Setting, example, base: Path, result: Converted, max_batch: int, device, calibration):
    """The converted module (AOTInductor's and ONNX's: None, their file is result.file). Freezing needs no_grad
    (compile_fx freezes only then): `convert` builds under it."""
    if setting.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if setting.weights == "bf16":
        model = model.to(torch.bfloat16)
        example = example if setting.how == "aoti" else example.to(torch.bfloat16)
    if setting.how == "eager":
        result.kernels = weight_counts(model.parameters())
        return model
    if setting.how in JIT:
        module = torch.jit.trace(model, example) if setting.how == "trace" else torch.jit.script(model)
        return torch.jit.freeze(module) if setting.how == "freeze" else module
    if setting.how == "onnx":
        result.file, result.note = str(base.with_suffix(".onnx")), _export_onnx(model, example, str(base) + ".onnx")
        return None
    if setting.weights == "int8":
        model = quantize(_export(model, example, max_batch, result).module(), calibration)
        result.graphs["int8 (PT2E)"] = _write_graph(base, model.graph, model.code)
    if setting.how == "aoti":
        program = _export(Served(model, setting), example, max_batch, result)
        result.graphs["exported"] = _write_graph(base, program.graph, program.graph_module.code)
        result.file = torch._inductor.aoti_compile_and_package(program, package_path=str(base) + ".pt2",
                                                               inductor_configs={"freezing": setting.freezing})
        code = package_code(result.file)  # the code counted is the code loaded and timed
        base.with_suffix(".wrapper.cpp.txt").write_text(code)
        result.kernels = kernel_counts(code)
        return None
    # options' freezing sets nothing on torch 2.14.1 (the patch at each call does: _wrap), but it makes the backend
    # another: dynamo shares compiled code between instances of one module class whose backends match, and Inductor
    # frozen fp32 ran torch.compile's unfrozen graph (measured: 16.4 ms both, against 8.4 ms on its own backend)
    compiled = torch.compile(model, **({"options": {"freezing": True}} if setting.freezing else {"mode": setting.mode}))
    module = _wrap(compiled, setting, device)  # compile: its first call converts
    with torch.inference_mode():  # at batch 1, the latency's: the code counted is the code timed
        code = "\n".join(run_and_get_code(module, example[:1])[1])
    base.with_suffix(".inductor.py.txt").write_text(code)
    result.kernels = kernel_counts(code)
    return module


def package_code(path) -> str:
    """The C++ wrapper AOTInductor generated into a package (the calls its model .so makes, its constants)."""
    with zipfile.ZipFile(path) as package:
        return "\n".join(package.read(n).decode() for n in package.namelist() if n.endswith(".wrapper.cpp"))


def quantize(module: torch.fx.GraphModule, calibration: torch.Tensor) -> torch.fx.GraphModule:
    """torchao's PT2E static int8 (X86InductorQuantizer's default config) of an exported module, its activation
    ranges observed on `calibration`."""
    pt2e = extras.need("torchao.quantization.pt2e.quantize_pt2e")
    x86 = extras.need("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer")
    prepared = pt2e.prepare_pt2e(module, x86.X86InductorQuantizer().set_global(
        x86.get_default_x86_inductor_quantization_config()))
    for batch in calibration.split(32):
        prepared(batch)
    return pt2e.convert_pt2e(prepared)


def _export_onnx(model, example, path: str) -> str:
    """The model as an ONNX file with a dynamic batch: torch's recommended exporter (dynamo=True), the legacy
    TorchScript-based one where it fails; which, said."""
    extras.need("onnx")
    try:
        extras.need("onnxscript")
        torch.onnx.export(model, (example,), path, dynamo=True, external_data=False, verbose=False,
                          input_names=["x"],
                          dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},))
        return "exported with torch.onnx.export(dynamo=True)"
    except Exception as exc:  # noqa: BLE001 - the legacy exporter is the fallback, its reason said
        torch.onnx.export(model, (example,), path, dynamo=False, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
        return f"dynamo=True failed ({_one_line(exc)}): exported with the legacy dynamo=False"


class OnnxRuntime:
    """An ONNX file run by ONNX Runtime (the CPU provider; CUDA's on a CUDA device): one session per torch thread
    count, made at its first call there, intra_op_num_threads = torch.get_num_threads() (C10's latency blocks set
    it), so that it computes on as many threads as the torch settings it is timed against."""

    def __init__(self, path: str, device: torch.device):
        self.ort, self.path, self.device, self.sessions = extras.need("onnxruntime"), path, device, {}
        self.provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
        if self.provider not in self.ort.get_available_providers():
            raise RuntimeError(f"onnxruntime has no {self.provider} here")

    def session(self):
        n = torch.get_num_threads()
        if n not in self.sessions:
            options = self.ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = n, 1
            self.sessions[n] = self.ort.InferenceSession(self.path, options, providers=[self.provider])
        return self.sessions[n]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        session = self.session()
        out = session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(out).to(self.device)


CONV = re.compile(r"(torch\.ops\.onednn\.qconv\w*|torch\.ops\.mkldnn\._convolution\w*|extern_kernels\.convolution|"
                  r"torch\.ops\.aten\.convolution|aoti_torch_cpu_(?:_qconv|mkldnn__convolution|convolution)\w*)"
                  r"(?:\.\w+)?\(")  # a call (in-place ones too), not a comment; the last: AOTInductor's C++ shims
CONSTANT = re.compile(r"^_frozen_param\d+ = None  # device\(type='\w+'\) torch\.(\w+) \((?:\d+, ){3}\d+\)", re.M)
PACKAGED = re.compile(r"constants_info_\[(\d+)\]\.(dtype|shape) = (?:cached_torch_dtype_)?([^;]*);")  # AOTInductor's


def kernel_counts(code: str) -> dict[str, int]:
    """In the code inductor generated (torch.compile's Python, AOTInductor's C++ wrapper): the convolution calls,
    quantized (onednn qconv) or not, and the 4-d frozen constants (the convolutions' weights) by dtype: "qconv",
    "conv", "conv weights <dtype>"."""
    calls = Counter("qconv" if "qconv" in op else "conv" for op in CONV.findall(code))
    packaged = {}
    for i, what, value in PACKAGED.findall(code):
        packaged.setdefault(i, {})[what] = value
    dtypes = CONSTANT.findall(code) + [c.get("dtype") for c in packaged.values() if c.get("shape", "").count(",") == 3]
    weights = Counter(f"conv weights {DTYPES.get(d, d)}" for d in dtypes)
    return {"qconv": calls["qconv"], "conv": calls["conv"], **weights}


DTYPES = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8", "uint8": "uint8"}


def weight_counts(tensors) -> dict[str, int]:
    """The 4-d tensors (convolution weights) by dtype, as kernel_counts names them."""
    return dict(Counter(f"conv weights {DTYPES.get(str(t.dtype)[6:], t.dtype)}" for t in tensors if t.dim() == 4))


def jit_constants(graph):
    """A frozen TorchScript graph's tensor constants (its weights, folded in)."""
    for node in _jit_nodes(graph.nodes()):
        if node.kind() == "prim::Constant" and isinstance(node.output().type(), torch.TensorType):
            yield node.output().toIValue()


def runs_as_said(setting: Setting, kernels: dict) -> bool:
    """False where what was counted says an int8 setting has no quantized convolution, or a bf16-weights one has no
    bf16 convolution weight (nothing counted: nothing said; autocast keeps fp32 weights, cast at each call)."""
    if setting.weights == "int8":
        return kernels.get("qconv", 0) > 0
    if setting.weights == "bf16" and any(k.startswith("conv weights") for k in kernels):
        return kernels.get("conv weights bf16", 0) > 0
    return True


def _load(setting: Setting, result: Converted, device):
    if setting.how == "aoti":
        return torch._inductor.aoti_load_package(result.file)
    if setting.how == "onnx":
        module = OnnxRuntime(result.file, device)
        module.session()
        return module
    module = torch.jit.load(result.file, map_location=device)
    if setting.how == "freeze":
        # optimize_for_inference's CPU graph (MKLDNN tensors) is not loadable from a file on torch 2.14.1
        # ("required keyword attribute 'value' is undefined"): the frozen module is saved, optimized once loaded
        module = torch.jit.optimize_for_inference(module)
        result.note = "optimize_for_inference applied after loading (in load_s)"
    return module


def convert(model: torch.nn.Module, setting: Setting, example: torch.Tensor, out_dir, device,
            max_batch: int = 1024, calibration: torch.Tensor | None = None) -> Converted:
    """`model` converted as `setting` says, saved into out_dir and loaded back; an exception: status failed, its
    reason. `example` (batch >= 2 for a dynamic batch) is the tracing/export input; `calibration` (default: the
    example) the images int8 observes."""
    device, base = torch.device(device), Path(out_dir) / re.sub(r"[^a-z0-9]+", "-", setting.name.lower()).strip("-")
    base.parent.mkdir(parents=True, exist_ok=True)
    result = Converted(setting.name, precision="int8" if setting.weights == "int8" else compute_precision(
        device, "bf16" if setting.weights == "bf16" else setting.amp))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if setting.compiles and c_compiler() is None:
                raise RuntimeError("no C++ compiler ($CXX, c++, g++, clang++): inductor builds its kernels with one")
            model = copy.deepcopy(model).eval().to(device)  # channels_last changes a model in place
            example = example.to(device)
            start = timing.now(device)
            with torch.no_grad():
                module = _build(model, setting, example, base, result, max_batch, device,
                                example if calibration is None else calibration.to(device))
            result.convert_s = timing.now(device) - start
            if setting.how in JIT:
                if setting.how == "freeze":
                    result.graphs[graph_label(setting, "frozen")] = graph_summary(module.graph)
                    result.kernels = weight_counts(jit_constants(module.graph))
                result.file = str(base.with_suffix(".pt"))
                torch.jit.save(module, result.file)
            if result.file:
                result.file_bytes = Path(result.file).stat().st_size
                start = timing.now(device)
                module = _load(setting, result, device)
                result.load_s = timing.now(device) - start
            if setting.how in JIT:
                graph = module.graph if setting.how == "freeze" else module.inlined_graph
                result.graphs[graph_label(setting, JIT[setting.how])] = _write_graph(base, graph, module.code)
            fn = module if setting.how in ("aoti", "compile", "onnx") else _wrap(module, setting, device)
            with torch.inference_mode():
                start = timing.now(device)
                fn(example[:1])  # at batch 1, the latency's
                result.first_call_s = timing.now(device) - start
            result.fn, result.ran_as_said = fn, runs_as_said(setting, result.kernels)
            if not result.ran_as_said:
                result.note = (result.note + "; " if result.note else "") + (
                    "ran in fp32: no quantized convolution in the code that is timed" if result.precision == "int8"
                    else "ran in fp32: no bf16 convolution weights")
        except Exception as exc:  # noqa: BLE001 - a failed setting is a row of the table, not the end of the part
            result.status, result.reason, result.fn = "failed", _one_line(exc), None
    result.warnings = list(dict.fromkeys(map(_one_line, caught)))[:5]
    return result


def _export(model, example, max_batch: int, result: Converted):
    """torch.export with a dynamic batch dimension; where that fails, a static one (one package per batch)."""
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        result.batch = f"dynamic 1-{max_batch}"
    except Exception as exc:  # noqa: BLE001
        program = torch.export.export(model, (example,))
        result.batch, result.note = f"static {example.shape[0]}", f"dynamic batch failed: {_one_line(exc)}"
    return program


def graph_label(setting: Setting, label: str) -> str:
    return label + (" (bf16)" if setting.weights == "bf16" else "")


def convert_all(model, settings, example, out_dir, device, **kwargs) -> dict[str, Converted]:
    return {s.name: convert(model, s, example, out_dir, device, **kwargs) for s in settings}


# --- graphs -----------------------------------------------------------------------------------------

def _jit_nodes(nodes):
    for node in nodes:
        yield node
        for block in node.blocks():
            yield from _jit_nodes(block.nodes())


def graph_summary(graph) -> dict[str, int]:
    """Nodes by kind, most frequent first: a TorchScript graph's (nested blocks included) or an FX graph's."""
    if isinstance(graph, torch.fx.Graph):
        kinds = (str(n.target) if n.op == "call_function" else n.op for n in graph.nodes)
    else:
        kinds = (n.kind() for n in _jit_nodes(graph.nodes()))
    return dict(Counter(kinds).most_common())


def _count(summary: dict, word: str) -> int:
    return sum(n for kind, n in summary.items() if word in kind)


def describe_changes(before: dict, after: dict, before_name: str = "before", after_name: str = "after") -> list[str]:
    """What differs between two graph summaries, in sentences from the counts alone."""
    lines = [f"{after_name}: {sum(after.values())} nodes, {before_name}: {sum(before.values())}"]
    bn_before, bn_after, convs = _count(before, "batch_norm"), _count(after, "batch_norm"), _count(after, "conv")
    if bn_before and not bn_after and convs:
        lines.append(f"batch norm folded into the convolutions: {bn_before} batch_norm nodes -> 0, "
                     f"{convs} convolutions")
    if before.get("prim::GetAttr") and not after.get("prim::GetAttr"):
        lines.append(f"parameters inlined as constants: {before['prim::GetAttr']} prim::GetAttr -> 0")
    for kind, what in (("prim::If", "control flow"), ("prim::Loop", "loops"), ("prim::CallMethod", "method calls"),
                       ("prim::RaiseException", "checks that raise")):
        b, a = before.get(kind, 0), after.get(kind, 0)
        if bool(b) != bool(a):
            has, lacks, n = (before_name, after_name, b) if b else (after_name, before_name, a)
            lines.append(f"{has} keeps {what} ({n} {kind}), {lacks} has none")
    new = [f"{k} x{n}" for k, n in after.items() if k not in before]
    gone = [f"{k} x{n}" for k, n in before.items() if k not in after]
    changed = [f"{k} {before[k]} -> {after[k]}" for k in after if k in before and before[k] != after[k]]
    for label, items in ((f"only in {after_name}", new), (f"only in {before_name}", gone), ("counts changed", changed)):
        if items:
            more = f" and {len(items) - 8} more" if len(items) > 8 else ""
            lines.append(f"{label}: " + ", ".join(items[:8]) + more)
    return lines


GRAPHS = ("scripted", "traced", "frozen", "frozen + optimized", "frozen (bf16)", "frozen + optimized (bf16)",
          "exported", "int8 (PT2E)")  # the graphs' labels, in C10's order


def nodes_table(summaries: dict[str, dict[str, int]], top: int = 12) -> pd.DataFrame:
    """Nodes by kind (rows) in each graph (columns): the `top` most frequent kinds, the rest summed, all."""
    if not summaries:
        return pd.DataFrame()
    table = pd.DataFrame(summaries).fillna(0).astype(int)
    table = table.loc[table.sum(axis=1).sort_values(ascending=False).index]
    shown = table.head(top)
    if len(table) > top:
        shown.loc[f"other kinds ({len(table) - top})"] = table.iloc[top:].sum()
    shown.loc["all nodes"] = table.sum()
    return shown[[g for g in GRAPHS if g in shown.columns]]


def graphs_in_a_line(summaries: dict[str, dict[str, int]]) -> str:
    """What the graphs show, in a line, counted: scripted against traced, and what freezing changed."""
    def count(label, kind):
        return summaries.get(label, {}).get(kind, 0)
    parts = []
    if "scripted" in summaries and "traced" in summaries:
        parts.append(f"scripted {sum(summaries['scripted'].values())} nodes, with the model's control flow "
                     f"({count('scripted', 'prim::If')} prim::If), traced {sum(summaries['traced'].values())}, flat "
                     f"({count('traced', 'prim::If')} prim::If)")
    if "scripted" in summaries and "frozen" in summaries:
        parts.append(f"freezing folds batch norm into the convolutions ({count('scripted', 'aten::batch_norm')} → "
                     f"{count('frozen', 'aten::batch_norm')} batch_norm nodes) and inlines the parameters "
                     f"({count('scripted', 'prim::GetAttr')} → {count('frozen', 'prim::GetAttr')} prim::GetAttr)")
    return "; ".join(parts) or "no TorchScript graph in this report"


def graph_changes(summaries: dict[str, dict[str, int]]) -> list[str]:
    """What scripting against tracing, freezing and optimizing changed, in Markdown (describe_changes)."""
    pairs = (("scripted", "traced"), ("scripted", "frozen"), ("frozen", "frozen + optimized"))
    changes = {(a, b): describe_changes(summaries[a], summaries[b], a, b) for a, b in pairs
               if a in summaries and b in summaries}
    return [f"**{a} → {b}** (counted from the graphs): " + "; ".join(c) + "." for (a, b), c in changes.items() if c]


# --- accuracy --------------------------------------------------------------------------------------

def trained_model(results_dir) -> tuple[torch.nn.Module, str]:
    """The trained model a part saved in this report (its row "model_file"), or a fresh one; and which it is."""
    model, saved = resnet18().eval(), results.read(results_dir, metric="model_file")
    if not len(saved) or not (Path(results_dir) / saved["text"].iloc[-1]).exists():
        return model, "a freshly initialised ResNet-18 (C2 did not save its trained model in this report)"
    path, part = saved["text"].iloc[-1], saved["part"].iloc[-1]
    try:
        model.load_state_dict(torch.load(Path(results_dir) / path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - truncated, not a state dict, another model's: one line, no traceback
        raise files.BadFile(Path(results_dir) / path, f"is not the lab's ResNet-18 weights ({_one_line(exc)[:120]})",
                            way_out=f"run {part} again, or make the report again (`--new`)") from None
    return model, f"{part.split('_')[0]}'s trained ResNet-18 ({path})"


def test_images(config, n: int | None, train: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` test images of `config`'s data set (all where None; `train`: training images), with the lab's
    test transform (no augmentation)."""
    dataset = cifar10.load_dataset(config, train=train, transform=cifar10.test_transform(),
                                   log=lambda msg: print(msg, file=sys.stderr))
    n = len(dataset) if n is None else min(n, len(dataset))
    pairs = [dataset[i] for i in range(n)]
    return torch.stack([x for x, _ in pairs]), torch.tensor([y for _, y in pairs])


def evaluate(fn, data: tuple[torch.Tensor, torch.Tensor], n: int, device, batch_size: int = 256):
    """Float logits (on the CPU) and labels of the first `n` of (images, labels), in batches of `batch_size`."""
    xs, ys = data
    with torch.inference_mode():
        logits = [fn(x.to(device)).float().cpu() for x in xs[:n].split(batch_size)]
    return torch.cat(logits), ys[:n].cpu()


def agreement(eager_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 with its 95 % Wilson interval, max |logit - eager logit| (inf where not finite), same predictions."""
    eager, logits = eager_logits.float(), logits.float()
    pred, n = logits.argmax(1), len(labels)
    top1 = (pred == labels).float().mean().item()
    low, high = stats.wilson(top1, n)
    diff = (logits - eager).abs().max().item() if torch.isfinite(logits).all() else float("inf")
    return {"n": n, "top1": top1, "top1_low": low, "top1_high": high, "max_abs_diff": diff,
            "same_prediction": (pred == eager.argmax(1)).float().mean().item()}


def worst_of_bound(eager_logits: torch.Tensor, logits: torch.Tensor, precision: str) -> float:
    """The largest |logit - eager logit| / (atol + rtol * |eager logit|) over every logit, TOLERANCES[precision]:
    1 or less agrees; inf where a logit is not finite."""
    atol, rtol = TOLERANCES[precision]
    eager, logits = eager_logits.float(), logits.float()
    if not torch.isfinite(logits).all():
        return math.inf
    return ((logits - eager).abs() / (atol + rtol * eager.abs())).max().item()


def bound(atol: float, rtol: float) -> str:
    """'0.0001 + 0.0001·|eager|': a logit's bound on its |diff| from eager's."""
    return f"{atol:g} + {rtol:g}·|eager|"


def within_tolerance(eager_logits: torch.Tensor, logits: torch.Tensor, precision: str) -> tuple[bool, str]:
    """Whether every logit agrees with eager's within TOLERANCES[precision], and the numbers that say so."""
    worst = worst_of_bound(eager_logits, logits, precision)
    said = f"the worst logit at {stats.sig(worst)} of its bound" if math.isfinite(worst) else "a logit not finite"
    return worst <= 1, f"|diff| ≤ {bound(*TOLERANCES[precision])} ({precision}): {said}"


def estimate_batch_norm(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.nn.Module:
    """A copy of `model` whose batch-norm statistics are the average over `images` (torch.optim.swa_utils.update_bn:
    momentum None, train mode, no gradients), its weights untouched. A model trained for a few steps keeps running
    statistics from those steps alone: its eval logits can reach 10^5, where any tolerance relative to them is
    loose."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        torch.optim.swa_utils.update_bn(images.split(batch_size), model)
    return model.eval()


# --- latency and throughput ------------------------------------------------------------------------

MIN_BEYOND = 10  # a percentile is given only where at least this many calls lie beyond it


def time_calls(fn, x, calls: int, device, clock=timing.now, copy_input: bool = False) -> list[float]:
    """Each call's seconds (`clock`: lab.core.timing.now); with copy_input, the host-to-device copy is timed too."""
    device = torch.device(device)
    times = []
    with torch.inference_mode():
        for _ in range(calls):
            start = clock(device)
            fn(x.to(device) if copy_input else x)
            times.append(clock(device) - start)
    return times


def percentiles(times) -> dict:
    """n, p50, p90, p99 (nearest rank) and mean; a percentile is None unless MIN_BEYOND calls lie beyond it."""
    ordered, n = sorted(times), len(times)
    out = {"n": n}
    for p in (50, 90, 99):
        rank = -(-p * n // 100)
        out[f"p{p}"] = ordered[rank - 1] if n - rank >= MIN_BEYOND else None
    out["mean"] = statistics.fmean(ordered) if n else None
    return out


def interleaved_latency(settings: dict, make_input, blocks: int, calls_per_block: int, device, warmup: int = 5,
                        copy_input: bool = False, clock=timing.now, measure_load: bool = True) -> dict:
    """Per callable, after `warmup` calls each, ABBA blocks of calls: every call's seconds, each block's median (the
    comparison rule's samples) and percentiles. `make_input()` gives a host batch, new each block."""
    device, names = torch.device(device), list(settings)
    load = others_load() if measure_load else None
    stage = (lambda x: x) if copy_input else (lambda x: x.to(device))
    x = stage(make_input())
    failed = {}  # a setting whose warm-up fails (dynamo's recompile limit, say) is left out of the blocks, said
    for name in list(names):
        try:
            time_calls(settings[name], x, warmup, device, clock, copy_input)
        except Exception as exc:  # noqa: BLE001 - the other settings are still timed
            failed[name] = _one_line(exc)
            names.remove(name)
    times, medians, ran = {k: [] for k in names}, {k: [] for k in names}, []
    for order in abba(names, blocks):
        x = stage(make_input())
        for name in order:
            block_times = time_calls(settings[name], x, calls_per_block, device, clock, copy_input)
            times[name] += block_times
            medians[name].append(statistics.median(block_times))
            ran.append(name)
    return {"settings": {k: {"times": times[k], "block_medians": medians[k], **percentiles(times[k])} for k in names},
            "order": ran, "copy_input_timed": copy_input, "threads": torch.get_num_threads(), "device": str(device),
            "others_load": load, "blocks": blocks, "calls_per_block": calls_per_block, "warmup": warmup,
            "failed": failed}


def throughput(fn, x: torch.Tensor, device, calls: int = 10, warmup: int = 2, clock=timing.now) -> dict:
    """Images per second at x's batch size (the calls timed as one stretch) and the peak memory over them."""
    device = torch.device(device)
    x = x.to(device)
    time_calls(fn, x, warmup, device, clock)
    memory = EpochMemory(device).start()
    with torch.inference_mode():
        start = clock(device)
        for _ in range(calls):
            fn(x)
        seconds = clock(device) - start
    peak = memory.stop()
    cuda = device.type == "cuda"
    return {"batch": len(x), "calls": calls, "seconds": seconds,
            "images_per_s": len(x) * calls / seconds if seconds > 0 else None,
            "peak_bytes": peak["cuda_peak_allocated_bytes"] if cuda else peak["host_peak_rss_bytes"],
            "peak_how": "CUDA max_memory_allocated, reset before" if cuda
            else "process peak RSS, " + ("sampled at 10 Hz" if "sampled" in peak["host_peak_rss_how"]
                                         else "VmHWM reset before the calls"),
            "threads": torch.get_num_threads()}


def planned_images(settings: list, test_images: int, blocks: int, calls: int, batches, cpp_calls: int = 0,
                   counts: int | None = None) -> float:
    """What `measure` puts through each of `settings`, in images of a batched forward (a batch-1 call: about 1.5),
    at `counts` thread counts (default: this machine's), with its share of `cpp_calls` (cpp.planned_calls)."""
    return (test_images + 1.5 * blocks * calls * (counts or len(thread_counts())) + sum(5 * b for b in batches)
            + 1.5 * cpp_calls / max(1, len(settings)))


def thread_counts() -> list[int]:
    """1 thread and all the cores this process may use."""
    return sorted({1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1})


@contextmanager
def threads(n: int):
    """Run the block with `n` torch threads, restoring the count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


# --- a device's measurements, as rows (lab.core.results; C10's section reads them) ----------------------------

UNITS = {"convert_s": "s", "load_s": "s", "first_call_s": "s", "file_bytes": "bytes", "top1": "fraction",
         "top1_low": "fraction", "top1_high": "fraction", "same_prediction": "fraction", "max_abs_diff": "logit",
         "largest_logit": "logit", "worst_of_bound": "ratio", "within_tolerance": "bool", "atol": "logit",
         "rtol": "ratio", "images_per_s": "images/s", "peak_bytes": "bytes", "ran_as_said": "bool"}
LATENCY = {"calls": "latency_calls", **{k: f"latency_{k}_s" for k in ("p50", "p90", "p99", "mean")}}


def latency_rows(rows, s: dict, **setting) -> list[dict]:
    """A setting's batch-1 calls as rows: each block's median (a sample of the rule), then LATENCY's summary."""
    return ([rows.row("latency_block_median_s", v, "s", sample=i, **setting) for i, v in enumerate(s["block_medians"])]
            + [rows.row(metric, s["n" if k == "calls" else k], "calls" if k == "calls" else "s", **setting)
               for k, metric in LATENCY.items()])


# The compiled settings share one forward's code object, whose guards recompile it per batch size and thread count:
# dynamo's default limit of 8 compilations was hit at the 2-thread latency of the full profile's settings, and the
# setting then ran eager without saying so (Inductor frozen bf16 weights 5.2 ms at 2 threads against 2.9 at 1). A
# higher limit, and a limit hit is an error, never a silent fallback.
@torch._dynamo.config.patch(recompile_limit=64, fail_on_recompile_limit_hit=True)
def measure(rows, model, data: tuple[torch.Tensor, torch.Tensor], out_dir, heavy: bool, blocks: int, calls: int,
            batches, note=print, calibration: torch.Tensor | None = None,
            inductor: bool = True) -> dict[str, Converted]:
    """One device's measurements as rows of `rows` (scoped to the device), docs/results.md; the settings timed:
    those inside their bound that run as they say (Converted.ran_as_said). `calibration`: int8's images."""
    device, (xs, ys) = rows.defaults["device"], data
    settings = settings_for(device, heavy, inductor=inductor)
    rows.extend([rows.row("device_name", text=torch.cuda.get_device_name() if device == "cuda" else cpu_name())]
                + [rows.row("left_out", text="compile_settings: false", setting=s.name) for s in SETTINGS
                   if device in s.devices and s.heavy and s not in settings])
    converted = {}
    for s in settings:
        note(f"{device}: converting {s.name}")
        converted[s.name] = convert(model, s, xs[:2], out_dir, device, calibration=calibration)
    eager_logits, _ = evaluate(converted[BASELINE].fn, data, len(ys), device)
    timed = {}
    for name, c in converted.items():
        one, measured = rows.scoped(setting=name, precision=c.precision), c.row()
        if c.status == "ok":
            note(f"{device}: {name}: {len(ys)} test images")
            logits, labels = evaluate(c.fn, data, len(ys), device)
            worst, (atol, rtol) = worst_of_bound(eager_logits, logits, c.precision), TOLERANCES[c.precision]
            measured.update(agreement(eager_logits, logits, labels), largest_logit=eager_logits.abs().max().item(),
                            worst_of_bound=worst, within_tolerance=worst <= 1, atol=atol, rtol=rtol)
            if worst <= 1 and c.ran_as_said:
                timed[name] = c
        one.extend([one.row(k, v, UNITS[k]) for k, v in measured.items() if k in UNITS]
                   + [one.row(k, text=measured[k]) for k in ("status", "reason", "note", "file")
                      if measured.get(k)] + [one.row("batch_sizes", text=c.batch)]
                   + [one.row("warning", text=w, sample=i) for i, w in enumerate(c.warnings)]
                   + [one.row("nodes", n, "nodes", graph=g, kind=k) for g, kinds in c.graphs.items()
                      for k, n in kinds.items()]
                   + [one.row("kernels", n, "kernels", kind=k) for k, n in c.kernels.items()])
    for n in (thread_counts() if torch.device(device).type == "cpu" else [torch.get_num_threads()]):
        note(f"{device}: batch-1 latency at {stats.plural(n, 'thread')}, {stats.plural(blocks, 'block')}")
        with threads(n):
            lat = interleaved_latency({k: c.fn for k, c in timed.items()}, lambda: xs[:1].clone(), blocks, calls,
                                      device)
        for k, s in lat["settings"].items():  # the last count is all the threads: C++'s (lab.engine.cpp.chosen)
            timed[k].latency_s = statistics.median(s["block_medians"])
        rows.extend([rows.row("latency_failed", text=why, setting=k, threads=n) for k, why in lat["failed"].items()])
        for k in lat["failed"]:
            timed.pop(k)  # not timed at every thread count: neither compared nor given a throughput
        rows.extend([rows.row("others_load", lat["others_load"], "fraction", threads=n)]
                    + [r for k, s in lat["settings"].items()
                       for r in latency_rows(rows, s, setting=k, threads=n, precision=timed[k].precision)])
    rows.extend([rows.row(f"latency_{k}", lat[k], unit) for k, unit in (
        ("blocks", "blocks"), ("calls_per_block", "calls"), ("warmup", "calls"), ("copy_input_timed", "bool"))])
    for name, c in timed.items():
        note(f"{device}: {name}: throughput")
        for b in batches:
            t = throughput(c.fn, xs[:1].repeat(b, 1, 1, 1), device, calls=3, warmup=2)
            at = {"setting": name, "precision": c.precision, "batch": b, "threads": t["threads"]}
            rows.extend([rows.row(k, t[k], UNITS[k], **at) for k in ("images_per_s", "peak_bytes")]
                        + [rows.row("peak_how", text=t["peak_how"], **at)])
    return timed


# --- the rows `measure` and lab.engine.cpp.measure write, read back (C10's section, findings and verdicts) ------

# a setting's rows of its conversion and its accuracy (measure)
SETTING = ("status", "convert_s", "file", "file_bytes", "load_s", "first_call_s", "batch_sizes", "note", "reason",
           "top1", "top1_low", "top1_high", "same_prediction", "max_abs_diff", "largest_logit", "worst_of_bound",
           "within_tolerance", "atol", "rtol", "ran_as_said")


def by_device(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:  # threads and batch as integers
    rows = rows.astype({"threads": "Int64", "batch": "Int64"})
    return dict(tuple(rows[rows["device"].notna()].groupby("device", sort=False)))


def settings_of(dev: pd.DataFrame) -> pd.DataFrame:
    """Per setting as Python runs it (C++'s rows name an artifact): its conversion and accuracy (SETTING)."""
    return results.wide(dev[dev["artifact"].isna()], ["setting", "precision"], SETTING).reset_index("precision")


def artifacts_of(dev: pd.DataFrame) -> pd.DataFrame:
    """Per artifact C++ loaded (by its setting): why it could not run, or its logits' agreement with Python's."""
    return results.wide(dev[dev["artifact"].notna()], ["setting"], ("reason", "worst_of_bound", "within_tolerance",
                                                                    "tolerance"))


def latency_of(dev: pd.DataFrame, cpp_side: bool = False, family: dict | None = None) -> pd.DataFrame:
    """Per setting, thread count and precision (C++'s: setting and side): LATENCY's columns, "factor" (the baseline's
    p50 over its own: eager fp32 at the same thread count, C++'s: Python) and "claim" (in `family`, else claims_of)."""
    mine = dev[dev["side"].notna() if cpp_side else dev["artifact"].isna()]
    index = ["setting", "side"] if cpp_side else ["setting", "threads", "precision"]
    t = results.wide(mine, index, LATENCY.values()).set_axis(list(LATENCY), axis=1)
    family = claims_of(dev, cpp_side) if family is None else family
    if cpp_side:
        keys = [(f"C++, {n}", f"Python, {n}", "s") if side == "C++" else None for n, side in t.index]
        base = [t["p50"].get((n, "Python")) for n, _ in t.index]
    else:
        eager = {th: p50 for (n, th, _), p50 in t["p50"].items() if n == BASELINE}
        keys = [(label(n, th), label(BASELINE, th), "s") for n, th, _ in t.index]
        base = [eager.get(th) for _, th, _ in t.index]
    return t.assign(factor=pd.to_numeric(pd.Series(base, index=t.index), errors="coerce") / t["p50"],
                    claim=[family.get(k) for k in keys])


def label(name: str, threads) -> str:
    return f"{name}, {stats.plural(int(threads), 'thread')}"


def claims_of(dev: pd.DataFrame, cpp_side: bool = False) -> dict:
    """One family of verdicts (a sample: a block's median): every setting against eager fp32 at each thread count,
    or (`cpp_side`) C++ against Python for each artifact."""
    medians = dev[(dev["metric"] == "latency_block_median_s") & (dev["side"].notna() == cpp_side)]
    by = ["side", "setting"] if cpp_side else ["setting", "threads"]
    groups = {(", ".join(k) if cpp_side else label(*k)): [{"s": v} for v in g["value"]]
              for k, g in medians.groupby(by, sort=False)}
    pairs = ([(f"C++, {n}", f"Python, {n}", "s") for n in medians["setting"].unique()] if cpp_side else
             [(label(n, t), label(BASELINE, t), "s") for n, t in
              medians[["setting", "threads"]].drop_duplicates().itertuples(index=False) if n != BASELINE])
    scope = "C10.5's claims together" if cpp_side else "the section's latency claims together"
    return stats.family(groups, pairs, sample="block", scope=scope) if pairs else {}


def kernels_table(dev: pd.DataFrame) -> pd.DataFrame:
    """What each setting runs, counted (kernel_counts, weight_counts): settings (rows) by kind (columns)."""
    counted = dev[dev["metric"] == "kernels"]
    if not len(counted):
        return pd.DataFrame()
    return counted.pivot_table(index="setting", columns="kind", values="value", aggfunc="first", sort=False)


def throughput_table(dev: pd.DataFrame) -> pd.DataFrame:
    """Images/s and peak memory per setting (rows) and batch size (columns: C10's fields, by batch)."""
    t = results.wide(dev, ["setting", "batch"], ("images_per_s", "peak_bytes"))
    if not len(t):
        return pd.DataFrame()
    table = pd.DataFrame({"images_per_s": t.images_per_s, "peak_bytes": t.peak_bytes.where(t.peak_bytes > 0)})
    table = table.reset_index().pivot(index="setting", columns="batch")
    table.columns = [f"{what}|batch={b}" for what, b in table.columns]
    return table


def graphs_of(dev: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Nodes by kind in each converted graph (graph_summary)."""
    nodes = dev[dev["metric"] == "nodes"]
    return {g: dict(zip(n["kind"], n["value"].astype(int).tolist())) for g, n in nodes.groupby("graph", sort=False)}


# --- C10's tables, from the rows above -------------------------------------------------------------------

def ms(value) -> float | None:
    return None if value is None or pd.isna(value) else 1000 * value


def latency_columns(t) -> dict:  # a latency table's (or row's) columns, by their rows' metrics
    return {metric: t[k] for k, metric in LATENCY.items()}


def conversions_table(dev: pd.DataFrame) -> pd.DataFrame:
    t, eager = settings_of(dev), [s.name for s in SETTINGS if s.how == "eager"]
    note = t["reason"].where(t["status"] != "ok", t["note"]).fillna("")  # a failed conversion's reason
    return pd.DataFrame({"status": t["status"], "convert_s": t["convert_s"].mask(t.index.isin(eager)),
                         "file_bytes": t["file_bytes"], "file_load_s": t["load_s"], "first_call_s": t["first_call_s"],
                         "batch_sizes": t["batch_sizes"], "note": note})


def accuracy_table(dev: pd.DataFrame) -> pd.DataFrame:
    """Per setting: top-1 and its interval, the share of top-1 predictions equal to eager's, and its logits against
    eager's: the largest |diff|, the bound on each logit's, the largest share of its bound a logit used."""
    t = settings_of(dev).dropna(subset=["top1"])
    return pd.DataFrame({"precision": t["precision"], "test top1": t["top1"], "top1_interval": [
        f"{100 * lo:.1f}–{100 * hi:.1f} %" for lo, hi in zip(t["top1_low"], t["top1_high"])],
        **t[["same_prediction", "max_abs_diff"]],
        "bound": [bound(a, r) if pd.notna(a) else None for a, r in zip(t["atol"], t["rtol"])],
        "worst_of_bound": t["worst_of_bound"], "within_tolerance": t["within_tolerance"].map({1: "yes", 0: "NO"})})


def cpp_table(dev: pd.DataFrame, family: dict) -> pd.DataFrame:
    t, rows = latency_of(dev, cpp_side=True, family=family), []
    for name, a in artifacts_of(dev).iterrows():
        if pd.notna(a["reason"]):
            rows.append({"artifact": name, "status": a["reason"]})
            continue
        cxx = t.loc[(name, "C++")]
        speed = (stats.factor(cxx["factor"]) if pd.notna(cxx["factor"]) else "") + f" ({cxx['claim'].verdict})"
        rows += [{"artifact": name, "from": side, **latency_columns(t.loc[(name, side)]),
                  "cpp_vs_python": speed if first else "", "logits_tolerance": a["tolerance"] if first else "",
                  "status": "ok"}
                 for side, first in (("C++", True), ("Python", False))]
    return pd.DataFrame(rows).set_index(["artifact", "from"]) if rows else pd.DataFrame()


def undecided(claims: list, noun: str) -> str:
    """Claims the rule left open: one by its verdict line, several by their answers and the range of what they could
    have seen (stats.verdict_line's figure)."""
    if len(claims) == 1:
        return stats.verdict_line(claims[0])
    seen = [f[1] for c in claims if (f := c.figures()) and math.isfinite(f[1])]
    could = f", could have seen {' to '.join(dict.fromkeys(map(percent, (min(seen), max(seen)))))}" if seen else ""
    return f"{'; '.join(dict.fromkeys(c.answer() for c in claims))} ({stats.plural(len(claims), noun)}{could})"


def agreement_answer(acc: pd.DataFrame) -> str:
    """C10.3's agreement in a line: the settings outside their bound, or the worst logit's share of its bound; the
    share of images whose top-1 is eager's."""
    if not len(acc):
        return "no conversion to compare"
    outside = acc.index[acc["within_tolerance"] == 0]
    worst = acc["worst_of_bound"].dropna()
    logits = (f"OUTSIDE its bound: {', '.join(outside)}" if len(outside) else
              f"every conversion's logits within their bound, the worst at {stats.sig(worst.max())} of it "
              f"({worst.idxmax()})" if len(worst) else "every conversion within its bound")
    same, fewest = acc["same_prediction"].min(), acc["same_prediction"].idxmin()
    return logits + ("; top-1 the same as eager's on every image" if same == 1 else
                     f"; top-1 the same as eager's on {same:.1%} of images in {fewest}, the fewest")
