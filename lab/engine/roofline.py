"""How far a training step is from this machine's measured limits: the peaks (FLOP/s per precision of
square matrix products and a 3×3 convolution, memory bandwidth) measured here, not read from a spec sheet;
the step's convolutions as roofline points (arithmetic intensity, achieved FLOP/s) from torch.profiler; the
operators that do no FLOPs (batch norm, ReLU, add, the optimizer) as bytes moved against the bandwidth; and
which roof binds.

The point computation (`points`) is a pure function of simple event records (`OpEvent`), so it can be
checked on a made-up profile; `layer_points` fills those records from a real one."""
from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..core import files
from ..core.extras import need
from .fast import load_class, others_load
from .flops import conv_flops, eager_copy, matmul_flops
from .loop import AMP_DTYPES, Precision, Step
from .model import resnet18
from .records import cpu_flags, cpu_name
from .resolve import compute_precision

# Kineto's start/stop lines and, without a GPU, an "ERROR ... gpuGetDeviceCount failed" that is no error
# (as lab.engine.profiling does; set KINETO_LOG_LEVEL to see them)
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

# --- measured peaks -------------------------------------------------------------------------------------

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SIZES = {"cpu": (512, 1024, 2048), "cuda": (2048, 4096, 8192)}  # square matmuls; a CPU's largest is ≥ 2048³
CONV_PROBE = {"cpu": (128, 256, 8), "cuda": (512, 256, 16)}  # a 3×3 conv: batch, channels, height=width
SECONDS = {"cpu": 7.0, "cuda": 2.0}  # per precision; the bandwidth probe gets half of it
BLOCKS = 8  # timed blocks a probe aims for within its budget
# machine_peaks' arguments for a smoke run (the test suite's reports, `bench --quick`, the GPU check's dry run):
# a fraction of a second, finite and positive, not a measurement
TINY_PROBE = {"sizes": (64, 128), "conv_shape": (4, 16, 8), "nbytes": 8 * 2**20, "seconds": 0.2}


def precisions(device) -> list[str]:
    """The precisions a device computes in: a CPU fp32 and bf16 (bf16 is measured even without bf16
    instructions, and marked emulated); CUDA fp32 (IEEE), tf32, bf16 and fp16."""
    return ["fp32", "tf32", "bf16", "fp16"] if torch.device(device).type == "cuda" else ["fp32", "bf16"]


