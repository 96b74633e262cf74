"""C10 (the lab's 2026 Part B): the trained model deployed. C2's trained ResNet-18 (or a fresh one, said) converted
to TorchScript by scripting and tracing, frozen and optimized for inference, exported to an AOTInductor package
and compiled with torch.compile (lab.engine.deploy); each conversion's graph summarized and saved; its test top-1
and its agreement with eager on the same images; its batch-1 latency per call (p50/p90/p99, interleaved in
blocks, every "faster" through the comparison rule) on every device the node has and, on a CPU, at 1 thread and
at all cores; its throughput and peak memory across batch sizes."""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pandas as pd
import torch

from ..core import files, stats
from ..core.config import Config
from ..data import cifar10
from ..core.errors import LabError
from ..engine import cpp, deploy, progress
from ..engine.model import resnet18
from ..engine.records import cpu_name
from ..engine.resolve import compute_precision, device_type
from . import c2_timing, display
from .base import Part, Runs, Work, device_available
from .tables import MIB, peak_share, report_peaks, step_flops, style

ID = "C10_deploy"
QUESTIONS = (("C10.1", "Converting the model"), ("C10.2", "The converted model's graph"),
             ("C10.3", "The converted model's accuracy"), ("C10.4", "Latency, PyTorch vs TorchScript"),
             ("C10.5", "Loading the model from C++"))
CPP_ARTIFACTS = {"TorchScript scripted": "torchscript", "AOTInductor": "aoti"}  # what C++ loads: the same files
RESULT = "deploy.json"
GRAPHS = ("scripted", "traced", "frozen", "frozen + optimized", "exported")


def devices(config: Config) -> list[str]:
    """The CPU, and CUDA where the node has it."""
    return ["cpu"] + (["cuda"] if device_available("cuda") and device_type(config.device) == "cuda" else [])


def runs(config: Config, params: dict, report) -> Runs:
    """Nothing trains; the work counted is the calls: the test images through every setting, the batch-1 calls
    (C++'s: only the artifacts it loads) and the throughput calls, in steps of the profile's batch (a forward is about a third of a
    training step per image, and a batch-1 call costs about 1.5 images of a batched forward on a CPU)."""
    chosen = [s for d in devices(config) for s in deploy.settings_for(d, params.get("compile_settings", True))]
    settings = len(chosen)
    calls = params["latency_blocks"] * params["latency_calls"] * len(deploy.thread_counts())
    # C++ (cpp_latency): each artifact it loads, in 2 to 6 blocks, each block C++ then Python (5 warm-ups + calls)
    cpp_calls = (sum(s.name in CPP_ARTIFACTS for s in chosen) * max(2, min(params["latency_blocks"], 6)) * 2
                 * (params["latency_calls"] + 5))
    images = ((params.get("test_images") or 10_000) + 1.5 * calls + sum(5 * b for b in params["throughput_batches"])
              + 1.5 * cpp_calls / max(1, settings))
    heavy = sum(s.heavy for d in devices(config) for s in deploy.settings_for(d, params.get("compile_settings", True)))
    build = int(not cpp.built())  # the C++ program's first build costs about a compilation
    return Runs(extra=Work(steps=settings * images / 3 / config.batch_size, runs=settings, compiles=heavy + build))


def load_model(results_dir) -> tuple[torch.nn.Module, str]:
    """C2's trained model in eval mode, or a freshly initialised one where C2 did not run (and which it is)."""
    model = resnet18().eval()
    path = Path(results_dir) / c2_timing.ID / c2_timing.MODEL_FILE
    if not path.exists():
        return model, "a freshly initialised ResNet-18 (C2 did not save its trained model in this report)"
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model, f"C2's trained ResNet-18 ({path.relative_to(Path(results_dir))})"


