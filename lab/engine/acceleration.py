"""C8's settings of the training step, as data, and which of them this machine leaves out with why (lab.bench's P3
measures the same settings). And what C8 measures beside its epochs, as rows (lab.core.results), each of a `kind`:
- "plan": metric planned (a `setting` it runs), left_out (a setting it does not run; `text`: why), note (`text`).
- "step profile" (setting eager fp32, `device`): wall_ms_per_step, device_busy_ms_per_step (ms; CUDA only),
  launches_per_step, steps.
- "layer profile" (setting eager fp32, `device`, `precision`, `batch`, `threads`, `steps`): the same step profiled
  with shapes, as lab.engine.roofline.point_rows writes it (step_s, unattributed_s; per `layer` with `op` and
  `label`: flops, bytes, seconds; per no-FLOP `group`: seconds, bytes, calls), for the roof that bounds it.
- "compile account" (Q5; `device`, `batch`, `backend`): graphs, graph_breaks, forward_ops_captured,
  first_compiled_step_s (s), break_reason (`text`, by `sample`); per `setting` eager and compiled: aten_ops,
  compiled_graphs, generated_kernels, launches (per step), conv_share, step_s (s, by `sample`). Or left_out (`text`).
And compile_s (s, no kind): what one compilation of the step cost here, for the report's estimate."""
from __future__ import annotations

import json

import pandas as pd
import torch

from ..core import results, stats
from ..core.config import Config
from . import progress, roofline
from .fast import c_compiler, cpu_fast_probe, setting_name
from .profiling import measure_compile, step_profile
from .resolve import device_type

BASELINE = "eager fp32"
FAST, FAST_PHASE = "fast", "fast (per-phase timers)"
BF16 = "autocast bf16"
SLOW = 3.0  # on a CPU, bf16 autocast measured this many times slower than fp32 is left out of the runs
PROBE_STEPS = 4 * (1 + 4)  # the --fast probe's eager stage: 4 candidates, a warm-up and 4 rounds each


def bf16_emulated(probe: dict | None) -> str | None:
    """Why autocast bf16 is left out on this CPU, or None: from the --fast probe's measurement where there is one,
    else from oneDNN's report of the CPU's bf16 instructions."""
    step_s = (probe or {}).get("step_s", {})
    fp32, bf16 = (step_s.get(json.dumps({"channels_last": False, "amp": a})) for a in ("off", "bf16"))
    if fp32 and bf16:
        return (f"the --fast probe measured its step at {bf16 / fp32:.1f}x eager fp32's on this CPU (no bf16 matrix "
                "units: bf16 is emulated), so it is left out of the runs") if bf16 > SLOW * fp32 else None
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "oneDNN reports no bf16 instructions on this CPU: bf16 would be emulated, several times slower than fp32"
    return None


def acceleration_settings(device_type: str, max_autotune: bool = False, probe: dict | None = None,
                          compiled: bool = True) -> tuple[list[dict], dict]:
    """(C8's settings, skipped: tag -> why), all on the on-device loader so that only the step changes: eager fp32
    (the baseline), one change at a time, then `fast` with per-phase timers and with epoch timers. Without
    compilation (`compiled` False, or no C compiler) `fast` on a CPU is --fast's eager choice, as `probe` measured."""
    cuda = device_type == "cuda"
    emulated = None if cuda else bf16_emulated(probe)
    settings = [{"tag": BASELINE}, {"tag": "channels_last", "channels_last": True}]
    if cuda:  # cudnn.benchmark: every other setting has it on
        settings += [{"tag": "cudnn.benchmark off", "cudnn_benchmark": False}, {"tag": "autocast fp16", "amp": "fp16"}]
    settings += [] if emulated else [{"tag": BF16, "amp": "bf16"}]
    skipped = {BF16: emulated} if emulated else {}
    modes = (["default", "reduce-overhead"] + (["max-autotune"] if max_autotune else [])) if cuda else ["default"]
    if cuda and not max_autotune:
        skipped["compile max-autotune"] = ("opt-in (parameter max_autotune): its autotuning takes minutes and "
                                           "floods the log")
    no_compile = (None if compiled and c_compiler() else
                  "no C compiler found (install g++): torch.compile cannot build kernels" if compiled else
                  "left out by this profile (compile_settings: false): compiling the training step takes a minute "
                  "or more, longer than the rest of this part; the full profile measures it")
    if no_compile:
        for mode in modes:
            skipped[f"compile {mode}"] = no_compile
    else:
        settings += [{"tag": f"compile {mode}", "compile": mode} for mode in modes]
    if cuda:
        if no_compile:
            skipped[FAST] = f"it compiles the step on this device: {no_compile}"
        else:
            settings += [{"tag": FAST_PHASE, "fast": True, "timers": "phase"}, {"tag": FAST, "fast": True}]
        return [{"loader": "tensor", **s} for s in settings], skipped
    skipped[FAST_PHASE] = ("on a CPU the per-phase timers have no device to synchronize with, so they do the same "
                           "work as epoch timers; the row is measured on CUDA")
    if not no_compile:
        settings += [{"tag": FAST, "fast": True}]
    else:  # --fast's own choice among its eager candidates, as its probe measured it (its compiled stage left out)
        choice = {k: v for k, v in ((probe or {}).get("choice") or {}).items() if k in ("channels_last", "amp")}
        settings += [{"tag": FAST, "timers": "epoch", **choice}]
    return [{"loader": "tensor", **s} for s in settings], skipped


