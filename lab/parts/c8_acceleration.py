"""C8: accelerating the training step. Every setting trains on the on-device batched loader, so only the step
changes: eager fp32 (the baseline), channels_last, cudnn.benchmark off (CUDA), autocast (bf16 on a CPU; fp16 and bf16 on CUDA),
torch.compile (default; reduce-overhead on CUDA; max-autotune opt-in), and `fast` (lab.engine.fast), also
with per-phase timers on CUDA to show what measuring costs. All settings run interleaved by epoch; the first
epoch pays for compilation and is never steady here. Speed-ups of the step and of the whole epoch are over
steady epochs, as ranges; a loader that starves the step is flagged. The eager step is profiled: launch- or
compute-bound."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from ..core import files, stats
from ..core.config import Config
from ..engine import progress
from ..engine.fast import c_compiler, cpu_fast_probe, setting_name
from ..engine.profiling import measure_compile, step_profile
from ..engine.resolve import compute_precision, device_type, resolve
from . import display, plots
from .base import Part, Runs, Work, interleave, steady_epochs
from .tables import memory, peak_share, ratio_range, report_peaks, step_flops, style

ID = "C8_acceleration"
BASELINE = "eager fp32"
FAST, FAST_PHASE = "fast", "fast (per-phase timers)"
BF16 = "autocast bf16"
QUESTIONS = (("C8", "Fastest step setting"), ("Q5", "What torch.compile does"))
SLOW = 3.0  # on a CPU, bf16 autocast measured this many times slower than fp32 is left out of the runs
STARVED_SHARE = 0.1  # a setting is loader-starved when this share of its batches waited (lab.engine.loop)
PLAN_FILE = "plan.json"


def bf16_emulated(probe: dict | None) -> str | None:
    """Why autocast bf16 is left out on this CPU, or None: the --fast probe's measurement where there is one,
    else oneDNN's report of the CPU's bf16 instructions (without them, bf16 is emulated and slower)."""
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
    """C8's settings, all on the on-device loader so that only the step changes: eager fp32 first (the
    baseline), then one change at a time, then `fast` with per-phase timers and `fast` itself (epoch
    timers, no host sync per step). Left out, each with its reason: bf16 on a CPU that emulates it
    (bf16_emulated), the per-phase-timer row on a CPU (no device to synchronize with: the two timers do the
    same work there), the compiled settings when `compiled` is False (a profile's choice: compiling costs a
    minute or more) or there is no C compiler, and `fast` on CUDA then (it compiles there); on a CPU `fast` is
    then --fast's choice among its eager candidates, as its probe measured it (`probe`).
    Returns (settings, skipped: tag -> reason)."""
    settings = [{"tag": BASELINE}, {"tag": "channels_last", "channels_last": True}]
    if device_type == "cuda":
        settings += [{"tag": "cudnn.benchmark off", "cudnn_benchmark": False},  # every other setting has it on
                     {"tag": "autocast fp16", "amp": "fp16"}, {"tag": BF16, "amp": "bf16"}]
        modes = ["default", "reduce-overhead"] + (["max-autotune"] if max_autotune else [])
    else:
        settings += [{"tag": BF16, "amp": "bf16"}]
        modes = ["default"]
    skipped = {}
    emulated = bf16_emulated(probe) if device_type == "cpu" else None
    if emulated:
        settings = [s for s in settings if s.get("amp") != "bf16"]
        skipped[BF16] = emulated
    if device_type == "cuda" and not max_autotune:
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
    if device_type == "cuda":
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


def settings_of(config: Config, params: dict, measure: bool = True, probe: dict | None = None) -> tuple[list, dict]:
    """The configurations and the left-out settings with their reasons. On a CPU, the --fast probe is
    measured where `measure` (once per CPU, cached; without its compiled stage where the profile leaves
    compilation out), else its cached result (`probe`: a given one instead, for an account of another machine)."""
    kind = device_type(config.device)
    compiled = params.get("compile_settings", True)
    if kind == "cpu" and probe is None:
        probe = cpu_fast_probe(config, measure=measure, compiled=compiled)
    settings, skipped = acceleration_settings(kind, params.get("max_autotune", False), probe, compiled)
    return [config.replace(**s) for s in settings], skipped


PROBE_STEPS = 4 * (1 + 4)  # the --fast probe's eager stage: 4 candidates, a warm-up and 4 rounds each


def runs(config: Config, params: dict, report) -> Runs:
    block, _ = settings_of(config, params, measure=False, probe=report.fast_probe)
    explain = params.get("explain_compile", True)  # Q5: a compilation, 2 + 2 x 4 timed and 2 x 2 profiled steps
    probe = device_type(config.device) == "cpu" and report.fast_probe is None and cpu_fast_probe(
        config, measure=False, compiled=params.get("compile_settings", True)) is None  # measured before the block
    return Runs(block=block, extra=Work(steps=2 + params["profile_steps"] + 14 * explain + PROBE_STEPS * probe,
                                        runs=1 + explain, compiles=int(explain)))


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """Every setting, interleaved by epoch; the plan (settings and the ones left out, with reasons) is saved
    beside the records so that the section can say what was not measured; then the eager step profiled."""
    block, skipped = settings_of(config, params)
    for tag, reason in skipped.items():
        print(f"C8: {tag} left out: {reason}", file=sys.stderr)
    notes = {}
    fast = next((c for c in block if c.tag == FAST), None)
    if fast is not None and not fast.fast:
        probe = cpu_fast_probe(config, measure=False, compiled=False) or {}
        notes[FAST] = (f"`fast` here is --fast's choice on this CPU among its eager candidates, "
                       f"{setting_name(probe.get('choice', {}))}, with one clock per epoch: {probe.get('reason', '')}"
                       f" (its probe, {PROBE_STEPS} steps interleaved; its compiled stage is left out with the "
                       "compiled settings)")
    files.save_json(Path(out) / PLAN_FILE, {"settings": [c.tag for c in block], "skipped": skipped, "notes": notes})
    records = interleave(block, out)
    progress.note(config.experiment, "profiling the eager step")
    step_profile(config.replace(loader="tensor", tag=BASELINE), out, "eager_fp32", steps=params["profile_steps"])
    if params.get("explain_compile", True):
        progress.note(config.experiment, "Q5: compiling one step apart")
        compile_account(config, out)
    else:
        files.save_json(Path(out) / COMPILE_FILE, {"skipped": "left out by this profile (explain_compile: false)"})
    return records


COMPILE_FILE = "compile.json"


def compile_account(config: Config, out, samples: int = 4, backend: str = "inductor") -> dict:
    """Q5, measured on this machine (lab.engine.profiling.measure_compile: what torch.compile did to the step,
    whether it made the step faster here, and what the first compiled step paid for compilation), saved as
    COMPILE_FILE in `out`; without a C compiler, the reason instead."""
    if backend == "inductor" and c_compiler() is None:
        account = {"skipped": "no C compiler found (install g++): torch.compile cannot build kernels here"}
    else:
        account = measure_compile(config, samples, backend)
    files.save_json(Path(out) / COMPILE_FILE, account)
    return account


def compile_verdict(account: dict) -> stats.Comparison:
    """The compiled step against the eager one, the account's steps as samples (a family of one claim)."""
    times = account["step_s"]
    samples = {name: [{"s": v} for v in times[name]] for name in ("compiled", "eager")}
    claim = ("compiled", "eager", "s")
    return stats.family(samples, [claim], sample="step", scope="Q5's claim")[claim]