def test_images(config: Config, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `n` test images (all where None), with the lab's test transform."""
    dataset = cifar10.load_dataset(config, train=False, log=lambda msg: print(msg, file=sys.stderr))
    n = len(dataset) if n is None else min(n, len(dataset))
    pairs = [dataset[i] for i in range(n)]
    return torch.stack([x for x, _ in pairs]), torch.tensor([y for _, y in pairs])


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """Every setting converted, evaluated and timed on each device; the result saved as RESULT (the section and
    the findings read it)."""
    model, source = load_model(report.results_dir)
    xs, ys = test_images(config, params.get("test_images"))
    result = {"model": source, "dataset": config.dataset, "test_images": len(ys), "devices": {}}
    for device in devices(config):
        progress.note(ID, f"{device}: converting")
        settings = deploy.settings_for(device, params.get("compile_settings", True))
        left_out = [s.name for s in deploy.SETTINGS if device in s.devices and s.heavy and s not in settings]
        converted = deploy.convert_all(model, settings, xs[:2], Path(out) / device, device)
        eager = converted[deploy.BASELINE]
        eager_logits, labels = deploy.evaluate(eager.fn, (xs, ys), len(ys), device)
        rows, accuracy = {}, {}
        for name, c in converted.items():
            rows[name] = {**c.row(), "graphs": c.graphs}
            if c.status == "ok":
                progress.note(ID, f"{device}: {name}: {len(ys)} test images")
                logits, _ = deploy.evaluate(c.fn, (xs, ys), len(ys), device)
                ok, why = deploy.within_tolerance(eager_logits, logits, c.precision)
                accuracy[name] = {**deploy.agreement(eager_logits, logits, labels), "within": ok, "tolerance": why,
                                  "precision": c.precision, "largest_logit": eager_logits.abs().max().item()}
        timed = {n: c.fn for n, c in converted.items() if c.status == "ok" and accuracy[n]["within"]}
        latency = {}
        for threads in (deploy.thread_counts() if device == "cpu" else [torch.get_num_threads()]):
            progress.note(ID, f"{device}: batch-1 latency at {stats.plural(threads, 'thread')}")
            with deploy.threads(threads):
                latency[str(threads)] = deploy.interleaved_latency(
                    timed, lambda: xs[:1].clone(), params["latency_blocks"], params["latency_calls"], device)
        throughput = {}
        for name, fn in timed.items():
            progress.note(ID, f"{device}: {name}: throughput")
            throughput[name] = [deploy.throughput(fn, xs[:1].repeat(b, 1, 1, 1), device, calls=3, warmup=2)
                                for b in params["throughput_batches"]]
        progress.note(ID, f"{device}: the same files from C++")
        from_cpp = cpp_latency({n: c for n, c in converted.items() if n in CPP_ARTIFACTS and n in timed},
                               xs[:1].clone(), params, device)
        result["devices"][device] = {"conversions": rows, "accuracy": accuracy, "latency": latency,
                                     "throughput": throughput, "left_out": left_out, "cpp": from_cpp,
                                     "device_name": torch.cuda.get_device_name() if device == "cuda" else cpu_name()}
    files.save_json(Path(out) / RESULT, result)
    return []


def cpp_latency(converted: dict, x: torch.Tensor, params: dict, device: str) -> dict:
    """C10.5: each saved artifact loaded and timed from C++ (lab.engine.cpp, built once per torch and source),
    against the same loaded artifact timed from Python: batch 1 at the thread count Python uses, in blocks
    alternating which goes first (a C++ block is one run of the program: `latency_calls` calls after 5
    warm-ups); a sample is a block's median. C++'s logits against Python's on the same input."""
    built = cpp.build()
    out = {"build": {"binary": str(built.binary) if built.binary else None, "seconds": built.seconds,
                     "cached": built.cached, "reason": built.reason}, "artifacts": {}}
    if built.binary is None:
        return out
    threads, calls = torch.get_num_threads(), params["latency_calls"]
    blocks = max(2, min(params["latency_blocks"], 6))  # each C++ block starts the program (about a second)
    for name, c in converted.items():
        try:
            with torch.inference_mode():
                python_logits = c.fn(x.to(device)).float().cpu()
            times = {"C++": [], "Python": []}
            for block in range(blocks):
                for side in (("C++", "Python") if block % 2 == 0 else ("Python", "C++")):
                    if side == "C++":
                        seconds, logits = cpp.run(built.binary, CPP_ARTIFACTS[name], c.file, x, threads=threads,
                                                  warmup=5, calls=calls, device=device)
                    else:
                        deploy.time_calls(c.fn, x.to(device), 5, device)
                        seconds = deploy.time_calls(c.fn, x.to(device), calls, device)
                    times[side].append(seconds)
            ok, why = deploy.within_tolerance(python_logits, logits.float(), "fp32")
            out["artifacts"][name] = {"file": c.file, "threads": threads, "within": ok, "tolerance": why, **{
                side: {"block_medians": [statistics.median(t) for t in ts],
                       **deploy.percentiles([v for t in ts for v in t])} for side, ts in times.items()}}
        except LabError as error:  # the program failed or wrote what cannot be read: a row with its reason
            out["artifacts"][name] = {"file": c.file, "reason": str(error)}
    return out


def read(results_dir) -> dict | None:
    return files.read_json(Path(results_dir) / ID / RESULT) if results_dir is not None else None


# --- the section ---------------------------------------------------------------------------------------------

def conversions_table(dev: dict) -> pd.DataFrame:
    rows, how = [], {s.name: s.how for s in deploy.SETTINGS}
    for name, c in dev["conversions"].items():
        rows.append({"setting": name, "status": c["status"],
                     "convert s": c["convert_s"] if how.get(name, "eager") != "eager" else None,
                     "file MB": c["file_bytes"] / 1e6 if c.get("file_bytes") else None, "load s": c["load_s"],
                     "first call s": c["first_call_s"], "batch": c["batch"],
                     "note": c["reason"] if c["status"] != "ok" else c.get("note", "")})
    return pd.DataFrame(rows).set_index("setting")


def graphs_table(dev: dict, top: int = 12) -> pd.DataFrame:
    """Nodes by kind in each converted graph (the most frequent kinds, then the rest summed)."""
    graphs = {label: g for c in dev["conversions"].values() for label, g in (c.get("graphs") or {}).items()}
    if not graphs:
        return pd.DataFrame()
    table = pd.DataFrame(graphs).fillna(0).astype(int)
    table = table.loc[table.sum(axis=1).sort_values(ascending=False).index]
    shown = table.head(top)
    if len(table) > top:
        shown.loc[f"other kinds ({len(table) - top})"] = table.iloc[top:].sum()
    shown.loc["all nodes"] = table.sum()
    return shown[[g for g in GRAPHS if g in shown.columns]]


def graph_sentences(dev: dict) -> list[str]:
    graphs = {label: g for c in dev["conversions"].values() for label, g in (c.get("graphs") or {}).items()}
    lines = []
    for before, after in (("scripted", "traced"), ("scripted", "frozen"), ("frozen", "frozen + optimized")):
        if before in graphs and after in graphs:
            changes = deploy.describe_changes(graphs[before], graphs[after], before, after)
            if changes:
                lines.append(f"**{before} → {after}** (counted from the graphs): " + "; ".join(changes) + ".")
    return lines


def accuracy_table(dev: dict) -> pd.DataFrame:
    rows = []
    for name, a in dev["accuracy"].items():
        rows.append({"setting": name, "precision": a["precision"], "test top1": a["top1"],
                     "95 % interval": f"{100 * a['top1_low']:.1f}–{100 * a['top1_high']:.1f} %",
                     "same prediction as eager %": 100 * a["same_prediction"],
                     "max |logit diff|": a["max_abs_diff"], "largest |logit|": a.get("largest_logit"),
                     "within tolerance": "yes" if a["within"] else "NO", "tolerance": a["tolerance"]})
    return pd.DataFrame(rows).set_index("setting")


def label(name: str, threads) -> str:
    return f"{name}, {threads} thread{'' if int(threads) == 1 else 's'}"


def latency_claims(dev: dict) -> dict:
    """Every setting against eager fp32 at each thread count, one family for the section: a sample is one
    block's median."""
    groups, claims = {}, []
    for threads, lat in dev["latency"].items():
        for name, s in lat["settings"].items():
            groups[label(name, threads)] = [{"s": v} for v in s["block_medians"]]
            if name != deploy.BASELINE:
                claims.append((label(name, threads), label(deploy.BASELINE, threads), "s"))
    return stats.family(groups, claims, sample="block", scope="the section's latency claims together") if claims else {}


def ms(value) -> float | None:
    return None if value is None else 1000 * value


def latency_table(dev: dict, peaks: dict | None = None, device: str = "cpu") -> pd.DataFrame:
    result, rows = latency_claims(dev), []
    forward, amp = (step_flops(1, train=False) if peaks else 0), {s.name: s.amp for s in deploy.SETTINGS}
    for threads, lat in dev["latency"].items():
        base = lat["settings"].get(deploy.BASELINE, {})
        for name, s in lat["settings"].items():
            c = result.get((label(name, threads), label(deploy.BASELINE, threads), "s"))
            rows.append({"setting": name, "threads": int(threads), "calls": s["n"], "p50 ms": ms(s["p50"]),
                         "p90 ms": ms(s["p90"]), "p99 ms": ms(s["p99"]), "mean ms": ms(s["mean"]),
                         "vs eager (p50)": stats.factor(base["p50"] / s["p50"]) if base.get("p50") and s["p50"] else "—",
                         "verdict": "baseline" if c is None else c.verdict,
                         **({"p50 of peak": peak_share(forward, s["p50"], compute_precision(device, amp.get(name)),
                                                       peaks, short=True)} if peaks else {})})
    return pd.DataFrame(rows).set_index(["setting", "threads"])


def throughput_table(dev: dict) -> pd.DataFrame:
    rows = [{"setting": name, "batch": t["batch"], "images/s": t["images_per_s"], "peak MiB": t["peak_bytes"] / MIB
             if t.get("peak_bytes") else None} for name, ts in dev["throughput"].items() for t in ts]
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).pivot(index="setting", columns="batch")
    table.columns = [f"{what}, batch {b}" for what, b in table.columns]
    return table