def claims(tags: list[str], epoch_timed: set) -> list[tuple[str, str, str]]:
    """Each setting's whole epoch and (where its steps are timed, not in `epoch_timed`) its step against eager fp32,
    and `fast` with per-phase against epoch timers."""
    out = [(tag, BASELINE, metric) for tag in tags if tag != BASELINE for metric in ("epoch", "step")
           if metric == "epoch" or tag not in epoch_timed]
    return out + ([(FAST_PHASE, FAST, "epoch")] if {FAST, FAST_PHASE} <= set(tags) else [])


def speed_claims(table: pd.DataFrame) -> dict:
    """C8's claims from its table, decided as one family (a sample: a steady epoch); none without eager fp32."""
    ok = table[table["status"] == "ok"]
    epochs = {tag: [{"epoch": e, "step": row["train_s samples"][i] if i < len(row["train_s samples"]) else None}
                    for i, e in enumerate(row["total_s samples"])] for tag, row in ok.iterrows()}
    family = claims(list(ok.index), set(ok.index[ok["timers"] == "epoch"])) if BASELINE in ok.index else []
    return stats.family(epochs, family) if family else {}


def configurations(config: Config, max_autotune: bool = False, compiled: bool = True, measure: bool = True,
                   probe: dict | None = None) -> tuple[list[Config], dict, dict]:
    """The settings as configurations, the left-out ones with why, and notes (`fast` where it is --fast's eager
    choice). On a CPU the --fast probe is measured where `measure` (once per CPU, cached), else read from the cache;
    `probe`: a given one instead (an account of another machine)."""
    kind = device_type(config.device)
    if kind == "cpu" and probe is None:
        probe = cpu_fast_probe(config, measure=measure, compiled=compiled)
    settings, skipped = acceleration_settings(kind, max_autotune, probe, compiled)
    configs, notes = [config.replace(**s) for s in settings], {}
    if any(c.tag == FAST and not c.fast for c in configs):
        eager = cpu_fast_probe(config, measure=False, compiled=False) or {}
        notes[FAST] = (f"`fast` here is --fast's choice on this CPU among its eager candidates, "
                       f"{setting_name(eager.get('choice', {}))}, with one clock per epoch: {eager.get('reason', '')} "
                       f"(its probe, {PROBE_STEPS} steps interleaved; its compiled stage is left out with the "
                       "compiled settings)")
    return configs, skipped, notes


# --- as rows (lab.core.results), each of a kind ------------------------------------------------------------------

PLAN, PROFILE, LAYERS, ACCOUNT = "plan", "step profile", "layer profile", "compile account"
PROFILE_UNITS = {"wall_ms_per_step": "ms", "device_busy_ms_per_step": "ms", "launches_per_step": "launches",
                 "steps": "steps"}
COUNT_UNITS = {"graphs": "graphs", "graph_breaks": "breaks", "forward_ops_captured": "operators",
               "first_compiled_step_s": "s"}
OPS_UNITS = {"aten_ops": "operators/step", "compiled_graphs": "graphs/step", "generated_kernels": "kernels/step",
             "launches": "launches/step", "conv_share": "share of CPU time"}


def save_plan(rows: results.Rows, settings: list[str], skipped: dict, notes: dict) -> None:
    """The settings planned, left out (with why) and noted, as rows of kind PLAN."""
    plan = rows.scoped(kind=PLAN)
    plan.extend([plan.row("planned", setting=tag) for tag in settings]
                + [plan.row("left_out", text=reason, setting=tag) for tag, reason in skipped.items()]
                + [plan.row("note", text=note, setting=tag) for tag, note in notes.items()])


def measure_profile(config: Config, out, rows: results.Rows, steps: int) -> None:
    """The eager step profiled (step_profile: its operator table and trace in `out`), and again with shapes, a
    warm-up and `steps` steps (roofline.layer_points: its distance to the roofs), saved as rows."""
    progress.note(config.experiment, "profiling the eager step")
    save_profile(rows, step_profile(config.replace(loader="tensor", tag=BASELINE), out, "eager_fp32", steps=steps))
    save_points(rows, roofline.layer_points(batch=config.batch_size, device=device_type(config.device), steps=steps))


def save_profile(rows: results.Rows, profile: dict) -> None:
    """A step profile (lab.engine.profiling.step_profile) as rows of kind PROFILE."""
    step = rows.scoped(kind=PROFILE, setting=BASELINE, device=profile["device_type"])
    step.extend([step.row(m, profile[m], unit) for m, unit in PROFILE_UNITS.items() if profile[m] is not None])


