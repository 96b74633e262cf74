"""C8: accelerating the training step. Its settings (lab.engine.acceleration, which writes and reads its rows) train
on the on-device loader, interleaved by epoch; speed-ups of the step and of the whole epoch over steady epochs, a
starved loader flagged, what bounds the eager step (launches on CUDA, else its distance to the measured roofs); Q5:
one step compiled apart."""
from __future__ import annotations

import sys

import pandas as pd

from ..core import fields, results, stats
from ..core.config import Config
from ..core.fields import Field
from ..engine import acceleration, roofline
from ..engine.acceleration import BASELINE, BF16, FAST, FAST_PHASE, PLAN
from ..engine.fast import CPU_CANDIDATES, cpu_fast_probe
from ..engine.resolve import compute_precision, device_type, resolve
from . import display, plots
from .base import COMMON, Part, Runs, Work, claims, interleave, steady_epochs, step_setting
from .tables import memory, peak_share, ratio_range, report_peaks, step_flops, style

ID = "C8_acceleration"
QUESTIONS = (("C8", "Fastest step setting"), ("Q5", "What torch.compile does"))
Q5 = ("compiled", "eager", "compile step")  # Q5's claim: one step compiled apart against eager
STARVED_SHARE = 0.1  # a setting is loader-starved when this share of its batches waited (lab.engine.loop)
fields.define({"first_epoch_s": Field("first epoch s", "s"), "steady_train_s": Field("steady train s", "s"),
               "steady_epoch_s": Field("steady epoch s", "s"), "step_speed_up": "step speed-up", "batches": "batches",
               "epoch_speed_up": "epoch speed-up", "of_peak": "of peak", "starved_batches": "starved batches"})


def planned_probe(config: Config, params: dict, report) -> dict | None:
    """The --fast probe a plan assumes on a CPU: the report's given one, else this machine's cached one, asked once
    as a fact of the report (None: C8 measures it first)."""
    if report.fast_probe is not None or device_type(config.device) != "cpu":
        return report.fast_probe
    compiled = params.get("compile_settings", True)
    return report.fact("fast probe", lambda: cpu_fast_probe(config, measure=False, compiled=compiled))


def settings_of(config: Config, params: dict, report=None) -> tuple[list[Config], dict, dict]:
    """The settings, the left-out ones with why, and notes; planned (`report`) from the probe planned_probe says."""
    probe = planned_probe(config, params, report) if report else None
    return acceleration.configurations(config, params.get("max_autotune", False), params.get("compile_settings", True),
                                       measure=report is None, probe={} if report and probe is None else probe)


def runs(config: Config, params: dict, report) -> Runs:
    explain = params.get("explain_compile", True)  # Q5: a compilation, 2 + 2 x 4 timed and 2 x 2 profiled steps
    cpu = device_type(config.device) == "cpu"
    profiled = 2 + params["profile_steps"] + 1 + params["profile_steps"]  # step_profile, then layer_points
    extra = Work(steps=profiled + 14 * explain, runs=1 + explain, compiles=int(explain))
    if cpu and planned_probe(config, params, report) is None:  # C8 measures the --fast probe first: its candidates'
        each = acceleration.PROBE_STEPS // len(CPU_CANDIDATES)  # eager steps, priced by their setting
        extra += Work(steps=acceleration.PROBE_STEPS, settings=tuple(
            (step_setting({**c, "device_type": "cpu", "batch_size": config.batch_size, "compile": "off",
                           "loader": "tensor", "workers": 0}), each, 0, each) for c in CPU_CANDIDATES))
    return Runs(block=settings_of(config, params, report)[0], extra=extra)


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """The plan (with what is left out and why), the settings interleaved by epoch, the eager step profiled, Q5."""
    rows = results.Rows(report.results_dir, ID).start()
    block, skipped, notes = settings_of(config, params)
    sys.stderr.writelines(f"C8: {tag} left out: {reason}\n" for tag, reason in skipped.items())
    acceleration.save_plan(rows, [c.tag for c in block], skipped, notes)
    records = interleave(block, out)
    acceleration.measure_profile(config, out, rows, params["profile_steps"])
    account = acceleration.measure_account(config, rows, params.get("explain_compile", True))
    acceleration.save_compile_seconds(rows, records, account)
    return records


