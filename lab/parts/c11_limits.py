"""C11 (beyond the lab): how far each step is from this machine's measured limits: the step's FLOPs, the peaks
(lab.engine.roofline), each step of C2, C8 and C10 against the peak of its precision, and the training step
profiled: a roofline per precision and the roof that binds it. Its rows (field device on each): the peaks where
the report has none, "flops" per kind, batch and category, and per profiled precision (fields precision, batch,
threads, steps) the step, its layers (field layer), no-FLOP groups (group) and on CUDA kernels (kernel)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core import fields, results, stats
from ..core.config import Config
from ..core.fields import Field
from ..engine import flops, kernels, progress, roofline
from ..engine.model import resnet18
from ..engine.resolve import compute_precision, device_type
from . import display, plots
from .base import COMMON, Part, Runs, Work, step_setting
from .tables import (PRECISIONS, load, peak_share, peak_unit, peaks_of, report_peaks, save_peaks, step_flops,
                     style)

ID = "C11_limits"
QUESTIONS = (("C11", "How far from the limit"),)
STEPS_FROM = ("C2_timing", "C8_acceleration")  # parts whose steady epoch records are training steps
CALLS_FROM = "C10_deploy"  # the part whose rows of metric "latency_p50_s" are batch-1 calls
# The units of a profile's kernels, named as lab.engine.kernels.analyse names them (its layers: roofline.point_rows)
KERNEL_UNITS = {"calls": "calls", "seconds": "s", "flops": "FLOP", "bytes": "bytes", "tflops": "TFLOP/s",
                "GBs": "GB/s", "share_of_gpu_time": "fraction", "share_of_peak": "fraction",
                "share_of_bandwidth": "fraction"}
BREAKDOWN_UNITS = {"idle": "s", "compute": "s", "non_compute": "s", "idle_share": "fraction",  # as breakdown_*
                   "compute_share": "fraction", "non_compute_share": "fraction", "launches": "launches",
                   "launch_cpu_us": "µs", "launch_delay_us": "µs"}
FIELDS = ("category", "steps", "op", "label", "group", "kernel", "operator", "kernel_precision")  # C11's own
GFLOP = 1e-9  # per FLOP
# its tables' columns: the FLOPs of a step per category and per image, each step against the peak, the kernels
fields.define({**{f"{c}_flops": Field(f"{c} GFLOP", "FLOP", GFLOP) for c in ("conv", "linear", "other", "total")},
               "flops_per_image": Field("GFLOP per image", "FLOP", GFLOP), "flops": Field("GFLOP", "FLOP", GFLOP),
               "measured_s": Field("measured s", "s"), "tflops": Field("TFLOP/s", "TFLOP/s"), "rate": "rate",
               "rate_unit": "rate unit",
               "share_of_peak": "share of peak", "at_peak_s": Field("at the peak s", "s"),
               "kernel": "kernel", "calls_per_step": "calls per step", "per_step_s": Field("ms per step", "s", 1000),
               "of_gpu_time": "of GPU time", "flops_per_step": Field("GFLOP per step", "FLOP", GFLOP),
               "of_peak": "of peak", "gb_per_s": Field("GB/s", "GB/s"), "of_bandwidth": "of bandwidth",
               "reached_by": "reached by"})


def precisions(device: str, native=None) -> list[str]:
    """The autocast settings the step is profiled in: fp32, and bf16 where the device computes it natively
    (`native()` says whether the CPU does; roofline.bf16_native where not given)."""
    return ["off"] + (["bf16"] if device == "cuda" or (native or roofline.bf16_native)() else [])


def runs(config: Config, params: dict, report) -> Runs:
    """Nothing trains: a warm-up and the profiled steps per precision (profiling with shapes costs about a step)."""
    device = device_type(config.device)
    each = 1 + 2 * params["profile_steps"]
    settings = tuple((step_setting({"device_type": device, "amp": amp, "batch_size": config.batch_size,
                                    "channels_last": False, "compile": "off", "loader": "tensor", "workers": 0}),
                      each, 0, each)  # priced by precision (lab.report.estimate); bf16's support: a report's fact
                     for amp in precisions(device, lambda: report.fact("bf16 native", roofline.bf16_native)))
    return Runs(extra=Work(steps=each * len(settings), settings=settings))


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """The peaks where the report has none, the FLOPs, and the step profiled per precision (its trace on CUDA)."""
    device = device_type(config.device)
    rows = results.Rows(report.results_dir, ID, device=device).start()
    peaks = report_peaks(report.results_dir, device)
    if peaks is None:
        progress.note(ID, "measuring this machine's peaks")
        peaks = roofline.machine_peaks(device)
        save_peaks(rows, device, peaks)
    model, batches = resnet18(), {"train": config.batch_size, "inference": 1}
    counts = {kind: flops.count(model, batch, kind == "train", device="meta") for kind, batch in batches.items()}
    rows.extend([rows.row("flops", n, "FLOP", kind=kind, batch=batches[kind], category=category)
                 for kind, count in counts.items() for category, n in count.items()])
    for amp in precisions(device):
        progress.note(ID, f"profiling the training step ({amp if amp != 'off' else 'fp32'})")
        trace = Path(out) / f"trace-{amp}.json" if device == "cuda" else None  # kernel by kernel on a GPU
        profile = roofline.layer_points(batch=config.batch_size, device=device, steps=params["profile_steps"],
                                        amp=amp, trace=trace)
        analysis = None if trace is None else kernels.analyse(trace, peaks, profile["precision"],
                                                              params["profile_steps"], counts["train"]["total"])
        rows.extend(profile_rows(rows.scoped(precision=profile["precision"], batch=config.batch_size,
                                             threads=profile["threads"], steps=profile["steps"]), profile, analysis))
    return []


def profile_rows(rows: results.Rows, profile: dict, analysis: dict | None = None) -> list[dict]:
    """A profiled step (roofline.layer_points) as rows; on CUDA (`analysis`: kernels.analyse) its kernels too."""
    out = [rows.row("machine", text=profile["machine"]), *roofline.point_rows(rows, profile)]
    if analysis is not None:
        out += [rows.row(metric, k[metric], unit, kernel=k["kernel"], operator=k["operator"],
                         kernel_precision=k["precision"])
                for k in analysis["kernels"] for metric, unit in KERNEL_UNITS.items()]
        b = analysis["breakdown"] or {}  # None: HolisticTraceAnalysis is not installed
        out += ([rows.row("breakdown_failed", text=b["failed"])] if "failed" in b else
                [rows.row(f"breakdown_{k}", v, BREAKDOWN_UNITS[k]) for k, v in b.items()])
    return out


def _metrics(rows: pd.DataFrame) -> dict:
    """{metric: value} of these rows (None where missing; the text where the row is words)."""
    return {m: t if isinstance(t, str) else None if pd.isna(v) else v
            for m, v, t in zip(rows["metric"], rows["value"], rows["text"])}


def _each(rows: pd.DataFrame, key: str, *fields) -> list[dict]:
    """Per value of the rows' field `key`, in their order: those `fields` and their metrics."""
    return [{**{f: g[f].iloc[0] for f in fields}, **_metrics(g)}
            for _, g in rows[rows[key].notna()].groupby(key, sort=False)]