def bf16_native() -> bool:
    """Whether this CPU has bf16 arithmetic instructions (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def _clock(device: torch.device) -> float:
    """perf_counter after the device has finished its queued work (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def sustained_rate(fn, work: float, device, seconds: float) -> float:
    """Units of `work` per second that `fn` sustains: after two warm-up calls, blocks of calls sized so that
    about BLOCKS fit in `seconds`, timed with a device sync before each clock read; the median block's rate
    (a block hit by another process is an outlier, not the answer). At least 3 blocks, or 1 where one call
    takes over a third of the budget."""
    device = torch.device(device)
    fn()
    start = _clock(device)
    fn()
    once = max(_clock(device) - start, 1e-9)
    calls = max(1, round(seconds / BLOCKS / once))
    least = 3 if 3 * once <= seconds else 1
    rates, end = [], time.perf_counter() + seconds
    while len(rates) < least or time.perf_counter() < end:
        start = _clock(device)
        for _ in range(calls):
            fn()
        rates.append(work * calls / (_clock(device) - start))
    return statistics.median(rates)


def matmul_peak(device="cpu", precision: str = "fp32", sizes=None, seconds: float | None = None,
                conv_shape=None) -> dict:
    """The best sustained rate of one precision's dense arithmetic: {"precision", "tflops" (the best over the
    shapes), "by_size" {n: TFLOP/s of an n×n·n×n torch.mm, "conv3x3": TFLOP/s of the 3×3 convolution},
    "emulated" (bf16 on a CPU without bf16 instructions)}. `seconds` is the whole precision's budget, shared
    by the shapes.

    Besides square matrix products, one 3×3 convolution (`conv_shape` = (batch, channels, height=width),
    channels_last; default CONV_PROBE, ResNet-18's layer3; () skips it): the model's layers run in the
    convolution library (oneDNN, cuDNN), not in the BLAS behind torch.mm, and the two need not agree. On
    this 2-core AMD EPYC (Zen 4), idle, torch.mm (MKL) sustained 0.17 TFLOP/s fp32 and 0.40 bf16 while the
    3×3 convolution sustained 0.24 and 0.48: a matmul-only peak would put the model's own convolutions above
    it. tf32 is fp32 tensors with CUDA's TF32 precision on (matmul and cuDNN); fp32 on CUDA is IEEE fp32."""
    device = torch.device(device)
    if precision not in precisions(device):
        raise ValueError(f"{precision} is not measured on {device.type} (precisions: {precisions(device)})")
    sizes = sizes or SIZES[device.type]
    conv_shape = CONV_PROBE[device.type] if conv_shape is None else conv_shape
    seconds = (SECONDS[device.type] if seconds is None else seconds) / (len(sizes) + bool(conv_shape))
    dtype = DTYPES[precision]
    backends = [torch.backends.cuda.matmul, torch.backends.cudnn.conv] if device.type == "cuda" else []
    before = [b.fp32_precision for b in backends]
    for backend in backends:
        backend.fp32_precision = "tf32" if precision == "tf32" else "ieee"
    try:
        by_size = {n: _matmul_tflops(n, dtype, device, seconds) for n in sizes}
        if conv_shape:
            by_size["conv3x3"] = _conv_tflops(*conv_shape, dtype, device, seconds)
    finally:
        for backend, value in zip(backends, before):
            backend.fp32_precision = value
    return {"precision": precision, "tflops": max(by_size.values()), "by_size": by_size,
            "emulated": device.type == "cpu" and precision == "bf16" and not bf16_native()}


def _matmul_tflops(n: int, dtype: torch.dtype, device: torch.device, seconds: float) -> float:
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    c = torch.empty(n, n, device=device, dtype=dtype)
    return sustained_rate(lambda: torch.mm(a, b, out=c), matmul_flops(n, n, n), device, seconds) / 1e12


def _conv_tflops(batch: int, channels: int, size: int, dtype: torch.dtype, device: torch.device,
                 seconds: float) -> float:
    cl = torch.channels_last
    x = torch.randn(batch, channels, size, size, device=device).to(dtype).contiguous(memory_format=cl)
    w = torch.randn(channels, channels, 3, 3, device=device).to(dtype).contiguous(memory_format=cl)
    work = conv_flops((batch, channels, size, size), w.shape)
    with torch.no_grad():
        return sustained_rate(lambda: nn.functional.conv2d(x, w, padding=1), work, device, seconds) / 1e12


def _size(text: str) -> int:
    """'32768K', '32 MiB', '1M' -> bytes."""
    number, unit = re.match(r"\s*([\d.]+)\s*([KMG]?)", text).groups()
    return int(float(number) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit])


