"""The report's sentences, written from measured numbers: every "faster", "more" or "better" goes through
lab.stats.compare (a winner only where the ranges do not overlap); provenance and durations for the header."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import stats
from .tables import load, operators_table


def _workers(n: int) -> str:
    return f"{n} worker" + ("" if n == 1 else "s")


def explain_workers(table: pd.DataFrame) -> str:
    """C4's explanation, written from the measured numbers of a workers_comparison table (1 worker first,
    then the best count); every 'more'/'less' goes through lab.stats.compare."""
    (name_a, a), (name_b, b) = list(table.iterrows())[:2]
    share_a, share_b = a["load_s"] / a["total_s"], b["load_s"] / b["total_s"]
    lines = [f"With **{name_a}**, the training loop waited **{a['load_s']:.3f} s** per epoch for data"
             f"{stats.range_note(a['load_s samples'])}, {share_a:.0%} of the {a['total_s']:.3f} s epoch; compute "
             f"took {a['train_s']:.3f} s{stats.range_note(a['train_s samples'])}.",
             f"With **{name_b}**, the wait was **{b['load_s']:.3f} s**{stats.range_note(b['load_s samples'])}, "
             f"{share_b:.0%} of {b['total_s']:.3f} s; compute took {b['train_s']:.3f} s"
             f"{stats.range_note(b['train_s samples'])}."]
    wa, wb, cores = int(a["workers"]), int(b["workers"]), int(b.get("host_cpus", 0) or 0)
    load = stats.compare(b["load_s samples"], a["load_s samples"], _workers(wb), _workers(wa))
    compute = stats.compare(b["train_s samples"], a["train_s samples"], _workers(wb), _workers(wa))
    if wa == wb:
        lines.append(f"C3's best count is {_workers(wb)}, the same as the baseline: the two rows measure the "
                     "same setting twice, and their difference is the noise.")
    elif load.verdict == stats.TOO_FEW:
        lines.append(f"Wait for data: {stats.TOO_FEW}.")
    elif not load.decided:
        lines.append(f"Wait for data: {load.verdict}. Loading is not what separates these settings here.")
    else:
        lines.append(f"Wait for data: {load.sentence()}")
        if load.verdict == "faster" and wb > wa:
            lines.append("Why: while the main process computes a batch, the workers decode, crop, flip and "
                         "normalize the next ones in parallel, so `next()` finds a batch ready instead of "
                         "preparing it on the spot.")
        elif load.verdict == "faster":
            lines.append("Why: handing each batch over between processes (pickling, shared memory) costs more "
                         "than the preparation a worker takes off the main process at this step time.")
    if wa != wb:
        busy = max(wa, wb) + 1  # loader processes + the training process
        if compute.decided:
            lines.append(f"Compute: {compute.sentence()}" + (
                f" With {busy} busy processes on {cores} CPU cores, the loader workers compete with the training "
                "step for the cores." if cores and busy > cores else
                f" With {cores} CPU cores for {busy} processes, core sharing does not explain it; look at the "
                "profiles below."))
        else:
            lines.append(f"Compute: {compute.verdict} between {_workers(wa)} and {_workers(wb)}.")
    bound = "data loading" if share_b > 0.5 else "computation"
    lines.append(f"At the best setting the epoch is bound by **{bound}** "
                 f"(loading {share_b:.0%}, compute {b['train_s'] / b['total_s']:.0%}).")
    return "\n\n".join(lines)


def explain_devices(df: pd.DataFrame) -> str:
    """C5's sentence, per batch (a capped CPU run has fewer batches), for the step and the whole epoch."""
    ok = df[df["status"] == "ok"]
    if ok["device_type"].nunique() < 2:
        missing = sorted(set(df["device_type"]) - set(ok["device_type"]))
        return ("Only one device was measured" + (f" ({', '.join(missing)} not available)" if missing else "")
                + ": nothing to compare.")
    steady = stats.steady(ok)
    per_batch = {d: (stats.samples(g["train_s"] / (g["images"] / g["batch_size"])),
                     stats.samples(g["total_s"] / (g["images"] / g["batch_size"])))
                 for d, g in steady.groupby("device_type", sort=False)}
    (d1, (s1, e1)), (d2, (s2, e2)) = list(per_batch.items())[:2]
    return "\n\n".join([stats.compare(s1, s2, d1, d2).sentence("training step, per batch"),
                         stats.compare(e1, e2, d1, d2).sentence("whole epoch, per batch")])