def _profile(rows: pd.DataFrame, train_flops: float) -> dict:
    """One precision's profile rows back in layer_points' shape, with kernels.analyse's as "kernels" on CUDA."""
    step = _metrics(rows[rows[["layer", "group", "kernel"]].isna().all(axis=1)])
    profile = {"precision": rows["precision"].iloc[0], "batch": int(rows["batch"].iloc[0]), "machine": step["machine"],
               **roofline.read_points(rows)}
    table = _each(rows, "kernel", "kernel", "operator", "kernel_precision")
    for k in table:
        k["precision"] = k.pop("kernel_precision")
    if table:
        counted = sum(k["flops"] for k in table)
        breakdown = {m.removeprefix("breakdown_"): v for m, v in step.items() if m.startswith("breakdown_")}
        profile["kernels"] = {"kernels": table, "counted_flops": counted, "counted_share": counted / train_flops,
                              "gpu_s": sum(k["seconds"] for k in table), "breakdown": breakdown or None}
    return profile


def read(results_dir) -> dict | None:
    """{"device", "batch_size", "peaks" (the report's, else C11's), "flops": {kind: {category: FLOP}}, "profiles":
    {precision: profile}} from C11's rows; None where C11 did not run."""
    rows = results.read(results_dir, part=ID)
    rows = rows.reindex(columns=[*rows.columns, *(f for f in FIELDS if f not in rows)])
    counts = rows[(rows["metric"] == "flops") & rows["category"].notna()]
    if not len(counts):
        return None
    device = counts["device"].iloc[0]
    flops_of = {kind: dict(zip(g["category"], g["value"])) for kind, g in counts.groupby("kind", sort=False)}
    return {"device": device, "batch_size": int(counts.loc[counts["kind"] == "train", "batch"].iloc[0]),
            "peaks": report_peaks(results_dir, device) or peaks_of(rows).get(device, {}), "flops": flops_of,
            "profiles": {precision: _profile(g, flops_of["train"]["total"])
                         for precision, g in rows[rows["steps"].notna()].groupby("precision", sort=False)}}