def explain_compile(results_dir) -> str:
    """Q5, from the account: what torch.compile did, whether it made the step faster here and why, and why its
    first epoch is slower."""
    account = files.read_json(Path(results_dir) / ID / COMPILE_FILE)
    if not account:
        return "**Q5 — what torch.compile does**: not measured in this report."
    if "skipped" in account:
        return f"**Q5 — what torch.compile does**: not measured: {account['skipped']}."
    before, after = account["before"], account["after"]
    steady = stats.mean(account["step_s"]["compiled"])
    cuda = account["device_type"] == "cuda"
    launches = (f"; kernel launches per step {before['launches']:.0f} → {after['launches']:.0f}" if cuda else "")
    why = (f"Convolutions took {before['conv_share']:.0%} of the eager step's CPU time: on a CPU the step is "
           "compute-bound where they dominate, and fusing the element-wise work around them can only save the rest"
           if not cuda else "On a GPU, fewer and fused kernels mean fewer launches for the host to issue")
    return (f"**Q5 — what torch.compile does**, one step compiled apart ({account['backend']}, batch "
            f"{account['batch_size']}): TorchDynamo captured the forward as {account['graphs']} graph(s) with "
            f"{account['graph_breaks']} graph break(s) ({account['forward_ops_captured']} operators); per training "
            f"step, eager ran {before['aten_ops']:.0f} aten operators, the compiled step {after['aten_ops']:.0f} "
            f"(the rest fused into {after.get('compiled_graphs', 0):.0f} compiled graphs"
            + (f", {after['generated_kernels']:.0f} generated kernels" if after["generated_kernels"] else "")
            + f"){launches}. "
            f"{compile_verdict(account).sentence('step')} {why}. The first compiled step took "
            f"{account['first_compiled_step_s']:.1f} s against {steady:.2f} s for the next ones: "
            f"**{account['compile_s']:.0f} s of compilation**, paid in the first epoch.")