def explain_latency(dev: dict) -> stats.Said:
    """Per thread count, each setting against eager fp32 (one family of claims)."""
    result = latency_claims(dev)
    lines = [c.sentence("batch-1 latency per call") for c in result.values()]
    return stats.Said("\n\n".join(lines) or "Only eager fp32 was timed: nothing to compare.", result.values())


def cpp_claims(dev: dict) -> dict:
    """C10.5's family: C++ against Python for each artifact (a sample: a block's median)."""
    arts = {n: a for n, a in (dev.get("cpp") or {}).get("artifacts", {}).items() if "C++" in a}
    groups = {f"{side}, {n}": [{"s": v} for v in a[side]["block_medians"]] for n, a in arts.items()
              for side in ("C++", "Python")}
    claims = [(f"C++, {n}", f"Python, {n}", "s") for n in arts]
    return stats.family(groups, claims, sample="block", scope="C10.5's claims together") if claims else {}


def cpp_table(dev: dict) -> pd.DataFrame:
    rows, result = [], cpp_claims(dev)
    for name, a in (dev.get("cpp") or {}).get("artifacts", {}).items():
        if "C++" not in a:
            rows.append({"artifact": name, "status": a.get("reason", "not run")})
            continue
        c = result.get((f"C++, {name}", f"Python, {name}", "s"))
        for side in ("C++", "Python"):
            s = a[side]
            rows.append({"artifact": name, "from": side, "calls": s["n"], "p50 ms": ms(s["p50"]),
                         "p90 ms": ms(s["p90"]), "p99 ms": ms(s["p99"]), "mean ms": ms(s["mean"]),
                         "C++ vs Python": (stats.factor(a["Python"]["p50"] / a["C++"]["p50"])
                                           if side == "C++" and a["C++"]["p50"] and a["Python"]["p50"] else "")
                         + (f" ({c.verdict})" if c is not None and side == "C++" else ""),
                         "logits": a["tolerance"] if side == "C++" else "", "status": "ok"})
    return pd.DataFrame(rows).set_index(["artifact", "from"]) if rows else pd.DataFrame()