def describe_run(record: dict) -> str:
    """One line saying what a record measured, for the top of a table."""
    bn = "" if record.get("batch_norm", True) else ", no batch norm"
    loader = "on-device loader" if record.get("loader") == "tensor" else f"{record['workers']} workers"
    return (f"ResNet-18{bn}, {record['optimizer']} lr {record['lr']}, batch {record['batch_size']}, "
            f"{loader}, max_batches {record['max_batches']}, on {record['device_name']} "
            f"({record['device_type']}), {record['dataset_kind']} data, torch {record['torch_version']}, "
            f"commit {record['git_commit']}")


def explain_comparison(table: pd.DataFrame, what: str) -> str:
    """Speed: the fastest and slowest training time, named only outside the noise (lab.stats). Learning:
    test top-1 with 95 % intervals where the runs were evaluated; training losses say nothing here."""
    ok = table[table["status"] == "ok"]
    lines = []
    if len(ok):
        lines.append("Speed: " + stats.rank(ok["train_s samples"].to_dict(), f"training seconds per epoch, {what}s"))
        n = ok["test images"].min() if "test images" in ok else float("nan")
        if ok["test top1"].notna().any() and n == n:
            lines.append("Learning: " + stats.accuracy_sentence(ok["test top1"].to_dict(), int(n), what))
        else:
            lines.append("Learning: not compared (the runs were not evaluated on the test set).")
    diverged = list(table.index[table["status"] == "diverged"])
    if diverged:
        lines.append(f"Diverged (loss became NaN/inf, run stopped): {', '.join(map(str, diverged))}.")
    return "\n\n".join(lines) or "No run finished."


def header_html(results_dir, profile: str) -> str:
    """The report's provenance block, with a loud banner when any number came from synthetic data."""
    import html
    import json

    epochs = load(results_dir)

    meta_file = Path(results_dir) / "report.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    measured = epochs[epochs["status"] != "unavailable"] if len(epochs) else epochs
    def values(col):
        return ", ".join(sorted({str(v) for v in measured[col].dropna()})) if col in measured and len(measured) else "—"
    rows = {"report": meta.get("id", Path(results_dir).name), "profile": meta.get("profile", profile),
            "date": meta.get("started", values("time")), "device": values("device_name"),
            "data set": values("dataset_kind"), "torch": values("torch_version"), "commit": values("git_commit"),
            "host CPUs": values("host_cpus"), "records": f"{len(measured)} epoch records",
            "notebooks": notebook_durations(meta)}
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
                   f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    banner = ""
    if "synthetic" in set(epochs.get("dataset_kind", [])):
        banner = ("<div style='border:3px solid #c0392b;background:#fdecea;color:#922b21;padding:10px;"
                  "margin:10px 0;font-size:1.15em;font-weight:bold'>SYNTHETIC DATA: CIFAR-10 was not available, so "
                  "these runs used synthetic images in the CIFAR-10 file format, through the same loading path. "
                  "Timings are real measurements of the pipeline; losses and accuracies are not CIFAR-10 results."
                  "</div>")
    return (f"<h1>ResNet-18 on CIFAR-10: where the time goes</h1>{banner}"
            f"<table class='provenance'>{body}</table>")


def notebook_durations(meta: dict) -> str:
    """Each planned notebook's duration, and the ones that did not run (a report missing a part says so)."""
    done, planned = meta.get("done", {}), list(meta.get("parameters", {}))
    if not planned:
        return "—"
    ran = ", ".join(f"{n} {done[n]:.0f} s" for n in planned if n in done)
    missing = [n for n in planned if n not in done]
    return ran + (f"; DID NOT RUN: {', '.join(missing)}" if missing else "")