def save_points(rows: results.Rows, profile: dict) -> None:
    """The step profiled with shapes (roofline.layer_points) as rows of kind LAYERS."""
    layers = rows.scoped(kind=LAYERS, setting=BASELINE, device=profile["device"], precision=profile["precision"],
                         batch=profile["batch"], threads=profile["threads"], steps=profile["steps"])
    layers.extend(roofline.point_rows(layers, profile))


def read_profile(rows: pd.DataFrame) -> dict | None:
    """The step profile among `rows`, keyed as step_profile returns it, with "points" (roofline.points' shape, its
    "precision" too; None where the step was not profiled with shapes); None where the step was not profiled."""
    step, layers = rows[rows["kind"] == PROFILE], rows[rows["kind"] == LAYERS]
    if not len(step):
        return None
    points = roofline.read_points(layers)
    return {"device_type": step["device"].iloc[0], **dict(zip(step["metric"], step["value"])),
            "points": points and {**points, "precision": layers["precision"].iloc[0]}}


def save_account(rows: results.Rows, account: dict) -> None:
    """A compile account (lab.engine.profiling.measure_compile) as rows of kind ACCOUNT."""
    q5 = rows.scoped(kind=ACCOUNT, device=account["device_type"], batch=account["batch_size"],
                     backend=account["backend"])
    out = [q5.row(m, account[m], unit) for m, unit in COUNT_UNITS.items()]
    out += [q5.row("break_reason", text=reason, sample=i) for i, reason in enumerate(account["break_reasons"])]
    for setting, ops in (("eager", account["before"]), ("compiled", account["after"])):
        out += [q5.row(m, v, OPS_UNITS[m], setting=setting) for m, v in ops.items()]
        out += [q5.row("step_s", v, "s", setting=setting, sample=i) for i, v in enumerate(account["step_s"][setting])]
    q5.extend(out)


def measure_account(config: Config, rows: results.Rows, wanted: bool = True, backend: str = "inductor") -> dict:
    """The compile account (one step compiled apart), measured and saved; else a left_out row says why."""
    reason = ("left out by this profile (explain_compile: false)" if not wanted else
              "no C compiler found (install g++): torch.compile cannot build kernels here"
              if backend == "inductor" and c_compiler() is None else None)
    if reason:
        rows.add("left_out", text=reason, kind=ACCOUNT)
        return {}
    progress.note(config.experiment, "Q5: compiling one step apart")
    account = measure_compile(config, backend=backend)
    save_account(rows, account)
    return account


def read_account(rows: pd.DataFrame) -> dict:
    """The compile account among `rows`, keyed as measure_compile returns it, with compile_s (the first compiled
    step less a steady one's mean); {"left_out": reason} where it was not measured; {} where none."""
    rows = rows[rows["kind"] == ACCOUNT]
    if not len(rows) or "left_out" in set(rows["metric"]):
        return {"left_out": results.value(rows, "left_out")} if len(rows) else {}
    counts = rows[rows["metric"].isin(list(COUNT_UNITS))]
    account = dict(zip(counts["metric"], counts["value"]), device_type=rows["device"].iloc[0],
                   batch_size=int(rows["batch"].iloc[0]), backend=rows["backend"].iloc[0])
    steps = rows[rows["metric"] == "step_s"].sort_values("sample")
    account["step_s"] = {s: list(steps.loc[steps["setting"] == s, "value"]) for s in ("eager", "compiled")}
    for setting, side in (("eager", "before"), ("compiled", "after")):
        ops = rows[(rows["setting"] == setting) & rows["metric"].isin(list(OPS_UNITS))]
        account[side] = dict(zip(ops["metric"], ops["value"]))
    account["compile_s"] = max(0.0, account["first_compiled_step_s"] - stats.mean(account["step_s"]["compiled"]))
    return account


def compile_verdict(account: dict) -> stats.Comparison:
    """The compiled step against the eager one, the account's steps as samples (a family of one claim)."""
    samples = {name: [{"s": v} for v in account["step_s"][name]] for name in ("compiled", "eager")}
    claim = ("compiled", "eager", "s")
    return stats.family(samples, [claim], sample="step", scope="Q5's claim")[claim]


def save_compile_seconds(rows: results.Rows, records: list[dict], account: dict) -> None:
    """What one compilation cost here (a row compile_s that the report's estimate reads): the compiled settings'
    first epochs beyond eager fp32's, else the compile account's; none where neither was measured."""
    first = {r["tag"]: r["total_s"] for r in records if r.get("epoch") == 1 and r.get("total_s")}
    compiled = [s - first[BASELINE] for tag, s in first.items() if tag.startswith("compile") and BASELINE in first]
    seconds = max(0.0, sum(compiled) / len(compiled)) if compiled else account.get("compile_s")
    if seconds is not None:
        rows.add("compile_s", seconds, "s")