def explain_compile(account: dict, q5: stats.Comparison | None) -> str:
    """Q5: what torch.compile did, whether it made the step faster here (`q5`) and why; why its first epoch is slow."""
    if q5 is None or "step_s" not in account:
        why = f": {account['left_out']}" if "left_out" in account else " in this report"
        return f"**Q5 — what torch.compile does**: not measured{why}."
    before, after, cuda = account["before"], account["after"], account["device_type"] == "cuda"
    launches = f"; kernel launches per step {before['launches']:.0f} → {after['launches']:.0f}" if cuda else ""
    why = ("On a GPU, fewer and fused kernels mean fewer launches for the host to issue" if cuda else
           f"Convolutions took {before['conv_share']:.0%} of the eager step's CPU time ({after['conv_share']:.0%} of "
           "the compiled one's): fusing the element-wise work around them can only save the rest")
    kernels = f", {after['generated_kernels']:.0f} generated kernels" if after["generated_kernels"] else ""
    return (f"**Q5 — what torch.compile does**, one step compiled apart ({account['backend']}, batch "
            f"{account['batch_size']}): TorchDynamo captured the forward as "
            f"{stats.plural(int(account['graphs']), 'graph')} with "
            f"{stats.plural(int(account['graph_breaks']), 'graph break')} "
            f"({account['forward_ops_captured']:.0f} operators); per "
            f"training step, eager ran {before['aten_ops']:.0f} aten operators, the compiled step "
            f"{after['aten_ops']:.0f} (the rest fused into {after.get('compiled_graphs', 0):.0f} compiled graphs"
            f"{kernels}){launches}. {q5.sentence('step')} {why}. The first compiled step took "
            f"{account['first_compiled_step_s']:.1f} s against "
            f"{stats.mean(account['step_s']['compiled']):.2f} s for the next ones: **{account['compile_s']:.0f} s of "
            "compilation**, paid in the first epoch.")


def acceleration_table(df: pd.DataFrame, rows: pd.DataFrame | None = None, peaks: dict | None = None) -> pd.DataFrame:
    """Per setting: first epoch; steady step and epoch with their speed-ups over eager fp32, the step's share of
    `peaks`, starved batches, memory, loss, top-1; the plan's settings (`rows`) with no record, and why."""
    ok = df[df["status"] == "ok"].sort_values("epoch", kind="stable") if len(df) else df
    steady = stats.steady(ok, strict=True)  # a first epoch pays for compilation: never steady
    groups = {tag: (g, steady.loc[steady.index.intersection(g.index)]) for tag, g in ok.groupby("tag", sort=False)
              } if len(ok) else {}
    # the step's own memory: on CUDA the rise above what the block's other settings hold, on a CPU the process
    mem = memory(ok, "tag", strict=True).drop(columns=["workers_pss_bytes"], errors="ignore") if groups else None
    if groups and "cuda_peak_above_start_bytes" in mem:
        mem = mem.drop(columns=["host_peak_rss_bytes", "cuda_peak_allocated_bytes"], errors="ignore")
    samples = {tag: {k: stats.samples(later[k]) for k in ("train_s", "total_s")} for tag, (_, later) in groups.items()}
    base, table = samples.get(BASELINE), []
    for tag, (group, later) in groups.items():
        last, mine, timers = group.iloc[-1], samples[tag], group.iloc[-1].get("timers", "phase")
        starved = stats.mean(stats.samples(later["starved_batches"]) if "starved_batches" in later else [])
        batches = later["images"].mean() / later["batch_size"].mean()  # NaN without a steady epoch
        speed_up = {k: ratio_range(base[k], v) if base is not None and v else "—" for k, v in mine.items()}
        step, epoch = later["train_s"].mean(), later["total_s"].mean()  # the epoch's per batch where only it is timed
        of_peak = {"of_peak": peak_share(step_flops(last["batch_size"]), (epoch if pd.isna(step) else step) / batches,
                                         compute_precision(last["device_type"], last["amp"]), peaks, short=True)
                   } if peaks else {}
        table.append({"tag": tag, "timers": timers, "first_epoch_s": group["total_s"].iloc[0], "steady_train_s": step,
                      "steady_epoch_s": epoch, "step_speed_up": speed_up["train_s"],
                      "epoch_speed_up": speed_up["total_s"], **of_peak, "starved_batches": starved, "batches": batches,
                      "loader": "not measured (epoch timers)" if timers == "epoch" else "—" if pd.isna(starved) else
                      "starved" if starved >= STARVED_SHARE * batches else "keeps up", **mem.loc[tag],
                      "final loss": last["loss"], "test top1": last.get("test_top1", float("nan")),
                      "epochs": len(group), "status": "ok", "train_s samples": mine["train_s"],
                      "total_s samples": mine["total_s"], "test images": last.get("test_images", float("nan"))})
    table = pd.DataFrame(table).set_index("tag") if table else pd.DataFrame(columns=["status"])
    plan = rows[rows["kind"] == PLAN] if rows is not None else pd.DataFrame(columns=["metric", "setting", "text"])
    for tag, metric, reason in zip(plan["setting"], plan["metric"], plan["text"]):
        if metric == "left_out" or (metric == "planned" and tag not in groups):
            table.loc[tag, "status"] = "not measured: " + (
                reason if metric == "left_out" else "planned, but no finished epoch (failed or diverged)")
    return table