def explain_acceleration(table: pd.DataFrame) -> str:
    """C8's sentences: each setting's step and epoch against eager fp32 (lab.stats), starved steps, the
    cost of per-phase timers, and whether `fast` learned as well as eager fp32 (test top-1)."""
    ok = table[table["status"] == "ok"]
    if "eager fp32" not in ok.index:
        return "Eager fp32 (the baseline) did not finish here: no speed-up can be stated."
    base = ok.loc["eager fp32"]
    lines = []
    if max(len(v) for v in ok["total_s samples"]) < stats.MIN_SAMPLES:
        lines.append(f"Speed-ups: {stats.TOO_FEW}; run at least 3 epochs per setting.")
    else:
        for tag, row in ok.drop(index="eager fp32").iterrows():
            step = stats.compare(row["train_s samples"], base["train_s samples"], tag, "eager fp32")
            epoch = stats.compare(row["total_s samples"], base["total_s samples"], tag, "eager fp32")
            text = f"**{tag}** — whole epoch: {epoch.sentence()}"
            if row["timers"] != "epoch":
                text += f" Step: {step.sentence()}"
            if row["loader"] == "starved":
                text += (f" ⚠ Starved: {row['starved batches']:.0f} of {row['batches']:.0f} batches per epoch waited "
                         "on the loader, so the step's gain does not reach the epoch.")
            lines.append(text)
        if {"fast", "fast (per-phase timers)"} <= set(ok.index):
            cost = stats.compare(ok.loc["fast (per-phase timers)", "total_s samples"],
                                 ok.loc["fast", "total_s samples"], "per-phase timers", "epoch timers")
            lines.append("**The cost of measuring** (same `fast` setting, whole epoch): " + cost.sentence())
    if "fast" in ok.index and ok["test top1"].notna().any():
        n = ok["test images"].min()
        pair = {t: ok.loc[t, "test top1"] for t in ("eager fp32", "fast")}
        lines.append("**Does fast learn as well?** " + (stats.accuracy_sentence(pair, int(n), "setting")
                                                         if n == n else "not evaluated."))
    for tag, row in table[table["status"] != "ok"].iterrows():
        lines.append(f"**{tag}**: {row['status']}.")
    return "\n\n".join(lines)


def bound_sentence(table: pd.DataFrame, results_dir) -> str:
    """C8's launch- or compute-bound sentence from the saved eager-step profile and the bf16 comparison."""
    import json

    from .profiling import bound_sentence as sentence

    path = Path(results_dir) / "C8_acceleration" / "step_eager_fp32.json"
    if not path.exists():
        return "The eager step was not profiled in this report."
    ok = table[table["status"] == "ok"]
    bf16 = None
    if "autocast bf16" in table.index and table.loc["autocast bf16", "status"] != "ok":
        bf16 = table.loc["autocast bf16", "status"]
    if {"eager fp32", "autocast bf16"} <= set(ok.index):
        bf16 = stats.compare(ok.loc["autocast bf16", "train_s samples"], ok.loc["eager fp32", "train_s samples"],
                             "autocast bf16", "eager fp32")
    return sentence(json.loads(path.read_text()), bf16)


def profiler_html(results_dir, top: int = 10) -> str:
    """C4's profiler tables (top operators by self CPU time) with links to the saved traces."""
    import html

    folder = Path(results_dir) / "C4_workers_profile"
    parts = []
    for label, title in (("1_worker", "1 worker"), ("best", "best worker count")):
        csv = folder / f"ops_{label}.csv"
        if not csv.exists():
            continue
        trace = f"C4_workers_profile/trace_{label}.json"
        parts.append(f"<h4>torch.profiler, {title}: top {top} operators by self CPU time per step</h4>"
                     + operators_table(csv, top).style.format(precision=2).to_html()
                     + f"<p>Trace: <a href='{html.escape(trace)}'>{html.escape(trace)}</a> "
                       "(open in chrome://tracing or ui.perfetto.dev)</p>")
    return "".join(parts) or "<p>No profiler tables in this report.</p>"


def explain_scaling(df: pd.DataFrame) -> str:
    """The C9 sentences: each N-process setting against 1 process, in time per image (lab.stats)."""
    ok = stats.steady(df[df["status"] == "ok"])
    if "1 process" not in set(ok["tag"]):
        return "The 1-process baseline did not run: no speed-up can be stated."
    per_image = {tag: stats.samples(g.groupby("epoch")["slowest_total_s"].max() / g.groupby("epoch")["images"].sum())
                 for tag, g in ok.groupby("tag", sort=False)}
    lines = [stats.compare(v, per_image["1 process"], tag, "1 process").sentence("time per image")
             for tag, v in per_image.items() if tag != "1 process"]
    lines.append("Each count is its own torchrun launch, run one after another (a launch cannot share epochs "
                 "with another), so drift between launches is not cancelled as it is in the other parts. "
                 "Strong scaling keeps the global batch (each process takes a share); weak scaling keeps the "
                 "per-process batch (the global batch grows with N, which changes the optimization as well as "
                 "the speed). With plain BatchNorm each rank normalizes over its own per-process batch, so "
                 "results differ across process counts; `--sync-bn` (CUDA only in PyTorch) computes the "
                 "statistics over the global batch.")
    missing = df[df["status"] == "unavailable"]
    for tag, g in missing.groupby("tag", sort=False):
        lines.append(f"**{tag}**: not measured ({g.iloc[0].get('unavailable_reason', '')}).")
    return "\n\n".join(lines)