def explain_cpp(dev: dict) -> stats.Said:
    built = (dev.get("cpp") or {}).get("build")
    if not built:
        return stats.Said("C10.5 was not measured in this report.")
    if built.get("reason"):
        return stats.Said(f"Not run from C++: {built['reason']}.")
    result = cpp_claims(dev)
    how = "cached" if built.get("cached") else f"built in {built['seconds']:.0f} s"
    return stats.Said(f"The C++ program (cpp/deploy_bench.cpp, {how}: `{built['binary']}`) loads the same files with "
                      "libtorch alone. " + " ".join(c.sentence("batch-1 latency per call") for c in result.values()),
                      result.values())


def section(records, results_dir=None, figures_dir=None) -> None:
    result = read(results_dir)
    if not result:
        print(f"{ID} did not run in this report.")
        return
    print(f"Model: {result['model']}; {result['test_images']:,} test images of {result['dataset']} data.")
    for device, dev in result["devices"].items():
        display.show(display.markdown(f"### {device}: {dev['device_name']}"), style(conversions_table(dev)))
        if dev["left_out"]:
            display.show(display.markdown(f"*Left out by this profile (compile_settings: false; each compiles with "
                                          f"inductor, tens of seconds here): {', '.join(dev['left_out'])}.*"))
        display.show(display.markdown(f"**The graphs** (each written beside this report: `{ID}/{device}/*.graph.txt`"
                                      f" and `*.code.txt`), nodes by kind:"), style(graphs_table(dev)),
                     *map(display.markdown, graph_sentences(dev)))
        bad = [n for n, a in dev["accuracy"].items() if not a["within"]]
        display.show(display.markdown(f"**Accuracy** on the same {result['test_images']:,} test images, against "
                                      "eager's logits (tolerance: max |logit diff| ≤ 1e-4 × max(1, max |logit|) in "
                                      "fp32, 1e-2 in TF32, 1e-1 in bf16):"), style(accuracy_table(dev)))
        if bad:
            display.show(display.html(f"<p style='color:#c0392b;font-weight:bold'>Outside tolerance, never timed "
                                      f"or named faster: {', '.join(bad)}.</p>"))
        lat = next(iter(dev["latency"].values()), None)
        copy = "inside" if lat and lat["copy_input_timed"] else "outside (the input is already on the device)"
        display.show(display.markdown(f"**Batch-1 latency per call**, settings interleaved in blocks "
                                      f"({lat['blocks']} blocks of {lat['calls_per_block']} calls after "
                                      f"{lat['warmup']} warm-up calls), the host→device copy {copy}; a percentile "
                                      "is shown only where at least 10 calls lie beyond it:"),
                     style(latency_table(dev, report_peaks(results_dir, device), device)),
                     display.markdown(explain_latency(dev)),
                     display.markdown("**Throughput and peak memory** (3 calls after 2 warm-up calls; " +
                                      (dev["throughput"] and next(iter(dev["throughput"].values()))[0]["peak_how"]
                                       or "") + "):"), style(throughput_table(dev)),
                     display.markdown("**C10.5 — from C++**, the same files, batch 1, blocks alternating which side "
                                      "goes first (a C++ block is one run of the program):"), style(cpp_table(dev)),
                     display.markdown(explain_cpp(dev)))