def compile_seconds(folder) -> float | None:
    """What compiling cost, measured in this part's folder (the report's estimate of a compilation on this
    machine): the compiled settings' first epochs beyond eager fp32's, else Q5's account of its one compilation
    (a profile without compiled settings still compiles there)."""
    records = files.read_jsonl(Path(folder) / "records.jsonl")
    first = {r["tag"]: r["total_s"] for r in records if r.get("epoch") == 1 and r.get("total_s")}
    compiled = [v - first[BASELINE] for t, v in first.items() if t.startswith("compile") and BASELINE in first]
    if compiled:
        return max(0.0, sum(compiled) / len(compiled))
    account = files.read_json(Path(folder) / COMPILE_FILE)
    return float(account["compile_s"]) if account and "compile_s" in account else None


def acceleration_table(df: pd.DataFrame, plan: dict | None = None) -> pd.DataFrame:
    """Per setting: the first epoch (pays for compilation and autotuning); the steady epochs: training
    time (the step) and whole epoch, each with its range, and the speed-up over eager fp32 of both (the
    step can speed up while the epoch does not: a starved step); starved batches; final loss and test
    top-1. Settings of the plan that left no record appear as 'not measured' with the reason."""
    ok = df[df["status"] == "ok"].sort_values("epoch", kind="stable")
    steady = stats.steady(ok, strict=True)  # a first epoch pays for compilation: never steady
    rows = []
    for tag, group in ok.groupby("tag", sort=False):
        later = steady.loc[steady.index.intersection(group.index)]
        last = group.iloc[-1]
        starved = stats.samples(later["starved_batches"]) if "starved_batches" in later else []
        batches = later["images"].mean() / later["batch_size"].mean() if len(later) else float("nan")
        rows.append({"tag": tag, "timers": last.get("timers", "phase"), "first epoch s": group["total_s"].iloc[0],
                     "steady train s": later["train_s"].mean() if len(later) else float("nan"),
                     "steady epoch s": later["total_s"].mean() if len(later) else float("nan"),
                     "train_s samples": stats.samples(later["train_s"]),
                     "total_s samples": stats.samples(later["total_s"]),
                     "starved batches": stats.mean(starved),
                     "batches": batches, "final loss": last["loss"],
                     "test top1": last.get("test_top1", float("nan")),
                     "test images": last.get("test_images", float("nan")), "epochs": len(group), "status": "ok"})
    table = pd.DataFrame(rows).set_index("tag") if rows else pd.DataFrame(columns=["status"])
    base = table.loc[BASELINE] if BASELINE in table.index else None
    for col, key in (("step speed-up", "train_s samples"), ("epoch speed-up", "total_s samples")):
        table[col] = [ratio_range(base[key], r[key]) if base is not None and r[key] else "—"
                      for _, r in table.iterrows()]
    table["loader"] = ["not measured (epoch timers)" if r["timers"] == "epoch" else
                       ("starved" if r["starved batches"] >= STARVED_SHARE * r["batches"] else "keeps up")
                       if not pd.isna(r["starved batches"]) else "—" for _, r in table.iterrows()]
    # the step's own memory: on CUDA the rise above what the block's other settings hold, on a CPU the process
    mem = memory(ok, "tag", strict=True).drop(columns=["workers_pss_bytes"], errors="ignore") if len(ok) else pd.DataFrame()
    if "cuda_peak_above_start_bytes" in mem:
        mem = mem.drop(columns=["host_peak_rss_bytes", "cuda_peak_allocated_bytes"], errors="ignore")
    table = table.join(mem)
    for tag in _not_measured(df, plan):
        table.loc[tag, "status"] = f"not measured: {_not_measured(df, plan)[tag]}"
    return table[["timers", "first epoch s", "steady train s", "steady epoch s", "step speed-up", "epoch speed-up",
                  "starved batches", "batches", "loader", *mem.columns, "final loss", "test top1", "epochs", "status",
                  "train_s samples", "total_s samples", "test images"]]


