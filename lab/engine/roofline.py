"""How far a training step is from this machine's limits, measured here, not read from a spec sheet: the peaks
(FLOP/s per precision, a CPU's int8 operations/s, memory bandwidth); the step's convolutions as roofline points from
torch.profiler, its no-FLOP operators (batch norm, ReLU, add, the optimizer) as bytes against the bandwidth, as rows
and back; and what limits the step: a roof where it runs near it (NEAR), its kernels below that, launches and
overhead far below (FAR)."""
from __future__ import annotations

import contextlib
import math
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn

from ..core import files, words
from ..core.extras import need
from ..core.timing import now
from . import environment
from .fast import load_class, load_held, others_load
from .flops import conv_flops, eager_copy, matmul_flops
from .loop import AMP_DTYPES, Precision, Step
from .model import resnet18
from .profiling import activities
from .records import cpu_flags, device_name
from .resolve import compute_precision

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
    """A CPU's fp32 and bf16 (emulated without bf16 instructions); CUDA's fp32 (IEEE), tf32, bf16 and fp16."""
    return ["fp32", "tf32", "bf16", "fp16"] if torch.device(device).type == "cuda" else ["fp32", "bf16"]


def bf16_native() -> bool:
    """Whether this CPU has bf16 arithmetic instructions (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def sustained_rate(fn, work: float, device, seconds: float) -> float:
    """Units of `work` per second that `fn` sustains: the median rate of blocks of calls sized so that about BLOCKS
    fit in `seconds` (at least 3, or 1 where a call takes over a third of it), after two warm-up calls."""
    device = torch.device(device)
    fn()
    start = now(device)
    fn()
    once = max(now(device) - start, 1e-9)
    calls = max(1, round(seconds / BLOCKS / once))
    least = 3 if 3 * once <= seconds else 1
    rates, end = [], time.perf_counter() + seconds
    while len(rates) < least or time.perf_counter() < end:
        start = now(device)
        for _ in range(calls):
            fn()
        rates.append(work * calls / (now(device) - start))
    return statistics.median(rates)


def matmul_peak(device, precision: str, sizes, seconds: float, conv_shape) -> dict:
    """One precision's best sustained TFLOP/s over n×n·n×n torch.mm of `sizes` and a channels_last 3×3 convolution
    (`conv_shape`: batch, channels, height=width; () skips it), `seconds` shared by the shapes. The convolution runs
    in oneDNN/cuDNN like the model's layers, not in torch.mm's BLAS, and may be faster (a 2-core EPYC: 0.24
    TFLOP/s fp32 against torch.mm's 0.17). tf32: fp32 tensors with CUDA's TF32 on; CUDA's fp32 is IEEE."""
    device = torch.device(device)
    if precision not in precisions(device):
        raise ValueError(f"{precision} is not measured on {device.type} (precisions: {precisions(device)})")
    seconds /= len(sizes) + bool(conv_shape)
    backends = [torch.backends.cuda.matmul, torch.backends.cudnn.conv] if device.type == "cuda" else []
    before = [b.fp32_precision for b in backends]
    for backend in backends:
        backend.fp32_precision = "tf32" if precision == "tf32" else "ieee"

    def tensor(*shape):
        return torch.randn(*shape, device=device).to(DTYPES[precision])

    by_size = {}
    try:
        for n in sizes:
            a, b, c = tensor(n, n), tensor(n, n), tensor(n, n)
            by_size[n] = sustained_rate(lambda: torch.mm(a, b, out=c), matmul_flops(n, n, n), device, seconds) / 1e12
        if conv_shape:
            batch, channels, size = conv_shape
            x, w = (tensor(*shape).contiguous(memory_format=torch.channels_last)
                    for shape in ((batch, channels, size, size), (channels, channels, 3, 3)))
            with torch.no_grad():
                by_size["conv3x3"] = sustained_rate(lambda: nn.functional.conv2d(x, w, padding=1),
                                                    conv_flops(x.shape, w.shape), device, seconds) / 1e12
    finally:
        for backend, value in zip(backends, before):
            backend.fp32_precision = value
    return {"precision": precision, "tflops": max(by_size.values()), "by_size": by_size,
            "emulated": device.type == "cpu" and precision == "bf16" and not bf16_native()}


INT8_FLAGS = {"amx_int8": "AMX-INT8", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI"}  # /proc/cpuinfo's


def int8_instructions() -> list[str]:
    """This CPU's int8 dot-product instructions (INT8_FLAGS' names) found in its flags."""
    flags = cpu_flags()
    return [name for flag, name in INT8_FLAGS.items() if flag in flags]


def _int_mm(n: int):
    """n×n·n×n int8 -> int32 through torch._int_mm: (the call, its operations)."""
    a, b = (torch.randint(-128, 127, (n, n), dtype=torch.int8) for _ in range(2))
    return (lambda: torch._int_mm(a, b)), matmul_flops(n, n, n)


def _qconv(shape):
    """A u8 -> u8 channels_last 3×3 convolution (batch, channels, height=width) with int8 weights through oneDNN, as
    a PT2E-quantized model runs after freezing: (the call, its operations)."""
    batch, channels, size = shape
    x = torch.randint(0, 255, (batch, channels, size, size), dtype=torch.uint8)
    x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randint(-127, 127, (channels, channels, 3, 3), dtype=torch.int8)
    scales, zeros, ones = torch.full((channels,), 0.01), torch.zeros(channels, dtype=torch.int64), [1, 1]
    packed = torch.ops.onednn.qconv_prepack(w, scales, 0.02, 0, ones, ones, ones, 1, list(x.shape))
    return (lambda: torch.ops.onednn.qconv2d_pointwise(x, 0.02, 0, packed, scales, zeros, None, ones, ones, ones, 1,
                                                        0.05, 0, None, "none", [], "")), conv_flops(x.shape, w.shape)


def int8_peak(n: int, conv_shape, seconds: float) -> dict:
    """A CPU's best sustained int8 TOPS (tera int8 operations per second, 2 per multiply-accumulate) over
    torch._int_mm of n×n·n×n and _qconv of `conv_shape` (() skips it), `seconds` shared: on a 2-core Xeon with AMX
    the convolution reached 6.2 TOPS, _int_mm 3.8. A probe that fails is left out, its reason in "failed"; "tops"
    is None where none ran."""
    probes = {n: lambda: _int_mm(n), **({"conv3x3": lambda: _qconv(conv_shape)} if conv_shape else {})}
    by_size, failed = {}, {}
    for name, make in probes.items():
        try:
            fn, work = make()
            with torch.no_grad():
                by_size[name] = sustained_rate(fn, work, "cpu", seconds / len(probes)) / 1e12
        except Exception as error:  # noqa: BLE001 - a build without the kernel: the peak says why
            failed[str(name)] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"[:200]
    return {"tops": max(by_size.values(), default=None), "by_size": by_size, "failed": failed}


def _size(text: str) -> int:
    """'32768K', '32 MiB', '1M' -> bytes."""
    number, unit = re.match(r"\s*([\d.]+)\s*([KMG]?)", text).groups()
    return int(float(number) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit])


def llc_bytes(device="cpu") -> int:
    """A GPU's L2; a CPU's highest-level cache in /sys/devices/system/cpu/cpu0/cache, else lscpu's, else 32 MiB."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).L2_cache_size
    levels = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            levels[int((index / "level").read_text())] = _size((index / "size").read_text())
    if not levels:
        with contextlib.suppress(OSError, subprocess.SubprocessError, AttributeError):
            lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
            levels = {int(level): _size(size) for level, size in re.findall(r"^L(\d) cache:(.*)$", lscpu, re.M)}
    return levels[max(levels)] if levels else 32 * 2**20


def bandwidth(device, nbytes: int, seconds: float) -> dict:
    """Sustained GB/s (10⁹ bytes) over fp32 arrays of `nbytes` each: copy (a.copy_(b), 2 × nbytes moved) and triad
    (torch.add(b, c, alpha=s, out=a), 3 × nbytes); write-allocate traffic is not counted, as STREAM does not."""
    device = torch.device(device)
    n = nbytes // 4
    a, b, c = (torch.full((n,), float(v), device=device) for v in (0, 1, 2))
    copy = sustained_rate(lambda: a.copy_(b), 2 * 4 * n, device, seconds / 2)
    triad = sustained_rate(lambda: torch.add(b, c, alpha=3.0, out=a), 3 * 4 * n, device, seconds / 2)
    return {"copy_GBs": copy / 1e9, "triad_GBs": triad / 1e9, "array_bytes": 4 * n, "llc_bytes": llc_bytes(device)}


def machine_peaks(device="cpu", threads: int | None = None, cache: bool = True, sizes=None, conv_shape=None,
                  nbytes: int | None = None, seconds: float | None = None) -> dict:
    """{precision: TFLOP/s, "int8": TOPS, "copy_GBs", "triad_GBs", "emulated": [precisions], "conditions": {how it
    was measured}}; arrays default to 4 × the last-level cache, at least 64 MiB. "int8" only on a CPU with int8
    instructions where a probe ran (else conditions' "int8_missing" says why), in half a precision's time. Cached in
    files.cache_dir()/peaks.json per machine (environment.machine), threads, load class (a busy machine measures
    lower peaks) and probe sizes, unless the load class changed during the probe (sampled before, between its
    stages and after); a cached entry that is not sound peaks is measured again. conditions' "source" says
    which: "measured" now or read from the "cache"."""
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    sizes = tuple(sizes or SIZES[device.type])
    conv_shape = tuple(CONV_PROBE[device.type] if conv_shape is None else conv_shape)
    nbytes = nbytes or max(4 * llc_bytes(device), 64 * 2**20)
    seconds = SECONDS[device.type] if seconds is None else seconds
    load, machine = others_load(), device_name(device)
    conv = f" | conv3x3 {'x'.join(map(str, conv_shape))}" if conv_shape else ""
    key = (f"{environment.machine(device)} | {threads} threads | {load_class(load)} | "
           f"sizes {','.join(map(str, sizes))}{conv} | arrays {nbytes / 2**20:g} MiB | int8")  # older keys: no int8
    path = files.cache_dir() / "peaks.json"
    found, ignored = cached_peaks(path, key, device) if cache else (None, None)
    if found:
        return {**found, "conditions": {**found["conditions"], "source": "cache"}}
    loads, pause = [load], min(0.25, seconds / 4)  # the load between the probe's stages: a load that came shows

    def stage(fn, *args):
        try:
            return fn(*args)
        finally:
            loads.append(others_load(pause))

    before, start = torch.get_num_threads(), time.perf_counter()
    if device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        matmuls = [stage(matmul_peak, device, p, sizes, seconds, conv_shape) for p in precisions(device)]
        instructions = int8_instructions() if device.type == "cpu" else []
        int8 = stage(int8_peak, max(sizes), conv_shape, seconds / 2) if instructions else None
        memory = bandwidth(device, nbytes, seconds / 2)
    finally:
        torch.set_num_threads(before)
    seconds_taken, after = time.perf_counter() - start, others_load()
    peaks = {m["precision"]: m["tflops"] for m in matmuls}
    if int8 and int8["tops"] is not None:
        peaks["int8"] = int8["tops"]
    peaks.update(copy_GBs=memory["copy_GBs"], triad_GBs=memory["triad_GBs"],
                 emulated=[m["precision"] for m in matmuls if m["emulated"]])
    by_size = {m["precision"]: m["by_size"] for m in matmuls} | ({"int8": int8["by_size"]} if int8 else {})
    loads.append(after)
    peaks["conditions"] = {
        "machine": machine, "device": device.type, "torch": torch.__version__, "threads": threads,
        "sizes": list(sizes), "conv3x3": list(conv_shape),
        "by_size": {p: {str(n): r for n, r in rates.items()} for p, rates in by_size.items()},  # as JSON keeps it
        "int8_instructions": instructions, **({"int8_failed": int8["failed"]} if int8 and int8["failed"] else {}),
        **({} if "int8" in peaks else {"int8_missing": int8_missing(device, instructions, int8)}),
        "array_bytes": memory["array_bytes"], "llc_bytes": memory["llc_bytes"],
        "others_load_before": round(load, 3), "others_load_after": round(after, 3),
        "others_load": [round(x, 3) for x in loads], "date": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(seconds_taken, 1), "key": key}
    notes, kept = [f"the cached entry was ignored: {ignored}"] if ignored else [], cache and load_held(loads)
    if cache and not kept:
        notes.append("not cached: the load of other processes changed during the probe")
    if kept:
        try:
            files.update_json(path, lambda cached: {**cached, key: peaks})
        except OSError as exc:  # a read-only cache only costs the measurement next time
            kept = False
            notes.append(f"not cached: {exc}")
    return {**peaks, "conditions": {**peaks["conditions"], "source": "measured", "cached": kept,
                                    **({"cache_note": "; ".join(notes)} if notes else {})}}


PLAUSIBLE = {"TFLOP/s": 1e5, "GB/s": 1e6}  # above any device's (and any cache's) rate: a corrupt entry, not a peak


def peaks_entry(path, key: str, entry, device) -> dict:
    """A peaks.json entry, checked: each of the device's precisions, int8 where present, and both bandwidths a
    finite positive plausible number, `conditions` an object. files.BadFile naming the field otherwise."""
    field, again = f"[{key!r}]", "measured again"
    if not isinstance(entry, dict):
        raise files.BadFile(path, f"is {type(entry).__name__}, not an object", field, again)
    for name in [*precisions(device), *(["int8"] if "int8" in entry else []), "copy_GBs", "triad_GBs"]:
        if name not in entry:
            raise files.BadFile(path, "is missing", f"{field}.{name}", again)
        high = PLAUSIBLE["GB/s" if name.endswith("_GBs") else "TFLOP/s"]
        files.number(path, f"{field}.{name}", entry[name], high=high, positive=True, way_out=again)
    if not isinstance(entry.get("emulated", []), list) or not isinstance(entry.get("conditions"), dict):
        raise files.BadFile(path, "are not a list and an object", f"{field}.emulated, conditions", again)
    return entry


def cached_peaks(path, key: str, device) -> tuple[dict | None, str | None]:
    """(peaks.json's sound entry for `key` or None, why an entry there was ignored); a bad file counts as empty."""
    cached = files.read_json(path, {})
    if key not in cached:
        return None, None
    try:
        return peaks_entry(path, key, cached[key], device), None
    except files.BadFile as bad:
        return None, str(bad)


def int8_missing(device, instructions: list[str], int8: dict | None) -> str:
    """Why a machine has no int8 peak."""
    if torch.device(device).type != "cpu":
        return "not probed: the lab's int8 path (PT2E for x86) runs on a CPU"
    if not instructions:
        return f"no int8 instructions ({', '.join(INT8_FLAGS.values())}) in this CPU's flags"
    return "the probes failed: " + "; ".join(f"{name}: {why}" for name, why in int8["failed"].items())


def achieved(flops: float, seconds: float, peak_tflops: float) -> dict:
    """{"tflops", "share" of the peak, "at_peak_s", "peak_underestimated"}: a rate above the measured peak means the
    probe underestimated it; share and at_peak_s are then None, never a share over 100 %."""
    tflops = flops / seconds / 1e12
    over = tflops > peak_tflops
    return {"tflops": tflops, "share": None if over else tflops / peak_tflops,
            "at_peak_s": None if over else flops / (peak_tflops * 1e12), "peak_underestimated": over}


# --- roofline points from a profile ---------------------------------------------------------------------

@dataclass
class OpEvent:
    """One operator call: per input its shape (a list of shapes for a tensor list), the profiler's dtype name
    ('float', 'c10::BFloat16', 'Scalar') and its value where not a tensor (strides, paddings); its seconds (CPU, or
    its kernels' on CUDA); whether it ran in the optimizer's step."""

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
    """A convolution's or matrix product's FLOPs and bytes when every tensor moves once in its dtype (outputs in
    their input's): the intensity is an upper bound. A convolution_backward reads grad_output, input and weight and
    writes the gradients its output mask asks for (the stem: no input gradient), each the forward's FLOPs."""
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
    return {"op": e.name, "label": label, "flops": flops, "bytes": nbytes}


def with_rates(point: dict) -> dict:
    """A layer's intensity (FLOP/byte) and TFLOP/s, or a no-FLOP group's GB/s, from its flops, bytes and seconds."""
    seconds = point["seconds"]
    if "flops" in point:
        point.update(intensity=point["flops"] / point["bytes"],
                     tflops=point["flops"] / seconds / 1e12 if seconds > 0 else math.inf)
    else:
        point["GBs"] = point["bytes"] / seconds / 1e9 if seconds > 0 else 0.0
    return point


def no_flop_group(e: OpEvent) -> str:
    if e.optimizer:
        return "optimizer"
    if "batch_norm" in e.name:
        return "batch norm"
    if e.name in RELU_OPS:
        return "relu"
    return "add" if e.name in ("aten::add", "aten::add_") else "other"


def no_flop_bytes(e: OpEvent) -> int:
    """Every tensor input read once and one as large as the largest written; views and allocations move nothing."""
    if e.name in NO_DATA_OPS:
        return 0
    sizes = [tensor_bytes(shape, t) for shape, t in zip(e.shapes, e.dtypes)]
    return sum(sizes) + max(sizes, default=0)


def points(events: list[OpEvent], steps: int = 1, wall_s: float | None = None) -> dict:
    """Per step of `steps` identical ones: "layers", a point per convolution (forward and backward apart) and matrix
    product in order, each call averaged over the steps; "no_flop" per group; "flops", "layer_s", "no_flop_s",
    "step_s" and "unattributed_s" (outside any operator: Python, autograd, a GPU waiting for launches)."""
    by_name: dict = {}
    for order, e in enumerate(events):
        if e.name in POINT_OPS:
            by_name.setdefault(e.name, []).append((order, e))
    layers = []
    for name, calls in by_name.items():
        if len(calls) % steps:
            raise ValueError(f"{len(calls)} calls of {name} do not split into {steps} identical steps")
        per_step = len(calls) // steps
        for i in range(per_step):
            same = calls[i::per_step]  # (place in the events, event) of this call in each step
            (order, first), seconds = same[0], sum(e.seconds for _, e in same) / steps
            layers.append((order, with_rates({**op_point(first), "seconds": seconds})))
    layers = [p for _, p in sorted(layers, key=lambda item: item[0])]
    groups = {g: {"seconds": 0.0, "bytes": 0, "calls": 0} for g in NO_FLOP_GROUPS}
    for e in events:
        if e.name not in POINT_OPS:
            group = groups[no_flop_group(e)]
            group["seconds"] += e.seconds / steps
            group["bytes"] += no_flop_bytes(e) / steps
            group["calls"] += 1 / steps
    for group in groups.values():
        with_rates(group)
    layer_s = sum(p["seconds"] for p in layers)
    no_flop_s = sum(g["seconds"] for g in groups.values())
    step_s = wall_s / steps if wall_s is not None else layer_s + no_flop_s
    return {"layers": layers, "no_flop": groups, "flops": sum(p["flops"] for p in layers), "layer_s": layer_s,
            "no_flop_s": no_flop_s, "step_s": step_s, "unattributed_s": max(0.0, step_s - layer_s - no_flop_s)}


def events_from_profile(prof, cuda: bool = False) -> list[OpEvent]:
    """Each operator once: a convolution or matrix product at its outermost ATen op, any other outermost ATen op
    that contains none; wrappers (autograd nodes, Optimizer.step, aten::conv2d) are looked through. Time: CPU
    time, or on CUDA the time of the kernels the op launched, children included."""
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
                 trace=None) -> dict:
    """`points` of `steps` profiled training steps (after one warm-up) of a copy of `model` (default ResNet-18) on a
    random batch, with its conditions; `trace`: where to write the Chrome trace."""
    device = torch.device(device)
    net = eager_copy(model if model is not None else resnet18()).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    step = Step(net, optimizer, device, Precision(False, AMP_DTYPES[amp]))
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    step(x, y)
    wall = 0.0
    with torch.profiler.profile(activities=activities(device), record_shapes=True) as prof:
        for _ in range(steps):
            start = now(device)
            step(x, y)
            wall += now(device) - start
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    result = points(events_from_profile(prof, device.type == "cuda"), steps, wall)
    result.update(device=device.type, machine=device_name(device), batch=batch, steps=steps, amp=amp,
                  precision=compute_precision(device, amp), threads=torch.get_num_threads())
    return result


# --- a profile as rows (lab.core.results) ---------------------------------------------------------------

STEP_UNITS = {"step_s": "s", "unattributed_s": "s"}
LAYER_UNITS = {"flops": "FLOP", "bytes": "bytes", "seconds": "s"}
GROUP_UNITS = {"seconds": "s", "bytes": "bytes", "calls": "calls"}


def point_rows(rows, profile: dict) -> list[dict]:
    """`points`' step, its layers (fields layer, op, label) and no-FLOP groups (field group) as rows of `rows`, a
    lab.core.results.Rows."""
    out = [rows.row(metric, profile[metric], unit) for metric, unit in STEP_UNITS.items()]
    out += [rows.row(metric, p[metric], unit, layer=i, op=p["op"], label=p["label"])
            for i, p in enumerate(profile["layers"]) for metric, unit in LAYER_UNITS.items()]
    return out + [rows.row(metric, g[metric], unit, group=name)
                  for name, g in profile["no_flop"].items() for metric, unit in GROUP_UNITS.items()]


def read_points(rows: pd.DataFrame) -> dict | None:
    """point_rows' rows among `rows` back in `points`' shape (step_s, unattributed_s, layers, no_flop) with their
    rates; None where there are none."""
    rows = rows.reindex(columns=[*rows.columns, *(c for c in ("layer", "op", "label", "group") if c not in rows)])
    step = rows[rows["layer"].isna() & rows["group"].isna() & rows["metric"].isin(list(STEP_UNITS))]
    if len(step) < len(STEP_UNITS):
        return None

    def metrics(g: pd.DataFrame) -> dict:
        return dict(zip(g["metric"], g["value"]))

    layers = [with_rates({"op": g["op"].iloc[0], "label": g["label"].iloc[0], **metrics(g)})
              for _, g in rows[rows["layer"].notna()].groupby("layer", sort=False)]
    groups = {name: with_rates(metrics(g)) for name, g in rows[rows["group"].notna()].groupby("group", sort=False)}
    return {**metrics(step), "layers": layers, "no_flop": groups}


# --- which roof binds -----------------------------------------------------------------------------------

FAR = 0.1  # below this share of its roof, an operator is bound by neither roof: by launches and bookkeeping
NEAR = 0.6  # from this share of its roof on, a side of the ridge is bound by that roof; below it, by its kernels


def has_roofs(peaks: dict | None, precision: str) -> bool:
    """Whether both roofs of `precision` were measured: its compute peak and the bandwidth (copy and triad)."""
    return bool(peaks) and all(key in peaks for key in (precision, "copy_GBs", "triad_GBs"))


def roofs(profile: dict, peaks: dict, precision: str | None) -> tuple[str, float, float, float]:
    """(precision, its peak TFLOP/s, the better of copy and triad GB/s, the ridge in FLOP/byte where they meet)."""
    precision = precision or profile.get("precision", "fp32")
    compute, band = peaks[precision], max(peaks["copy_GBs"], peaks["triad_GBs"])
    return precision, compute, band, compute * 1e3 / band


def binding_roof(profile: dict, peaks: dict, precision: str | None = None) -> tuple[str, str]:
    """(what limits most of the step's time, what follows). An operator above FAR of its roof is on the compute side
    (a point right of the ridge) or the memory side (left of it, and the no-FLOP groups); the rest, and the time
    outside any operator, is launch/overhead. The side with most time is bound by its roof only where its operators
    together reach NEAR of it; below that their kernels' efficiency limits them, with up to 1/share left."""
    precision, compute, band, ridge = roofs(profile, peaks, precision)
    time_in = {"compute": 0.0, "memory": 0.0, "overhead": profile["unattributed_s"]}
    flops = nbytes = 0.0
    for p in profile["layers"]:
        if p["tflops"] < FAR * min(compute, band * p["intensity"] / 1e3):
            time_in["overhead"] += p["seconds"]
        elif p["intensity"] >= ridge:
            time_in["compute"] += p["seconds"]
            flops += p["flops"]
        else:
            time_in["memory"] += p["seconds"]
            nbytes += p["bytes"]
    for g in profile["no_flop"].values():
        side = "memory" if g["seconds"] > 0 and g["GBs"] >= FAR * band else "overhead"
        time_in[side] += g["seconds"]
        nbytes += g["bytes"] if side == "memory" else 0
    total = sum(time_in.values())
    side = max(time_in, key=time_in.get)
    share = time_in[side] / total if total else 0.0
    if side == "overhead":
        return "launch/overhead-bound", (
            f"launch/overhead-bound: {share:.0%} of the step's time runs below {FAR:.0%} of either roof or outside "
            "any operator: it goes to launching operators and bookkeeping, not to arithmetic or memory traffic: "
            "fewer, larger operators help (a larger batch, CUDA graphs or torch.compile, fused or foreach "
            "optimizers), neither more FLOP/s nor more bandwidth.")
    if side == "compute":
        reached, peak = flops / time_in[side] / 1e12 / compute, "peak"
        roof = f"{precision} peak ({compute:.3g} TFLOP/s)"
        where = f"{share:.0%} of the step's time is in convolutions right of the ridge ({ridge:.0f} FLOP/byte),"
        helps = "only lower precision or fewer FLOPs help."
        limits = "memory layout, cache blocking, threads, dtype conversions"
    else:
        reached, peak, roof = nbytes / time_in[side] / 1e9 / band, "bandwidth", f"bandwidth ({band:.0f} GB/s)"
        where = (f"{share:.0%} of the step's time is in operators left of the ridge ({ridge:.0f} FLOP/byte) or "
                 "without FLOPs (batch norm, ReLU, add, the optimizer), moving bytes")
        helps = ("fewer passes over memory help (fusing elementwise operators, e.g. torch.compile; lower-precision "
                 "activations), more FLOP/s do not.")
        limits = "small or strided tensors, threads, dtype conversions, the cost of each operator"
    bound = f"{side}-bound"
    if reached > 1:
        return bound, f"{bound}: {where} above the measured {peak} (the probe underestimated it): {helps}"
    if round(reached, 2) >= NEAR:  # as the sentence says it
        return bound, f"{bound}: {where} at {reached:.0%} of the measured {roof}: {helps}"
    below = f"kernel-limited (below the {'compute' if side == 'compute' else 'bandwidth'} roof)"
    return below, (f"{below}: {where} at {reached:.0%} of the measured {roof}, under the {NEAR:.0%} from which a "
                   f"roof binds: their kernels' efficiency limits them ({limits}), not the {peak}; at the roof they "
                   f"would run up to {words.factor(1 / reached)} faster.")


# --- the figure -----------------------------------------------------------------------------------------

def plot_roofline(profile: dict, peaks: dict, precision: str | None = None, ax=None, label_top: int = 5):
    """Log-log roofline: the measured roofs, a point per layer (area ∝ its time), the `label_top` slowest shapes
    numbered and named beside the axes with the no-FLOP operators' time and GB/s."""
    plt = need("matplotlib.pyplot")
    precision, compute, band, ridge = roofs(profile, peaks, precision)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5))
    layers = profile["layers"]
    xs = [p["intensity"] for p in layers] + [ridge]
    lo, hi = min(xs) / 4, max(xs) * 4
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.loglog(grid, [min(compute, band * x / 1e3) for x in grid], color="black",
              label=f"{precision} {compute:.3g} TFLOP/s, {band:.0f} GB/s (measured)")
    for other in (p for p in DTYPES if p in peaks and p != precision):
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