# --- achieved against the peak, for any part's step ---------------------------------------------------------------

def achieved_table(results_dir, peaks: dict, device: str) -> pd.DataFrame:
    """C2's and each C8 setting's step and each C10 setting's batch-1 call against the peak of its precision."""
    rows = []

    def add(part, setting, work, seconds, precision):
        if not seconds or seconds != seconds:
            return
        row = {"part": part, "setting": setting, "flops": work, "measured_s": seconds, "precision": precision,
               "rate": work / seconds / 1e12, "rate_unit": peak_unit(precision),  # int8 counts TOPS, not FLOP/s
               "share_of_peak": f"no {precision} peak measured", "at_peak_s": None}
        if precision in peaks:
            rate = roofline.achieved(work, seconds, peaks[precision])
            row.update({"share_of_peak": "above the probe's peak" if rate["peak_underestimated"] else
                        f"{rate['share']:.0%}", "at_peak_s": rate["at_peak_s"]})
        rows.append(row)

    for part in STEPS_FROM:
        epochs = load(results_dir, experiment=part)
        calm = stats.steady(epochs) if len(epochs) else epochs
        calm = calm[calm["device_type"] == device] if len(calm) else calm  # the peaks are this device's
        for tag, g in (calm.groupby("tag", sort=False) if len(calm) else []):
            batch, per = int(g["batch_size"].iloc[0]), (g["images"] / g["batch_size"])
            step = (g["train_s"] / per).mean() if g["train_s"].notna().any() else (g["total_s"] / per).mean()
            amp = str(g["amp"].iloc[0]) if "amp" in g else "off"
            add(part, tag or "baseline run", step_flops(batch), float(step), compute_precision(device, amp))
    calls = results.read(results_dir, part=CALLS_FROM, metric="latency_p50_s")
    calls = calls[(calls["device"] == device) & (calls["side"].isna())]  # in-process calls, not C10.5's C++ ones
    for r in calls.sort_values("threads", kind="stable").to_dict("records"):
        add(CALLS_FROM, f"{r['setting']}, batch 1, {stats.plural(int(r['threads']), 'thread')}, p50",
            step_flops(1, train=False), r["value"], r["precision"])
    return pd.DataFrame(rows).set_index(["part", "setting"]) if rows else pd.DataFrame()


# --- the section --------------------------------------------------------------------------------------------------

def reached_by(peaks: dict, precision: str) -> str | None:
    """The probe that reached a precision's peak ('3×3 conv', '2048³ matmul'); None where the conditions lack it."""
    rates = peaks.get("conditions", {}).get("by_size", {}).get(precision)
    if not rates:
        return None
    best = max(rates, key=rates.get)
    return "3×3 conv" if best == "conv3x3" else f"{best}³ matmul"