def _not_measured(df: pd.DataFrame, plan: dict | None) -> dict:
    if not plan:
        return {}
    measured = set(df.loc[df["status"] == "ok", "tag"]) if len(df) else set()
    missing = {t: "planned, but no finished epoch (failed or diverged)" for t in plan.get("settings", [])
               if t not in measured}
    return {**plan.get("skipped", {}), **missing}


@plots.themed
def plot_acceleration(table: pd.DataFrame, title: str = "Epoch time by setting"):
    table = table[table["status"] == "ok"]
    fig, ax = plots.pyplot().subplots(figsize=(8, 0.5 * len(table) + 1.6))
    names = list(table.index[::-1])
    ax.barh(names, table["steady epoch s"][::-1].fillna(0), color="#c6d4e8", label="steady-state epoch")
    ax.barh(names, table["steady train s"][::-1].fillna(0), color="#4c72b0", label="of which training step")
    ax.scatter(table["first epoch s"][::-1], names, color="#e4572e", zorder=3, label="first epoch")
    for y, (name, row) in enumerate(table[::-1].iterrows()):
        label = f"epoch {row['epoch speed-up'].split()[0]}" if row["epoch speed-up"] != "—" else ""
        if row["loader"] == "starved":
            label += " ⚠ starved"
        if label and not pd.isna(row["steady epoch s"]):
            ax.annotate(label, (row["steady epoch s"], y), xytext=(4, -4), textcoords="offset points", fontsize=8)
    ax.set_xlim(0, 1.3 * max(table["first epoch s"].max(), table["steady epoch s"].max(skipna=True) or 0))
    ax.set_xlabel("seconds per epoch")
    ax.set_title(title + ("" if table["steady epoch s"].notna().any() else " (one epoch each: no steady state)"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def claims(tags: list[str], epoch_timed: set) -> list[tuple[str, str, str]]:
    """The section's claims: each setting's whole epoch and (where its steps are timed) step against eager fp32,
    and per-phase against epoch timers for `fast`."""
    out = []
    for tag in tags:
        if tag != BASELINE:
            out += [(tag, BASELINE, "epoch")] + ([] if tag in epoch_timed else [(tag, BASELINE, "step")])
    return out + ([(FAST_PHASE, FAST, "epoch")] if {FAST, FAST_PHASE} <= set(tags) else [])


def speed_family(config: Config, params: dict, report) -> tuple[dict, list]:
    block, _ = settings_of(config, params, measure=False, probe=report.fast_probe)
    timed = {c.tag for c in block if resolve(c, log=lambda msg: None, measure=False).config.timers == "epoch"}
    return {c.tag: steady_epochs(c, strict=True) for c in block}, claims([c.tag for c in block], timed)


def speed_claims(table: pd.DataFrame) -> dict:
    """Every speed claim of this section, tested as one family (lab.core.stats.family): each setting's whole
    epoch and (where timed) step against eager fp32, and per-phase against epoch timers for `fast`. A sample is
    one steady epoch; keyed (setting, other setting, "epoch" or "step")."""
    ok = table[table["status"] == "ok"]
    if BASELINE not in ok.index:  # every claim is against eager fp32: none where it did not end ok
        return {}
    epochs = {tag: [{"epoch": e, "step": row["train_s samples"][i] if i < len(row["train_s samples"]) else None}
                    for i, e in enumerate(row["total_s samples"])] for tag, row in ok.iterrows()}
    family = claims(list(ok.index), set(ok.index[ok["timers"] == "epoch"]))
    return stats.family(epochs, family) if family else {}


def explain_acceleration(table: pd.DataFrame) -> stats.Said:
    """The sentences: each setting's step and epoch against eager fp32, starved steps, the cost of per-phase
    timers (one family of claims: speed_claims), and whether `fast` learned as well as eager fp32 (test top-1)."""
    ok = table[table["status"] == "ok"]
    if BASELINE not in ok.index:
        return stats.Said("Eager fp32 (the baseline) did not finish here: no speed-up can be stated.")
    result = speed_claims(table)
    lines = []
    if result and all(c.verdict == stats.TOO_FEW for c in result.values()):
        c = next(iter(result.values()))
        lines.append(f"Speed-ups: {stats.too_few(c.n, c.needed)} to name a faster setting among these "
                     f"{len(ok)} settings.")
        lines += [f"**{tag}** ⚠ Starved: {row['starved batches']:.0f} of {row['batches']:.0f} batches per epoch "
                  "waited on the loader." for tag, row in ok.iterrows() if row["loader"] == "starved"]
    else:
        for tag, row in ok.drop(index=BASELINE).iterrows():
            step = result.get((tag, BASELINE, "step")) if row["timers"] != "epoch" else None
            text = f"**{tag}** — " + stats.together({"training step": step,
                                                     "whole epoch": result[(tag, BASELINE, "epoch")]})
            if row["loader"] == "starved":
                text += (f" ⚠ Starved: {row['starved batches']:.0f} of {row['batches']:.0f} batches per epoch waited "
                         "on the loader, so the step's gain does not reach the epoch.")
            lines.append(text)
        if (FAST_PHASE, FAST, "epoch") in result:
            cost = result[(FAST_PHASE, FAST, "epoch")]
            cost = stats.Comparison("per-phase timers", "epoch timers", cost.verdict, cost.p, cost.ratio, cost.low,
                                    cost.high, cost.n, cost.needed)
            lines.append("**The cost of measuring** (same `fast` setting, whole epoch): " + cost.sentence())
    if FAST in ok.index and ok["test top1"].notna().any():
        n = ok["test images"].min()
        pair = {t: ok.loc[t, "test top1"] for t in (BASELINE, FAST)}
        lines.append("**Does fast learn as well?** " + (stats.accuracy_sentence(pair, int(n), "setting")
                                                         if not pd.isna(n) else "not evaluated."))
    for tag, row in table[table["status"] != "ok"].iterrows():
        lines.append(f"**{tag}**: {row['status']}.")
    return stats.Said("\n\n".join(lines), result.values())


def bound_verdict(profile: dict, bf16) -> str:
    """Launch-bound or compute-bound, from a step_profile, and why bf16 autocast does or does not help
    (`bf16`: a lab.core.stats.Comparison of the bf16 step against eager fp32, a sentence, or None)."""
    verdict = ("not measured." if bf16 is None else bf16 + "." if isinstance(bf16, str) else
               "autocast bf16's sentence below.")
    if profile.get("device_type") != "cuda":
        return ("On the CPU, operators run one after another on the host's threads: there are no kernel launches "
                "to hide, so the step is **compute-bound**. bf16 autocast helps only where the CPU has bf16 matrix "
                f"units (AMX, AVX512-BF16), and costs conversions elsewhere. Measured here: {verdict}")
    wall, busy, launches = profile["wall_ms_per_step"], profile["device_busy_ms_per_step"], profile["launches_per_step"]
    share = busy / wall if wall else float("nan")
    if share < 0.5:
        return (f"The GPU was busy {busy:.1f} ms of each {wall:.1f} ms eager step ({share:.0%}), with "
                f"{launches:.0f} kernel launches per step: the step is **launch-bound** — the GPU waits for the host "
                "to launch small kernels. bf16 shortens kernels that are not the bottleneck, so it cannot help much "
                f"(measured here: {verdict.rstrip('.')}); CUDA graphs (compile reduce-overhead, `fast`) replay the whole step's kernels with one "
                "launch and remove that wait.")
    return (f"The GPU was busy {busy:.1f} ms of each {wall:.1f} ms eager step ({share:.0%}; {launches:.0f} kernel "
            "launches per step): the step is **compute-bound**, so bf16 (half the bytes, tensor cores) can shorten "
            f"it. Measured here: {verdict}")


def bound_sentence(table: pd.DataFrame, results_dir) -> str:
    """C8's launch- or compute-bound sentence from the saved eager-step profile and the bf16 comparison."""
    path = Path(results_dir) / ID / "step_eager_fp32.json"
    if not path.exists():
        return "The eager step was not profiled in this report."
    ok = table[table["status"] == "ok"]
    bf16 = None
    if BF16 in table.index and table.loc[BF16, "status"] != "ok":
        bf16 = table.loc[BF16, "status"]
    if {BASELINE, BF16} <= set(ok.index):
        bf16 = speed_claims(table).get((BF16, BASELINE, "step"))  # a claim of the section's one family
    return bound_verdict(json.loads(path.read_text()), bf16)


def of_peak(table: pd.DataFrame, df: pd.DataFrame, results_dir) -> list[str]:
    """Each setting's steady step against this machine's measured peak of the precision it computes in (C11's
    peaks, from the report's start): the step's own time, or the epoch's per batch where only that is timed."""
    first = df.groupby("tag", sort=False).first()
    out = []
    for tag, row in table.iterrows():
        if row["status"] != "ok" or tag not in first.index:
            out.append("—")
            continue
        device, batch = first.loc[tag, "device_type"], first.loc[tag, "batch_size"]
        seconds = (row["steady train s"] if not pd.isna(row["steady train s"]) else row["steady epoch s"]) / row["batches"]
        out.append(peak_share(step_flops(batch), seconds, compute_precision(device, first.loc[tag, "amp"]),
                              report_peaks(results_dir, device), short=True))
    return out


def section(df: pd.DataFrame, results_dir, figures_dir=None) -> None:
    plan = files.read_json(Path(results_dir) / ID / PLAN_FILE)
    print(display.describe_run(df.iloc[0]))
    table = acceleration_table(df, plan)
    if report_peaks(results_dir, df["device_type"].iloc[0]):
        table.insert(table.columns.get_loc("epoch speed-up") + 1, "of peak", of_peak(table, df, results_dir))
    ran = table[table["status"] == "ok"]
    same = [c for c in ("epochs", "batches") if c in ran and len(ran) and ran[c].nunique() == 1]
    if same:  # said once above the table, not in a column per setting: the table fits the page
        one = {"epochs": "epoch", "batches": "batch"}
        display.show(display.markdown("Every measured setting ran " + " of ".join(
            stats.plural(int(ran[c].iloc[0]), one[c], c) for c in same) + (" each" if len(same) == 2 else "") + "."))
    display.show(style(table.drop(columns=["test images", *same])))
    display.figure(plot_acceleration(table), ID, figures_dir)
    notes = [f"*{note}*" for note in (plan or {}).get("notes", {}).values()]
    display.show(*map(display.markdown, notes), display.markdown(bound_sentence(table, results_dir)),
                 display.markdown(explain_acceleration(table)), display.markdown(explain_compile(results_dir)))


def findings(df: pd.DataFrame, results_dir=None) -> list[display.Finding]:
    """C8: the fastest setting decidedly faster than eager fp32 over the whole epoch (else the rule's verdict);
    Q5: what compiling did here, from the account."""
    table = acceleration_table(df, files.read_json(Path(results_dir) / ID / PLAN_FILE) if results_dir else None)
    result = speed_claims(table) if "status" in table else {}
    epoch = {c: v for c, v in result.items() if c[2] == "epoch" and c[1] == BASELINE}
    faster = [v for v in epoch.values() if v.verdict == "faster"]
    if faster:
        best = max(faster, key=lambda v: v.ratio)
        c8 = display.Finding("C8", QUESTIONS[0][1], f"{stats.verdict_line(best)} (whole epoch)",
                             stats.evidence_line(best), ID)
    elif epoch:
        c = next(iter(epoch.values()))
        c8 = display.Finding("C8", QUESTIONS[0][1], "no setting is decidedly faster than eager fp32 over the whole "
                             "epoch" if c.verdict == stats.NO_DIFFERENCE else stats.too_few(c.n, c.needed),
                             stats.evidence_line(c), ID)
    else:
        c8 = display.Finding("C8", QUESTIONS[0][1], "eager fp32 or the other settings did not finish", "—", ID)
    account = files.read_json(Path(results_dir) / ID / COMPILE_FILE) if results_dir else None
    if not account or "skipped" in account:
        q5 = display.Finding("Q5", QUESTIONS[1][1], "not measured" + (f": {account['skipped']}" if account else ""),
                             "—", ID)
    else:
        v = compile_verdict(account)
        q5 = display.Finding("Q5", QUESTIONS[1][1], f"{account['graphs']} graph(s), {account['graph_breaks']} "
                             f"break(s); {account['before']['aten_ops']:.0f} → {account['after']['aten_ops']:.0f} "
                             f"operators per step; step: {stats.verdict_line(v)}; the first epoch pays "
                             f"{account['compile_s']:.0f} s of compilation", stats.evidence_line(v), ID)
    return [c8, q5]


PART = Part(ID, "C8 — Accelerating the training step", QUESTIONS,
            ("workers", "max_autotune", "compile_settings", "evaluate", "profile_steps", "explain_compile"), runs,
            section, findings, measure=measure, speed_family=speed_family, uses_best_workers=True,
            compile_seconds=compile_seconds)