def llc_bytes(device="cpu") -> int:
    """The last-level cache: a GPU's L2; a CPU's highest-level cache in /sys/devices/system/cpu/cpu0/cache,
    else lscpu's, else 32 MiB."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).L2_cache_size
    levels = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            levels[int((index / "level").read_text())] = _size((index / "size").read_text())
        except (OSError, ValueError, AttributeError):
            pass
    if levels:
        return levels[max(levels)]
    try:
        lines = subprocess.run(["lscpu"], check=False, capture_output=True, text=True, timeout=10).stdout.splitlines()
        caches = [line.split(":", 1)[1] for line in lines if re.match(r"L\d cache:", line)]
        return _size(caches[-1]) if caches else 32 * 2**20
    except (OSError, subprocess.SubprocessError, AttributeError):
        return 32 * 2**20


def bandwidth(device="cpu", nbytes: int | None = None, seconds: float | None = None) -> dict:
    """Sustained memory bandwidth in GB/s (10⁹ bytes) over fp32 arrays of `nbytes` each (default 4 × the
    last-level cache and at least 64 MiB, so that the caches cannot hold them): copy, dst.copy_(src), counted
    as 2 × nbytes moved (read src, write dst); triad, a = b + s·c through torch.add(b, c, alpha=s, out=a),
    counted as 3 × nbytes (read b and c, write a). Write-allocate traffic is not counted, as STREAM does not."""
    device = torch.device(device)
    nbytes = nbytes or max(4 * llc_bytes(device), 64 * 2**20)
    seconds = SECONDS[device.type] / 2 if seconds is None else seconds
    n = nbytes // 4
    a, b, c = (torch.full((n,), float(v), device=device) for v in (0, 1, 2))
    copy = sustained_rate(lambda: a.copy_(b), 2 * 4 * n, device, seconds / 2)
    triad = sustained_rate(lambda: torch.add(b, c, alpha=3.0, out=a), 3 * 4 * n, device, seconds / 2)
    return {"copy_GBs": copy / 1e9, "triad_GBs": triad / 1e9, "array_bytes": 4 * n, "llc_bytes": llc_bytes(device)}


def machine_name(device) -> str:
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def peaks_key(device, threads: int, load: str, sizes, conv_shape, nbytes: int) -> str:
    """The conditions measured peaks hold for, as the cache's key (like --fast's choice)."""
    conv = f" | conv3x3 {'x'.join(map(str, conv_shape))}" if conv_shape else ""
    return (f"{machine_name(device)} | torch {torch.__version__} | {threads} threads | {load} | "
            f"sizes {','.join(map(str, sizes))}{conv} | arrays {nbytes / 2**20:g} MiB")


def machine_peaks(device="cpu", threads: int | None = None, cache: bool = True, sizes=None, conv_shape=None,
                  nbytes: int | None = None, seconds: float | None = None) -> dict:
    """This machine's measured limits: {precision: TFLOP/s for each of `precisions(device)`, "copy_GBs",
    "triad_GBs", "emulated": [precisions without native instructions], "conditions": {the shapes and their
    rates, array bytes, threads, others' load before and after, date, torch, machine, seconds taken}}.

    Cached in files.cache_dir()/peaks.json per machine (CPU or GPU name), torch version, threads, load class
    (lab.engine.fast.load_class: a busy machine measures lower peaks) and probe sizes; measured again where
    they differ. A probe during which the load class changed (others_load before and after) is returned but
    not cached. `threads` (default: torch's current count) is set for the probe on a CPU and restored."""
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    sizes = tuple(sizes or SIZES[device.type])
    conv_shape = tuple(CONV_PROBE[device.type] if conv_shape is None else conv_shape)
    nbytes = nbytes or max(4 * llc_bytes(device), 64 * 2**20)
    load = others_load()
    key = peaks_key(device, threads, load_class(load), sizes, conv_shape, nbytes)
    path = files.cache_dir() / "peaks.json"
    cached = files.read_json(path, {}) if cache else {}
    if key in cached:
        return cached[key]
    before, start = torch.get_num_threads(), time.perf_counter()
    if device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        matmuls = [matmul_peak(device, p, sizes, seconds, conv_shape) for p in precisions(device)]
        memory = bandwidth(device, nbytes, None if seconds is None else seconds / 2)
    finally:
        torch.set_num_threads(before)
    seconds_taken, after = time.perf_counter() - start, others_load()
    peaks = {m["precision"]: m["tflops"] for m in matmuls}
    peaks.update(copy_GBs=memory["copy_GBs"], triad_GBs=memory["triad_GBs"],
                 emulated=[m["precision"] for m in matmuls if m["emulated"]])
    peaks["conditions"] = {
        "machine": machine_name(device), "device": device.type, "torch": torch.__version__, "threads": threads,
        "sizes": list(sizes), "conv3x3": list(conv_shape),
        "by_size": {m["precision"]: {str(n): r for n, r in m["by_size"].items()} for m in matmuls},  # as JSON keeps it
        "array_bytes": memory["array_bytes"], "llc_bytes": memory["llc_bytes"],
        "others_load_before": round(load, 3), "others_load_after": round(after, 3),
        "date": time.strftime("%Y-%m-%d %H:%M"), "seconds": round(seconds_taken, 1), "key": key}
    if cache and load_class(after) == load_class(load):  # a load that came or went meanwhile: not kept
        try:
            files.save_json(path, {**files.read_json(path, {}), key: peaks})
        except OSError:  # a read-only cache only costs the measurement next time
            pass
    return peaks


def achieved(flops: float, seconds: float, peak_tflops: float) -> dict:
    """What `flops` in `seconds` achieve against a peak: {"tflops", "share" of the peak, "at_peak_s" (the
    time the work would take at the peak), "peak_underestimated"}. A rate above the measured peak means the
    probe underestimated it (a busy machine, a shape it did not try): share and at_peak_s are then None and
    the flag is True, for the caller to say so, never a share over 100 %."""
    tflops = flops / seconds / 1e12
    over = tflops > peak_tflops
    return {"tflops": tflops, "share": None if over else tflops / peak_tflops,
            "at_peak_s": None if over else flops / (peak_tflops * 1e12), "peak_underestimated": over}


# --- roofline points from a profile ---------------------------------------------------------------------

@dataclass
class OpEvent:
    """One operator call as the profiler recorded it, reduced to what the points need: per input its shape
    (a list of shapes for a tensor list, [] for a non-tensor), its dtype as the profiler names it ('float',
    'c10::BFloat16', ...; 'Scalar' and '' for non-tensors) and its value where it is not a tensor (strides,
    paddings, ...; None for tensors); the call's time (CPU, or the kernels' time on CUDA, children included);
    whether it ran inside the optimizer's step."""

    name: str
    shapes: list = field(default_factory=list)
    dtypes: list = field(default_factory=list)
    args: list = field(default_factory=list)
    seconds: float = 0.0
    optimizer: bool = False


ITEMSIZE = {"float": 4, "double": 8, "c10::BFloat16": 2, "c10::Half": 2, "long int": 8, "int": 4, "short int": 2,
            "signed char": 1, "unsigned char": 1, "bool": 1, "c10::Float8_e4m3fn": 1, "c10::Float8_e5m2": 1}
# where stride, padding, dilation and groups sit among a forward convolution's arguments
CONV_ARGS = {"aten::convolution": (3, 4, 5, 8), "aten::_convolution": (3, 4, 5, 8),
             "aten::mkldnn_convolution": (4, 3, 5, 6), "aten::cudnn_convolution": (3, 2, 4, 5)}
CONV_BACKWARD = ("aten::convolution_backward",)
MATMULS = ("aten::addmm", "aten::mm", "aten::bmm")
POINT_OPS = (*CONV_ARGS, *CONV_BACKWARD, *MATMULS)
RELU_OPS = ("aten::relu", "aten::relu_", "aten::threshold_backward", "aten::clamp_min", "aten::clamp_min_")
NO_FLOP_GROUPS = ("batch norm", "relu", "add", "optimizer", "other")
# operators that move no data: views and allocations
NO_DATA_OPS = ("aten::view", "aten::_unsafe_view", "aten::reshape", "aten::t", "aten::transpose", "aten::permute",
               "aten::expand", "aten::as_strided", "aten::squeeze", "aten::unsqueeze", "aten::alias", "aten::detach",
               "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::resize_", "aten::lift_fresh")


def tensor_bytes(shape, dtype: str) -> int:
    """Bytes of a tensor (or, for a list of shapes, a tensor list) of that dtype; 0 for a non-tensor."""
    size = ITEMSIZE.get(dtype, 0)
    if size and shape and isinstance(shape[0], (list, tuple)):
        return size * sum(math.prod(s) for s in shape)
    return size * math.prod(shape)


def conv_output_shape(x, weight, stride, padding, dilation) -> list:
    """[N, C_out, *spatial]: each spatial size (in + 2·padding − dilation·(kernel − 1) − 1) // stride + 1."""
    dims = len(x) - 2
    stride, padding, dilation = ([v] * dims if len(v) == 1 else v for v in (stride, padding, dilation))
    return [x[0], weight[0]] + [(x[2 + i] + 2 * padding[i] - dilation[i] * (weight[2 + i] - 1) - 1) // stride[i] + 1
                                for i in range(dims)]


def _conv_label(x, weight, out, stride) -> str:
    kernel = "×".join(map(str, weight[2:]))
    return f"{x[1]}→{weight[0]} {kernel}/{stride[0]} {'×'.join(map(str, out[2:]))}"


def op_point(e: OpEvent) -> dict:
    """A convolution's or matrix product's FLOPs (the formulas of lab.engine.flops.analytic) and bytes under
    this traffic model: every input, weight and output tensor moves once, in its own dtype's bytes (outputs in
    their input's dtype); caches and re-reads are ignored, so the intensity is an upper bound.
    Forward convolution: reads input and weight, writes the output. Backward (convolution_backward): reads
    grad_output, input and weight, writes the input gradient and the weight gradient where its output mask
    asks for them (the first conv has no input gradient); FLOPs: the forward's per gradient computed."""
    if e.name in CONV_ARGS:
        x, w = e.shapes[0], e.shapes[1]
        s, p, d, _groups = (e.args[i] for i in CONV_ARGS[e.name])
        out = conv_output_shape(x, w, s, p, d)
        flops = conv_flops(out, w)
        nbytes = (tensor_bytes(x, e.dtypes[0]) + tensor_bytes(w, e.dtypes[1]) + tensor_bytes(e.shapes[2], e.dtypes[2])
                  + tensor_bytes(out, e.dtypes[0]))
        label = f"conv {_conv_label(x, w, out, s)} fwd"
    elif e.name in CONV_BACKWARD:
        grad_out, x, w = e.shapes[:3]
        mask = e.args[10] if len(e.args) > 10 and e.args[10] else [True, True, False]
        flops = conv_flops(grad_out, w) * (int(mask[0]) + int(mask[1]))
        nbytes = (tensor_bytes(grad_out, e.dtypes[0]) + (1 + int(mask[0])) * tensor_bytes(x, e.dtypes[1])
                  + (1 + int(mask[1])) * tensor_bytes(w, e.dtypes[2]))
        grads = " + ".join(g for g, on in zip(("input", "weight"), mask) if on)
        label = f"conv {_conv_label(x, w, grad_out, e.args[4] or [1])} bwd ({grads} grad)"
    elif e.name in MATMULS:
        a, b = e.shapes[-2:] if e.name != "aten::addmm" else e.shapes[1:3]
        batch = math.prod(a[:-2])
        m, k, n = a[-2], a[-1], b[-1]
        flops = batch * matmul_flops(m, k, n)
        dtype = e.dtypes[1] if e.name == "aten::addmm" else e.dtypes[0]
        nbytes = (sum(tensor_bytes(shape, t) for shape, t in zip(e.shapes, e.dtypes))
                  + tensor_bytes([batch, m, n], dtype))
        label = f"{e.name[6:]} {m}×{k}·{k}×{n}" + (f" ×{batch}" if batch > 1 else "")
    else:
        raise ValueError(f"{e.name} is not a convolution or matrix product")
    return {"op": e.name, "label": label, "flops": flops, "bytes": nbytes, "intensity": flops / nbytes}


def no_flop_group(e: OpEvent) -> str:
    if e.optimizer:
        return "optimizer"
    if "batch_norm" in e.name:
        return "batch norm"
    if e.name in RELU_OPS:
        return "relu"
    return "add" if e.name in ("aten::add", "aten::add_") else "other"


def no_flop_bytes(e: OpEvent) -> int:
    """Traffic model of an operator without FLOPs: every tensor input read once, and one output as large as
    its largest input written (elementwise ops and batch norm; in-place and foreach ops write their first);
    views and allocations (NO_DATA_OPS) move nothing."""
    if e.name in NO_DATA_OPS:
        return 0
    sizes = [tensor_bytes(shape, t) for shape, t in zip(e.shapes, e.dtypes)]
    return sum(sizes) + max(sizes, default=0)


def points(events: list[OpEvent], steps: int = 1, wall_s: float | None = None) -> dict:
    """Per step, from the events of `steps` identical steps: "layers", a point per convolution (forward and
    backward apart) and matrix product in the order of the step — {"op", "label", "flops", "bytes",
    "intensity" (FLOP/byte), "seconds", "tflops"}, the same call of each step averaged; "no_flop", per group
    (batch norm, relu, add, optimizer, other) {"seconds", "bytes", "GBs", "calls"}; "flops", "layer_s",
    "no_flop_s", "step_s" (wall_s / steps, else the operators' sum) and "unattributed_s" (the step's time
    outside any operator: Python, the autograd engine, a GPU waiting for launches)."""
    by_name: dict = {}
    position = {id(e): i for i, e in enumerate(events)}
    for e in events:
        if e.name in POINT_OPS:
            by_name.setdefault(e.name, []).append(e)
    layers = []
    for name, calls in by_name.items():
        if len(calls) % steps:
            raise ValueError(f"{len(calls)} calls of {name} do not split into {steps} identical steps")
        per_step = len(calls) // steps
        for i in range(per_step):
            same = calls[i::per_step]
            point = op_point(same[0])
            seconds = sum(c.seconds for c in same) / steps
            point.update(seconds=seconds, tflops=point["flops"] / seconds / 1e12 if seconds > 0 else math.inf,
                         order=position[id(same[0])])
            layers.append(point)
    layers.sort(key=lambda p: p.pop("order"))
    groups = {g: {"seconds": 0.0, "bytes": 0, "calls": 0} for g in NO_FLOP_GROUPS}
    for e in events:
        if e.name not in POINT_OPS:
            group = groups[no_flop_group(e)]
            group["seconds"] += e.seconds / steps
            group["bytes"] += no_flop_bytes(e) / steps
            group["calls"] += 1 / steps
    for group in groups.values():
        group["GBs"] = group["bytes"] / group["seconds"] / 1e9 if group["seconds"] > 0 else 0.0
    layer_s = sum(p["seconds"] for p in layers)
    no_flop_s = sum(g["seconds"] for g in groups.values())
    step_s = wall_s / steps if wall_s is not None else layer_s + no_flop_s
    return {"layers": layers, "no_flop": groups, "flops": sum(p["flops"] for p in layers), "layer_s": layer_s,
            "no_flop_s": no_flop_s, "step_s": step_s, "unattributed_s": max(0.0, step_s - layer_s - no_flop_s)}


def events_from_profile(prof, cuda: bool = False) -> list[OpEvent]:
    """The profile's operators as OpEvents, each counted once: a convolution or matrix product at its
    outermost ATen op (aten::convolution under aten::conv2d, which mkldnn/cudnn run inside), any other ATen op
    that contains none at its outermost level; wrappers (autograd nodes, Optimizer.step, aten::conv2d and
    aten::linear around the casts autocast adds) are looked through. Time: CPU time, or on CUDA the time of
    the kernels the op launched, children included."""
    records = []

    def has_point(e) -> bool:
        return any(c.name in POINT_OPS or has_point(c) for c in e.cpu_children)

    def dtype(e, t):
        if t != "TensorList":
            return t
        children = [c for c in e.cpu_children if c.input_dtypes and c.input_dtypes[0] in ITEMSIZE]
        return children[0].input_dtypes[0] if children else "float"  # foreach kernels: fp32 parameters

    def visit(e, optimizer: bool):
        optimizer = optimizer or e.name.startswith("Optimizer.step")
        if e.name in POINT_OPS or (e.name.startswith("aten::") and not has_point(e)):
            shapes = getattr(e, "structured_input_shapes", None) or e.input_shapes or []
            seconds = (e.device_time_total if cuda else e.cpu_time_total) / 1e6
            records.append(OpEvent(e.name, list(shapes), [dtype(e, t) for t in e.input_dtypes or []],
                                   list(getattr(e, "concrete_inputs", None) or []), seconds, optimizer))
            return
        for child in sorted(e.cpu_children, key=lambda c: c.time_range.start):
            visit(child, optimizer)

    roots = [e for e in prof.events() if e.cpu_parent is None and not getattr(e, "is_async", False)]
    for e in sorted(roots, key=lambda e: e.time_range.start):
        visit(e, False)
    return records


def layer_points(model: nn.Module | None = None, batch: int = 128, device="cpu", steps: int = 2, amp: str = "off",
                 channels_last: bool = False, warmup: int = 1, trace=None) -> dict:
    """Profile `steps` training steps (forward, loss, backward, SGD with momentum; after `warmup` unprofiled
    ones) of a copy of `model` (default ResNet-18) on a fixed random batch, with record_shapes, and return
    `points(...)` plus the conditions: device, machine, batch, steps, amp, channels_last, precision, threads.
    `trace`: a path to write the profile's Chrome trace to (lab.engine.kernels reads it on CUDA)."""
    device = torch.device(device)
    net = eager_copy(model if model is not None else resnet18()).to(device).train()
    net = net.to(memory_format=torch.channels_last) if channels_last else net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    step = Step(net, optimizer, device, Precision(channels_last, AMP_DTYPES[amp]))
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    for _ in range(warmup):
        step(x, y)
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    wall = 0.0
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        for _ in range(steps):
            start = _clock(device)
            step(x, y)
            wall += _clock(device) - start
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    result = points(events_from_profile(prof, device.type == "cuda"), steps, wall)
    result.update(device=device.type, machine=machine_name(device), batch=batch, steps=steps, amp=amp,
                  channels_last=channels_last, precision=compute_precision(device, amp),
                  threads=torch.get_num_threads())
    return result


# --- which roof binds -----------------------------------------------------------------------------------

FAR = 0.1  # below this share of its roof, an operator is bound by neither roof: by launches and bookkeeping


def memory_roof(peaks: dict) -> float:
    """The bandwidth roof in GB/s: the better of copy and triad."""
    return max(peaks["copy_GBs"], peaks["triad_GBs"])


def binding_roof(profile: dict, peaks: dict, precision: str | None = None) -> tuple[str, str]:
    """The roof that binds the step, weighted by time, and what follows, as (roof, sentence).

    Each point's roof at its intensity I is min(compute peak, bandwidth × I); the ridge is where they meet.
    A point within FAR of its roof counts as compute-bound right of the ridge and memory-bound left of it; the
    no-FLOP groups count as memory-bound at their GB/s against the bandwidth. What runs below FAR of its roof,
    and the step's time outside any operator, is launch/overhead-bound. The roof with the most time binds."""
    precision = precision or profile.get("precision", "fp32")
    compute, band = peaks[precision], memory_roof(peaks)
    ridge = compute * 1e3 / band  # FLOP/byte
    time_in = {"compute-bound": 0.0, "memory-bound": 0.0, "launch/overhead-bound": profile["unattributed_s"]}
    flops = nbytes = 0.0
    for p in profile["layers"]:
        roof = min(compute, band * p["intensity"] / 1e3)
        if p["tflops"] < FAR * roof:
            time_in["launch/overhead-bound"] += p["seconds"]
        elif p["intensity"] >= ridge:
            time_in["compute-bound"] += p["seconds"]
            flops += p["flops"]
        else:
            time_in["memory-bound"] += p["seconds"]
            nbytes += p["bytes"]
    for g in profile["no_flop"].values():
        bound = "memory-bound" if g["seconds"] > 0 and g["GBs"] >= FAR * band else "launch/overhead-bound"
        time_in[bound] += g["seconds"]
        nbytes += g["bytes"] if bound == "memory-bound" else 0
    total = sum(time_in.values())
    roof = max(time_in, key=time_in.get)
    share = time_in[roof] / total if total else 0.0
    if roof == "compute-bound":
        rate = achieved(flops, time_in[roof], compute)
        at = ("above the measured peak (the probe underestimated it)" if rate["peak_underestimated"]
              else f"at {rate['share']:.0%} of the measured {precision} peak ({compute:.3g} TFLOP/s)")
        return roof, (f"compute-bound: {share:.0%} of the step's time is in convolutions right of the ridge "
                      f"({ridge:.0f} FLOP/byte), {at}: only lower precision or fewer FLOPs help.")
    if roof == "memory-bound":
        rate = nbytes / time_in[roof] / 1e9
        at = ("above the measured bandwidth (the probe underestimated it)" if rate > band
              else f"at {rate / band:.0%} of the measured bandwidth ({band:.0f} GB/s)")
        return roof, (f"memory-bound: {share:.0%} of the step's time is in operators left of the ridge "
                      f"({ridge:.0f} FLOP/byte) or without FLOPs (batch norm, ReLU, add, the optimizer), moving "
                      f"bytes {at}: fewer passes over memory help (fusing elementwise operators, e.g. "
                      f"torch.compile; lower-precision activations), more FLOP/s do not.")
    return roof, (f"launch/overhead-bound: {share:.0%} of the step's time runs below {FAR:.0%} of either roof or "
                  f"outside any operator: it goes to launching operators and bookkeeping, not to arithmetic or "
                  f"memory traffic: fewer, larger operators help (a larger batch, CUDA graphs or torch.compile, "
                  f"fused or foreach optimizers), neither more FLOP/s nor more bandwidth.")


# --- the figure -----------------------------------------------------------------------------------------

def plot_roofline(profile: dict, peaks: dict, precision: str | None = None, ax=None, label_top: int = 5):
    """Log-log roofline: the measured compute roof of `precision` (the other precisions' dashed), the
    bandwidth roof, a point per convolution/matrix product (area ∝ its time), the `label_top` slowest shapes
    numbered and named beside the axes (with their count and total time), and there too the no-FLOP
    operators' time and GB/s. Returns the axes."""
    plt = need("matplotlib.pyplot")
    precision = precision or profile.get("precision", "fp32")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    compute, band = peaks[precision], memory_roof(peaks)
    ridge = compute * 1e3 / band
    layers = profile["layers"]
    xs = [p["intensity"] for p in layers] + [ridge]
    lo, hi = min(xs) / 4, max(xs) * 4
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.loglog(grid, [min(compute, band * x / 1e3) for x in grid], color="black",
              label=f"{precision} {compute:.3g} TFLOP/s, {band:.0f} GB/s (measured)")
    for other in (p for p in ("fp32", "tf32", "bf16", "fp16") if p in peaks and p != precision):
        emulated = " (emulated)" if other in peaks.get("emulated", []) else ""
        ax.loglog(grid, [min(peaks[other], band * x / 1e3) for x in grid], ls="--", lw=0.8, alpha=0.6,
                  label=f"{other} {peaks[other]:.3g} TFLOP/s{emulated}")
    ax.axvline(ridge, color="grey", ls=":", lw=0.8)
    total = sum(p["seconds"] for p in layers) or 1.0
    ax.scatter([p["intensity"] for p in layers], [p["tflops"] for p in layers],
               s=[20 + 400 * p["seconds"] / total for p in layers], alpha=0.6,
               c=["tab:blue" if "fwd" in p["label"] else "tab:orange" for p in layers], edgecolors="black",
               linewidths=0.4, zorder=3)
    same: dict = {}  # layers of the same shape (ResNet-18 repeats them) labelled once, with their total time
    for p in layers:
        same.setdefault(p["label"], []).append(p)
    slowest = sorted(same.items(), key=lambda item: -sum(p["seconds"] for p in item[1]))[:label_top]
    lines = ["slowest layers per step:"]
    for number, (label, group) in enumerate(slowest, 1):
        for p in group:  # numbers at the points, the names beside the axes: clustered points keep them legible
            ax.annotate(str(number), (p["intensity"], p["tflops"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        count = f" ×{len(group)}" if len(group) > 1 else ""
        lines.append(f"{number}  {label}{count}: {sum(p['seconds'] for p in group) * 1e3:.0f} ms")
    lines += ["", "no-FLOP operators per step:"] + [
        f"{name}: {g['seconds'] * 1e3:.0f} ms, {g['GBs']:.1f} GB/s" for name, g in profile["no_flop"].items()
        if g["seconds"] > 0]
    ax.text(1.02, 1.0, "\n".join(lines), transform=ax.transAxes, fontsize=7, ha="left", va="top")
    ax.set_xlabel("arithmetic intensity (FLOP/byte, each tensor moved once)")
    ax.set_ylabel("achieved TFLOP/s")
    machine = peaks.get("conditions", {}).get("machine", profile.get("machine", ""))
    batch = f", batch {profile['batch']}" if "batch" in profile else ""
    ax.set_title(f"Roofline: {machine}, {precision}{batch} (blue forward, orange backward)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return ax