@plots.themed
def plot_acceleration(table: pd.DataFrame):
    table = table[table["status"] == "ok"][::-1]
    fig, ax = plots.pyplot().subplots(figsize=(8, 0.5 * len(table) + 1.6))
    ax.barh(table.index, table["steady_epoch_s"].fillna(0), color="#c6d4e8", label="steady-state epoch")
    ax.barh(table.index, table["steady_train_s"].fillna(0), color="#4c72b0", label="of which training step")
    ax.scatter(table["first_epoch_s"], table.index, color="#e4572e", zorder=3, label="first epoch")
    for y, (name, row) in enumerate(table.iterrows()):
        label = (f"epoch {row['epoch_speed_up'].split()[0]}" if row["epoch_speed_up"] != "—" else "") + (
            " ⚠ starved" if row["loader"] == "starved" else "")
        if label and not pd.isna(row["steady_epoch_s"]):
            ax.annotate(label, (row["steady_epoch_s"], y), xytext=(4, -4), textcoords="offset points", fontsize=8)
    ax.set_xlim(0, 1.3 * max(table["first_epoch_s"].max(), table["steady_epoch_s"].max(skipna=True) or 0))
    ax.set_xlabel("seconds per epoch")
    ax.set_title("Epoch time by setting" + (
        "" if table["steady_epoch_s"].notna().any() else " (one epoch each: no steady state)"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def speed_family(config: Config, params: dict, report) -> tuple[dict, list]:
    block = settings_of(config, params, report)[0]
    timed = {c.tag for c in block if resolve(c, log=lambda msg: None, measure=False).config.timers == "epoch"}
    return {c.tag: steady_epochs(c, strict=True) for c in block}, acceleration.claims([c.tag for c in block], timed)


def explain_acceleration(table: pd.DataFrame, result: dict) -> stats.Said:
    """Each setting against eager fp32 (`result`: the claims), starved steps, what per-phase timers cost, whether
    `fast` learns as well."""
    ok = table[table["status"] == "ok"]
    if BASELINE not in ok.index:
        return stats.Said("Eager fp32 (the baseline) did not finish here: no speed-up can be stated.")
    starved = {tag: f" ⚠ Starved: {row['starved_batches']:.0f} of {row['batches']:.0f} batches per epoch waited on "
               "the loader" for tag, row in ok.iterrows() if row["loader"] == "starved"}
    if result and all(c.verdict == stats.TOO_FEW for c in result.values()):
        c = next(iter(result.values()))
        lines = [f"Speed-ups: {stats.too_few(c.n, c.needed)} to name a faster setting among these {len(ok)} "
                 "settings."] + [f"**{tag}**{text}." for tag, text in starved.items()]
    else:
        lines = [f"**{tag}** — " + stats.together({"training step": result.get((tag, BASELINE, "step")),
                                                   "whole epoch": result[(tag, BASELINE, "epoch")]})
                 + (starved[tag] + ", so the step's gain does not reach the epoch." if tag in starved else "")
                 for tag in ok.index.drop(BASELINE)]
        if cost := result.get((FAST_PHASE, FAST, "epoch")):
            cost = stats.Comparison("per-phase timers", "epoch timers", cost.verdict, cost.p, cost.ratio, cost.low,
                                    cost.high, cost.n, cost.needed)
            lines.append("**The cost of measuring** (same `fast` setting, whole epoch): " + cost.sentence())
    if FAST in ok.index and ok["test top1"].notna().any():
        n, pair = ok["test images"].min(), {t: ok.loc[t, "test top1"] for t in (BASELINE, FAST)}
        lines.append("**Does fast learn as well?** " + ("not evaluated." if pd.isna(n) else
                                                         stats.accuracy_sentence(pair, int(n), "setting")))
    lines += [f"**{tag}**: {status}." for tag, status in table.loc[table["status"] != "ok", "status"].items()]
    return stats.Said("\n\n".join(lines), result.values())


def bound_verdict(profile: dict | None, table: pd.DataFrame, found: dict, peaks: dict | None = None) -> str:
    """What bounds the eager step, from its profile: on CUDA a GPU idle half the step or more is launch-bound; else
    the roof its operators are nearest (roofline.binding_roof against the report's measured `peaks`), where both
    were measured; and whether bf16 autocast helps."""
    if profile is None:
        return "The eager step was not profiled in this report."
    status = table.loc[BF16, "status"] if BF16 in table.index else "ok"
    measured = (f"{status}" if status != "ok" else "autocast bf16's sentence below"
                if (BF16, BASELINE, "step") in found else "not measured")
    lead, bf16 = "", ("bf16 autocast raises the compute roof only where the CPU has bf16 matrix units (AMX, "
                      "AVX512-BF16), and costs conversions elsewhere")
    if profile["device_type"] == "cuda":
        wall, busy = profile["wall_ms_per_step"], profile["device_busy_ms_per_step"]
        launches, share = profile["launches_per_step"], busy / wall if wall else float("nan")
        if share < 0.5:
            return (f"The GPU was busy {busy:.1f} ms of each {wall:.1f} ms eager step ({share:.0%}), with "
                    f"{launches:.0f} kernel launches per step: the step is **launch-bound** — the GPU waits for the "
                    "host to launch small kernels. bf16 shortens kernels that are not the bottleneck, so it cannot "
                    f"help much (measured here: {measured}); CUDA graphs (compile reduce-overhead, `fast`) replay "
                    "the whole step's kernels with one launch and remove that wait.")
        lead = (f"The GPU was busy {busy:.1f} ms of each {wall:.1f} ms eager step ({share:.0%}; {launches:.0f} "
                "kernel launches per step): the host keeps it fed. ")
        bf16 = "bf16 autocast (half the bytes, tensor cores) raises both roofs"
    points = profile.get("points")
    precision = points["precision"] if points else "fp32"
    if points is None or not roofline.has_roofs(peaks, precision):
        missing = ("the step was not profiled with shapes" if points is None else "this report measured no peaks"
                   if not peaks else f"this report measured no {precision} peak or no bandwidth")
        return (f"{lead}Which roof bounds the eager step was not measured ({missing}). {bf16}. Measured here: "
                f"{measured}.")
    roof, sentence = roofline.binding_roof(points, peaks, precision)
    return (f"{lead}The eager {precision} step, operator by operator against this machine's measured roofs: "
            f"**{roof}**{sentence[len(roof):]} {bf16}. Measured here: {measured}.")


def section(df: pd.DataFrame, results_dir, figures_dir=None) -> None:
    rows, found = results.read(results_dir, part=ID), claims(ID, verdicts, df, results_dir)
    if len(df):
        print(display.describe_run(df.iloc[0]))
    peaks = report_peaks(results_dir, df["device_type"].iloc[0]) if len(df) else None
    table = acceleration_table(df, rows, peaks)
    ran = table[table["status"] == "ok"]
    same = [c for c in ("epochs", "batches") if c in ran and len(ran) and ran[c].nunique() == 1]
    if same:  # said once above the table, not in a column per setting: the table fits the page
        one = {"epochs": "epoch", "batches": "batch"}
        display.show(display.markdown("Every measured setting ran " + " of ".join(
            stats.plural(int(ran[c].iloc[0]), one[c], c) for c in same) + (" each" if len(same) == 2 else "") + "."))
    display.show(style(table.drop(columns=["test images", *same], errors="ignore")))
    if len(ran):
        display.figure(plot_acceleration(table), ID, figures_dir)
    display.show(*(display.markdown(f"*{note}*") for note in rows.loc[rows["metric"] == "note", "text"]),
                 display.markdown(bound_verdict(acceleration.read_profile(rows), table, found, peaks)),
                 display.markdown(explain_acceleration(table, found)),
                 display.markdown(explain_compile(acceleration.read_account(rows), found.get(Q5))))


def verdicts(df: pd.DataFrame, results_dir) -> dict:
    """Every claim C8's sentences make: the section's speed family, and Q5's compiled step against eager."""
    rows = results.read(results_dir, part=ID)
    account = acceleration.read_account(rows)
    q5 = {Q5: acceleration.compile_verdict(account)} if "step_s" in account else {}
    return {**acceleration.speed_claims(acceleration_table(df, rows)), **q5}


def findings(df: pd.DataFrame, results_dir) -> list[display.Finding]:
    """C8: the fastest setting decidedly faster than eager fp32 over the whole epoch (else the verdict); Q5."""
    found = claims(ID, verdicts, df, results_dir)
    account = acceleration.read_account(results.read(results_dir, part=ID))
    epoch = [v for (a, b, m), v in found.items() if (b, m) == (BASELINE, "epoch")]
    best = max((v for v in epoch if v.verdict == "faster"), key=lambda v: v.ratio, default=epoch[0] if epoch else None)
    answer = ("eager fp32 or the other settings did not finish" if best is None else
              f"{stats.verdict_line(best)} (whole epoch)" if best.verdict == "faster" else
              "no setting is decidedly faster than eager fp32 over the whole epoch"
              if best.verdict == stats.NO_DIFFERENCE else stats.too_few(best.n, best.needed))
    c8 = display.Finding("C8", QUESTIONS[0][1], answer, stats.evidence_line(best) if best else "—", ID)
    if (q5 := found.get(Q5)) is None or "step_s" not in account:
        return [c8, display.Finding("Q5", QUESTIONS[1][1], "not measured" + (
            f": {account['left_out']}" if "left_out" in account else ""), "—", ID)]
    return [c8, display.Finding(
        "Q5", QUESTIONS[1][1], f"{stats.plural(int(account['graphs']), 'graph')}, "
        f"{stats.plural(int(account['graph_breaks']), 'break')}; "
        f"{account['before']['aten_ops']:.0f} → {account['after']['aten_ops']:.0f} operators per step; step: "
        f"{stats.verdict_line(q5)}; the first epoch pays {account['compile_s']:.0f} s of compilation",
        stats.evidence_line(q5), ID)]


PART = Part(ID, "C8 — Accelerating the training step", QUESTIONS,
            (*COMMON, "workers", "max_autotune", "compile_settings", "evaluate", "profile_steps", "explain_compile"),
            runs, section, findings, measure=measure, speed_family=speed_family, verdicts=verdicts,
            needs=("best_workers",), provides=("compile_s",))