def peaks_table(peaks: dict) -> pd.DataFrame:
    """Each measured limit, its unit, the probe that reached it; int8's row says why where it has no peak."""
    cond = peaks.get("conditions", {})
    rows = [{"limit": f"{p} matmul/conv peak", "value": peaks[p], "unit": "TFLOP/s", "reached_by": reached_by(peaks, p),
             "note": "emulated: no native instructions" if p in peaks.get("emulated", []) else "native"}
            for p in PRECISIONS if p in peaks]
    int8 = {"limit": "int8 matmul/conv peak", "value": peaks.get("int8"), "unit": "TOPS",
            "reached_by": reached_by(peaks, "int8")}
    rows.append({**int8, "note": f"native: {cond.get('int8_instructions', ['?'])[0]}" if "int8" in peaks else
                 cond.get("int8_missing", "not probed: peaks older than its probe")})
    arrays = f"{cond['array_bytes'] / 2**20:g} MiB arrays" if "array_bytes" in cond else None
    rows += [{"limit": limit, "value": peaks[key], "unit": "GB/s", "reached_by": arrays, "note": note}
             for key, limit, note in (("copy_GBs", "copy bandwidth", "2 bytes moved per byte"),
                                      ("triad_GBs", "triad bandwidth", "a = b + s·c: 3 per byte")) if key in peaks]
    return pd.DataFrame(rows, columns=["limit", "value", "unit", "reached_by", "note"]).set_index("limit")


def flops_table(result: dict) -> pd.DataFrame:
    return pd.DataFrame([{"what": what, "batch": per, **{f"{k}_flops": v for k, v in count.items()},
                          "flops_per_image": count["total"] / per}
                         for what, per, count in (
                             ("training step (forward + backward)", result["batch_size"], result["flops"]["train"]),
                             ("inference (forward)", 1, result["flops"]["inference"]))]).set_index("what")


def explain(result: dict) -> list[str]:
    """Per precision: the step against the peak of the precision it computes in, and which roof binds it."""
    lines, peaks = [], result["peaks"]
    train = result["flops"]["train"]["total"]
    for precision, profile in result["profiles"].items():
        if not roofline.has_roofs(peaks, precision):
            continue
        rate = roofline.achieved(train, profile["step_s"], peaks[precision])
        at = ("above the measured peak: the probe underestimated it" if rate["peak_underestimated"] else
              f"at this machine's measured {precision} peak ({peaks[precision]:.3g} TFLOP/s) the step would take "
              f"{rate['at_peak_s']:.3g} s; it took {profile['step_s']:.3g} s under the profiler: "
              f"{rate['share']:.0%} of the peak")
        _, binding = roofline.binding_roof(profile, peaks)
        lines.append(f"**{precision}** ({train / 1e9:.0f} GFLOP per step at batch {result['batch_size']}): {at}. "
                     f"{binding[0].upper() + binding[1:]}")
    return lines


def kernels_frame(analysis: dict, top: int = 12) -> pd.DataFrame:
    """The `top` slowest kernels per step against the measured peak and bandwidth ('—' where nothing is counted)."""
    def share(value):
        return "—" if value is None else f"{value:.0%}"

    rows = [{"kernel": k["kernel"], "operator": k["operator"], "calls_per_step": k["calls"],
             "per_step_s": k["seconds"], "of_gpu_time": share(k["share_of_gpu_time"]),
             "flops_per_step": k["flops"] or None, "tflops": "—" if k["tflops"] is None else k["tflops"],
             "of_peak": "—" if k["tflops"] is None else
             (f"{share(k['share_of_peak'])} of {k['precision']}" if k["share_of_peak"] is not None
              else "over the probe's peak"),
             "gb_per_s": "—" if k["GBs"] is None else k["GBs"], "of_bandwidth": share(k["share_of_bandwidth"])}
            for k in analysis["kernels"][:top]]
    return pd.DataFrame(rows).set_index("kernel")


def kernels_sentence(analysis: dict, precision: str, train_flops: float) -> str:
    """How busy the GPU was (HolisticTraceAnalysis) and what share of the step's FLOPs the kernels carry."""
    text = (f"**{precision} step, kernel by kernel** ({len(analysis['kernels'])} kernels, "
            f"{analysis['gpu_s'] * 1e3:.3g} ms of kernel time per step): profile_analysis counted "
            f"{analysis['counted_flops'] / 1e9:.3g} of the step's {train_flops / 1e9:.0f} GFLOP "
            f"({analysis['counted_share']:.0%}; it sizes convolutions without their padding and cannot count "
            f"convolution_backward, docs/measuring.md).")
    b = analysis.get("breakdown")
    if not b:
        return text + " HolisticTraceAnalysis is not installed: no idle/compute breakdown."
    if "failed" in b:
        return text + f" HolisticTraceAnalysis could not read the trace ({b['failed']}): no idle/compute breakdown."
    text += (f" HolisticTraceAnalysis: over the profiled steps the GPU ran compute kernels "
             f"{b['compute_share']:.0%} of the time, other work (copies, memsets) {b['non_compute_share']:.0%}, and "
             f"sat idle {b['idle_share']:.0%}")
    if "launches" in b:
        text += (f"; {b['launches']:.0f} kernel launches cost the CPU {b['launch_cpu_us']:.3g} µs each and started "
                 f"{b['launch_delay_us']:.3g} µs after it (medians)")
    if b["idle_share"] >= 0.5:
        text += (": launch-bound, the GPU waits for the host more than it computes; fewer, larger kernels help "
                 "(CUDA graphs through torch.compile's reduce-overhead, fused optimizers), more FLOP/s do not")
    return text + "."