def graph_answer(dev: dict) -> str:
    """C10.2 in a line, counted from the graphs: scripted against traced, and what freezing changed."""
    graphs = {label: g for c in dev["conversions"].values() for label, g in (c.get("graphs") or {}).items()}
    count = lambda label, kind: graphs.get(label, {}).get(kind, 0)  # noqa: E731
    parts = []
    if "scripted" in graphs and "traced" in graphs:
        parts.append(f"scripted {sum(graphs['scripted'].values())} nodes, with the model's control flow "
                     f"({count('scripted', 'prim::If')} prim::If), traced {sum(graphs['traced'].values())}, flat "
                     f"({count('traced', 'prim::If')} prim::If)")
    if "scripted" in graphs and "frozen" in graphs:
        parts.append(f"freezing folds batch norm into the convolutions ({count('scripted', 'aten::batch_norm')} → "
                     f"{count('frozen', 'aten::batch_norm')} batch_norm nodes) and inlines the parameters "
                     f"({count('scripted', 'prim::GetAttr')} → {count('frozen', 'prim::GetAttr')} prim::GetAttr)")
    return "; ".join(parts) or "no TorchScript graph in this report"


def findings(records, results_dir=None) -> list[display.Finding]:
    result = read(results_dir)
    if not result:
        return display.not_answered(ID, QUESTIONS, f"{ID} did not run in this report")
    device, dev = next(iter(result["devices"].items()))
    conv, acc = dev["conversions"], dev["accuracy"]
    made = ", ".join(f"{n} {stats.sig(c['convert_s'])} s" for n, c in conv.items() if c["status"] == "ok" and c.get("file"))
    failed = [f"{n} ({c['reason']})" for n, c in conv.items() if c["status"] != "ok"]
    fp32 = [a for n, a in acc.items() if n != deploy.BASELINE and a["precision"] == "fp32"]
    worst = max(fp32, key=lambda a: a["max_abs_diff"]) if fp32 else None
    relative = (f", {worst['max_abs_diff'] / max(1.0, worst['largest_logit']):.1g} of the largest |logit|"
                if worst and worst.get("largest_logit") else "")
    same = (f"fp32 conversions' predictions identical to eager's on {min(a['same_prediction'] for a in fp32):.1%} "
            f"of images or more (max |logit diff| {stats.sig(worst['max_abs_diff'])}{relative})" if fp32 else "")
    base = acc[deploy.BASELINE]
    claims = latency_claims(dev)
    best = max((c for c in claims.values() if c.verdict == "faster"), key=lambda c: c.ratio, default=None)
    p50 = {label(n, t): s["p50"] for t, lat in dev["latency"].items() for n, s in lat["settings"].items()}
    script = [c for c in claims.values() if c.a.startswith("TorchScript")]  # the lab's question: PyTorch vs TorchScript
    named = [f"{c.a} {c.factor()}" for c in script if c.decided]
    rest = len(script) - len(named)
    ts = ((", ".join(named) + " against eager") if named else "none decidedly faster") + (
        f"; {rest} other{'s' if rest != 1 else ''}: {stats.NO_DIFFERENCE}" if rest else "") if script else ""
    # a p50 needs enough calls (deploy.percentiles): where there is none, the factor from the blocks stands alone
    eager = ", ".join(f"{1000 * v:.2f} ms at {k.split(', ')[1]}" for k, v in p50.items()
                      if k.startswith(deploy.BASELINE + ",") and v)
    latency = (f"fastest {best.a}: " + (f"p50 {1000 * p50[best.a]:.2f} ms, " if p50.get(best.a) else "")
               + f"{best.factor()} against eager" if best else
               "no setting decidedly faster than eager fp32" + (f" (p50 {eager})" if eager else ""))
    latency += f"; TorchScript against eager: {ts}" if ts else ""
    return [display.Finding("C10.1", QUESTIONS[0][1], f"on {device}: {made}" +
                            (f"; failed: {'; '.join(failed)}" if failed else ""),
                            f"{result['model']}; file sizes, load and first-call times in the section", ID),
            display.Finding("C10.2", QUESTIONS[1][1], graph_answer(dev), f"graphs saved in {ID}/{device}/", ID),
            display.Finding("C10.3", QUESTIONS[2][1], f"eager top-1 {base['top1']:.1%} (95 % {base['top1_low']:.1%}–"
                            f"{base['top1_high']:.1%}); {same}", f"{result['test_images']:,} test images of "
                            f"{result['dataset']} data; {sum(a['within'] for a in acc.values())} of {len(acc)} settings "
                            "within their tolerance", ID),
            display.Finding("C10.4", QUESTIONS[3][1], f"batch 1, {device}: {latency}",
                            stats.evidence_line(best) if best else f"{len(claims)} claims, one family", ID),
            cpp_finding(dev)]


