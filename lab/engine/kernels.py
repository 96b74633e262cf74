"""On CUDA, the profiled step kernel by kernel: torch._inductor.analysis.profile_analysis counts the FLOPs and bytes
of the operator that launched each kernel (against this machine's measured peaks, not its datasheet table; it
cannot count convolution_backward: docs/measuring.md); HolisticTraceAnalysis splits the GPU's time into compute,
other work and idle (a GPU idle most of the step is bound by the host launching it)."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import warnings
from pathlib import Path

from ..core.extras import need

PRECISION = {"float": "fp32", "float32": "fp32", "bfloat16": "bf16", "c10::BFloat16": "bf16", "float16": "fp16",
             "c10::Half": "fp16"}  # the profiler's dtype names → the peaks' names


def kernel_name(name: str) -> str:
    """A kernel's name without `void `, template arguments and parameters ('void f<4, ...>(...)' → 'f')."""
    name = re.sub(r"^void\s+", "", name.strip())
    depth, out = 0, []
    for ch in name:
        depth += ch in "<("
        if depth == 0:
            out.append(ch)
        depth -= ch in ">)" and depth > 0
    return "".join(out).strip() or name


def _precision(op: dict | None, step_precision: str) -> str:
    """The precision an operator computes in: its largest input's dtype; fp32 reads as the step's (tf32 where
    cuDNN/cuBLAS run fp32 as TF32)."""
    if not op:
        return step_precision
    args = op.get("args", {})
    dims, types = args.get("Input Dims", []), args.get("Input type", [])
    sizes = [sum(d) if isinstance(d, list) and all(isinstance(x, int) for x in d) else 0 for d in dims]
    kind = PRECISION.get(types[max(range(len(sizes)), key=sizes.__getitem__)]) if sizes and types else None
    if kind is None or kind == "fp32":
        return step_precision if step_precision in ("fp32", "tf32") else "fp32"
    return kind


def kernel_table(trace: dict, peaks: dict, step_precision: str, steps: int = 1) -> list[dict]:
    """Per kernel name, per step, slowest first: calls, seconds, operator, FLOPs, bytes, TFLOP/s, GB/s and their
    shares of the measured peak and bandwidth (None where not counted or above the probe's peak)."""
    analysis = need("torch._inductor.analysis.profile_analysis")
    counter = analysis.JsonProfile.__new__(analysis.JsonProfile)  # its counting methods, without its file
    events = trace.get("traceEvents", [])
    ops = {}
    for e in events:
        if e.get("cat") == "cpu_op" and "External id" in e.get("args", {}):
            ops.setdefault(e["args"]["External id"], e)
    band = max(peaks.get("copy_GBs", 0), peaks.get("triad_GBs", 0)) or None
    rows: dict[str, dict] = {}
    for e in (e for e in events if e.get("cat") == "kernel"):
        op = ops.get(e.get("args", {}).get("External id"))
        try:
            flop, gb = (float(counter.calculate_flops(op)), float(counter.estimate_gb(op))) if op else (0.0, 0.0)
        except Exception:  # noqa: BLE001 - its adapters raise what they cannot parse (convolution_backward)
            flop, gb = 0.0, 0.0
        name = kernel_name(e["name"])
        row = rows.setdefault(name, {
            "kernel": name, "operator": op["name"] if op else "—", "calls": 0, "seconds": 0.0,
            "flops": 0.0, "bytes": 0.0, "counted_s": 0.0, "precision": _precision(op, step_precision)})
        row["calls"] += 1
        row["seconds"] += e.get("dur", 0) / 1e6
        if flop > 0:
            row["flops"] += flop
            row["bytes"] += gb * 1e9
            row["counted_s"] += e.get("dur", 0) / 1e6
    total = sum(r["seconds"] for r in rows.values()) or 1.0
    out = []
    for r in sorted(rows.values(), key=lambda r: -r["seconds"]):
        counted_s, peak = r.pop("counted_s"), peaks.get(r["precision"])
        tflops = r["flops"] / counted_s / 1e12 if counted_s else None
        gbs = r["bytes"] / counted_s / 1e9 if counted_s else None
        out.append({**r, "calls": r["calls"] / steps, "seconds": r["seconds"] / steps,
                    "share_of_gpu_time": r["seconds"] / total, "flops": r["flops"] / steps,
                    "bytes": r["bytes"] / steps, "tflops": tflops,
                    "share_of_peak": tflops / peak if tflops and peak and tflops <= peak else None,
                    "GBs": gbs, "share_of_bandwidth": gbs / band if gbs and band and gbs <= band else None})
    return out


def time_breakdown(trace_path) -> dict | None:
    """HolisticTraceAnalysis's seconds of compute, other work and idle, their shares, and the kernel launches'
    median CPU cost and delay (µs); None where it is not installed."""
    try:
        trace_analysis = __import__("hta.trace_analysis", fromlist=["TraceAnalysis"])
    except ImportError:
        return None
    path = Path(trace_path)
    logging.getLogger("hta").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its pandas calls warn of deprecations, not of the trace
        analysis = trace_analysis.TraceAnalysis(trace_files={0: str(path)}, trace_dir=str(path.parent))
        breakdown = analysis.get_temporal_breakdown(visualize=False).iloc[0]
        launches = analysis.get_cuda_kernel_launch_stats(visualize=False).get(0)
    total = float(breakdown["kernel_time(us)"]) or 1.0
    result = {what: float(breakdown[f"{what}_time(us)"]) / 1e6 for what in ("idle", "compute", "non_compute")}
    result.update({f"{what}_share": result[what] * 1e6 / total for what in ("idle", "compute", "non_compute")})
    if launches is not None and len(launches):
        result.update(launches=int(len(launches)), launch_cpu_us=float(launches["cpu_duration"].median()),
                      launch_delay_us=float(launches["launch_delay"].median()))
    return result


def analyse(trace_path, peaks: dict, step_precision: str, steps: int, step_flops: float) -> dict:
    """The kernel table and time breakdown of a trace, and the share of `step_flops` profile_analysis counted."""
    table = kernel_table(json.loads(Path(trace_path).read_text()), peaks, step_precision, steps)
    counted = sum(r["flops"] for r in table)
    try:
        breakdown = time_breakdown(trace_path)
    except Exception as exc:  # noqa: BLE001 - an optional reading of a trace never costs the measured profile
        breakdown = {"failed": f"{type(exc).__name__}: {exc}"}
    return {"kernels": table, "counted_flops": counted, "counted_share": counted / step_flops if step_flops else None,
            "gpu_s": sum(r["seconds"] for r in table), "breakdown": breakdown}