def section(records, results_dir=None, figures_dir=None) -> None:
    result = read(results_dir)
    peaks = result["peaks"]
    cond = peaks.get("conditions", {})
    display.show(display.markdown(f"**This machine's measured limits** ({cond.get('machine', '?')}, "
                                  f"{cond.get('threads', '?')} threads, measured {cond.get('date', '?')} in "
                                  f"{cond.get('seconds', '?')} s; other processes kept "
                                  f"{cond.get('others_load_before', 0):.0%} of the cores busy):"),
                 style(peaks_table(peaks)), display.markdown("**FLOPs** (FlopCounterMode, equal to the layers' "
                                                             "formula; batch norm, ReLU, add and the optimizer "
                                                             "count 0):"), style(flops_table(result)))
    table = achieved_table(results_dir, peaks, result["device"])
    if len(table):
        display.show(display.markdown("**Each step of this report against the peak of the precision it computes "
                                      "in** (C2 and C8: steady steps; C10: batch-1 calls, p50):"), style(table))
    for line in explain(result):
        display.show(display.markdown(line))
    for profile in result["profiles"].values():
        if not roofline.has_roofs(peaks, profile["precision"]):
            display.show(display.markdown(f"No roofline for {profile['precision']}: its peak or the bandwidth was "
                                          "not measured in this report."))
            continue
        display.figure(plot(profile, peaks), f"C11_roofline_{profile['precision']}", figures_dir)
        if "kernels" in profile:
            display.show(display.markdown(kernels_sentence(profile["kernels"], profile["precision"],
                                                           result["flops"]["train"]["total"])),
                         style(kernels_frame(profile["kernels"])))


@plots.themed
def plot(profile: dict, peaks: dict):
    fig, ax = plots.pyplot().subplots(figsize=(9, 5))
    roofline.plot_roofline(profile, peaks, ax=ax)
    fig.tight_layout()
    return fig


def findings(records, results_dir=None) -> list[display.Finding]:
    result = read(results_dir)
    peaks, train = result["peaks"], result["flops"]["train"]["total"]
    parts = []
    for profile in result["profiles"].values():
        precision = profile["precision"]
        if roofline.has_roofs(peaks, precision):
            roof, _ = roofline.binding_roof(profile, peaks)
            idle = (profile.get("kernels") or {}).get("breakdown") or {}
            gpu = f", GPU idle {idle['idle_share']:.0%} of the step" if "idle_share" in idle else ""
            parts.append(f"{precision} step {peak_share(train, profile['step_s'], precision, peaks)}; {roof}{gpu}")
    measured = [f"{p} {peaks[p]:.3g} TFLOP/s" for p in ("fp32", "tf32", "bf16") if p in peaks]
    measured += [f"int8 {peaks['int8']:.3g} TOPS"] if "int8" in peaks else []
    measured += [f"copy {peaks['copy_GBs']:.0f} GB/s"] if "copy_GBs" in peaks else []
    evidence = (", ".join(measured) + " (measured); " if measured else "no peaks measured; ") + (
        f"{train / 1e9:.0f} GFLOP per step at batch {result['batch_size']}")
    return [display.Finding("C11", QUESTIONS[0][1], "; ".join(parts) or "not measured", evidence, ID)]


PART = Part(ID, "C11 — How far from the limit", QUESTIONS, (*COMMON, "profile_steps"), runs, section, findings,
            measure=measure)