def cpp_finding(dev: dict) -> display.Finding:
    built = (dev.get("cpp") or {}).get("build")
    if not built or built.get("reason"):
        return display.Finding("C10.5", QUESTIONS[4][1], "not run" + (f": {built['reason']}" if built else ""), "—", ID)
    result, arts = cpp_claims(dev), dev["cpp"]["artifacts"]

    def answer(n: str, a: dict) -> str:  # the p50s where there are enough calls for them (deploy.percentiles)
        verdict = stats.verdict_line(result[(f"C++, {n}", f"Python, {n}", "s")])
        if not (a["C++"]["p50"] and a["Python"]["p50"]):
            return verdict
        return (f"C++ p50 {1000 * a['C++']['p50']:.2f} ms vs Python {1000 * a['Python']['p50']:.2f} ms, "
                + verdict.split(": ", 1)[-1])

    parts = [f"{n}: {answer(n, a)}"
             + ("; logits equal within fp32 tolerance" if a["within"] else "; LOGITS DIFFER")
             for n, a in arts.items() if "C++" in a]
    first = next(iter(result.values()), None)
    return display.Finding("C10.5", QUESTIONS[4][1], "; ".join(parts) or "no artifact ran from C++",
                           stats.evidence_line(first) if first else "—", ID)


PART = Part(ID, "C10 — The trained model deployed", QUESTIONS,
            ("compile_settings", "test_images", "latency_blocks", "latency_calls", "throughput_batches"), runs,
            section, findings, measure=measure, reads_records=False)
