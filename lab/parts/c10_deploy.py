"""C10 (the lab's 2026 Part B): C2's trained ResNet-18 deployed (docs/measuring.md). lab.engine measures
(deploy.measure, cpp.measure) into rows (docs/results.md); this module reads and says."""
from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..core import fields, results, stats
from ..core.config import Config
from ..core.fields import MIB, Field
from ..engine import cpp, deploy, progress
from ..engine.deploy import (BASELINE, accuracy_table, agreement_answer, conversions_table, cpp_table, label,
                              latency_columns, ms, undecided)
from . import display
from .base import COMMON, Part, Runs, Work, claims, step_setting
from .tables import peak_share, report_peaks, step_flops, style

ID = "C10_deploy"
QUESTIONS = (("C10.1", "Converting the model"), ("C10.2", "The converted model's graph"),
             ("C10.3", "The converted model's accuracy"), ("C10.4", "Latency, PyTorch vs TorchScript"),
             ("C10.5", "Loading the model from C++"))
fields.define({"convert_s": Field("convert s", "s"), "file_bytes": Field("file MB", "B", 1e-6), "batch_sizes": "batch",
               "file_load_s": Field("load s", "s"), "first_call_s": Field("first call s", "s"), "from": "from",
               "same_prediction": Field("same top-1 as eager %", "fraction", 100), "bound": "bound on |diff|",
               "max_abs_diff": Field("max |logit diff|", "logit"), "largest_logit": Field("largest |logit|", "logit"),
               "worst_of_bound": Field("worst |diff| / bound", "ratio"), "within_tolerance": "within bound",
               "top1_interval": "95 % interval", "latency_calls": "calls",
               **{f"latency_{k}_s": Field(f"{k} ms", "s", 1000) for k in ("p50", "p90", "p99", "mean")},
               "p50_vs_eager": "vs eager (p50)", "p50_of_peak": "p50 of peak", "logits_tolerance": "logits",
               "cpp_vs_python": "C++ vs Python", "images_per_s": Field("images/s", "images/s"),
               "peak_bytes": Field("peak MiB", "B", 1 / MIB), **{g: g for g in deploy.GRAPHS}})  # nodes_table's columns


def runs(config: Config, params: dict, report) -> Runs:
    """Nothing trains; the work is the calls in steps of the profile's batch (a forward: a third of a step, the
    backward computing twice its FLOPs), each setting's in its precision and layout, and the batch-norm estimate
    (BN_IMAGES) with the model as saved on the test images. The settings are a fact of the report (Report.fact)."""
    heavy, inductor, devices = params.get("compile_settings", True), params.get("inductor_settings", True), \
        report.fact("deploy devices", lambda: deploy.devices(config.device))
    names = report.fact("deploy settings", lambda: [s.name for d in devices
                                                    for s in deploy.settings_for(d, heavy, inductor=inductor)])
    chosen = [(d, s) for d in devices for s in deploy.settings_for(d, heavy, names=names, inductor=inductor)]
    settings, blocks, calls, tests = [s for _, s in chosen], params["latency_blocks"], params["latency_calls"], \
        params.get("test_images") or 10_000
    each = deploy.planned_images(settings, tests, blocks, calls, params["throughput_batches"], cpp.planned_calls(
        chosen, blocks, calls), len(report.fact("thread counts", deploy.thread_counts))) / 3 / config.batch_size
    priced = tuple((step_setting({"device_type": d, "batch_size": config.batch_size, "channels_last": s.channels_last,
                                  "amp": "bf16" if "bf16" in (s.amp, s.weights) else "off", "compile": "off",
                                  "loader": "tensor", "workers": 0}), each, 0, each) for d, s in chosen)
    return Runs(extra=Work(steps=len(chosen) * each + (deploy.BN_IMAGES + tests) / 3 / config.batch_size,
                           runs=len(chosen), compiles=sum(s.compiles for s in settings), settings=priced,
                           builds=int(not report.fact("cpp built", cpp.built))))  # the C++ program's first build


def measure(config: Config, params: dict, out, report) -> list[dict]:
    """The model, the data and each device's measurements from Python and C++ as rows; the files into `out`."""
    rows = results.Rows(report.results_dir, ID).start()
    model, source = deploy.trained_model(report.results_dir)
    xs, ys = deploy.test_images(config, params.get("test_images"))
    saved = deploy.evaluate(model, (xs, ys), len(ys), "cpu")[0].abs().max().item()
    train, _ = deploy.test_images(config, deploy.BN_IMAGES, train=True)
    model = deploy.estimate_batch_norm(model, train)  # C2's file is left as it is
    rows.extend([rows.row("model", text=source), rows.row("dataset", text=config.dataset),
                 rows.row("test_images", len(ys), "images"), rows.row("bn_images", len(train), "images"),
                 rows.row("largest_logit_as_saved", saved, "logit"),
                 rows.row("calibration_images", deploy.CALIBRATION, "images")])
    heavy, inductor, devices = params.get("compile_settings", True), params.get("inductor_settings", True), \
        deploy.devices(config.device)
    with progress.bar(ID, sum(3 * len(deploy.settings_for(d, heavy, inductor=inductor)) + len(deploy.thread_counts())
                              + 1 for d in devices), unit="phase"):
        note = functools.partial(progress.phase, ID)
        for device in devices:
            timed = deploy.measure(rows.scoped(device=device), model, (xs, ys), Path(out) / device, heavy,
                                   params["latency_blocks"], params["latency_calls"], params["throughput_batches"],
                                   note=note, calibration=train[:deploy.CALIBRATION], inductor=inductor)
            cpp.measure(rows.scoped(device=device), cpp.chosen(timed), xs[:1].clone(), params["latency_calls"],
                        cpp.blocks(params["latency_blocks"]), note=note)
    return []


def model_line(rows: pd.DataFrame) -> str:
    """Which model, its batch-norm statistics and the scale of its logits, the test images."""
    value = functools.partial(results.value, rows)
    line, saved = f"Model: {value('model')}", stats.sig(value("largest_logit_as_saved"))
    if value("bn_images"):
        line += (f", its batch-norm statistics re-estimated over {value('bn_images'):,.0f} training images before "
                 f"conversion (eager's largest |logit| on the test images: {saved} as saved, "
                 f"{stats.sig(value('largest_logit', setting=BASELINE, device='cpu'))} after)")
    int8 = f"; int8 calibrated on {value('calibration_images'):,.0f} training images" if value("calibration_images") \
        else ""
    return line + f"; {value('test_images'):,.0f} test images of {value('dataset')} data{int8}."


def latency_table(dev: pd.DataFrame, family: dict, peaks: dict | None = None) -> pd.DataFrame:
    t = deploy.latency_of(dev, family=family)
    table = pd.DataFrame({**latency_columns(t), "p50_vs_eager": t["factor"].map(stats.factor),
                          "verdict": [c.verdict if c else "baseline" for c in t["claim"]]})
    if peaks:
        table["p50_of_peak"] = [peak_share(step_flops(1, train=False), p50, precision, peaks, short=True)
                                for (_, _, precision), p50 in t["p50"].items()]
    return table.droplevel("precision")


def explain_latency(family: dict) -> stats.Said:
    """Per thread count, each setting against eager fp32 (one family of claims: deploy.claims_of's)."""
    return stats.Said("\n\n".join(c.sentence("batch-1 latency per call") for c in family.values())
                      or "Only eager fp32 was timed: nothing to compare.", family.values())


def explain_cpp(dev: pd.DataFrame, family: dict) -> stats.Said:
    binary, reason = results.value(dev, "cpp_binary"), results.value(dev, "cpp_build_reason")
    if binary is None:
        return stats.Said(f"Not run from C++: {reason}." if reason else "C10.5 was not measured in this report.")
    how = "cached" if results.value(dev, "cpp_build_cached") else f"built in {results.value(dev, 'cpp_build_s'):.0f} s"
    return stats.Said(f"The C++ program (cpp/deploy_bench.cpp, {how}: `{binary}`) loads the same files with libtorch "
                      "alone. " + " ".join(c.sentence("batch-1 latency per call") for c in family.values()),
                      family.values())


def families(records, results_dir) -> dict:
    """Per device: its latency claims and C10.5's, keyed as deploy.claims_of keys them (`verdicts` adds the device)."""
    out = {}
    for (a, b, metric), c in claims(ID, verdicts, records, results_dir).items():
        (device, _, a), b = a.partition(": "), b.partition(": ")[2]
        out.setdefault(device, ({}, {}))[a.startswith("C++, ")][(a, b, metric)] = replace(c, a=a, b=b)
    return out


def section(records, results_dir=None, figures_dir=None) -> None:
    rows, decided = results.read(results_dir, part=ID), families(records, results_dir)
    images = int(results.value(rows, "test_images"))
    print(model_line(rows))
    for device, dev in deploy.by_device(rows).items():
        family, cpp_family = decided.get(device, ({}, {}))
        value, left_out = functools.partial(results.value, dev), list(dev.loc[dev["metric"] == "left_out", "setting"])
        display.show(display.markdown(f"### {device}: {value('device_name')}"), style(conversions_table(dev)), *(
            [display.markdown(f"*Left out by this profile (compile_settings: false; AOTInductor's packages and "
                              f"torch.compile's default modes, tens of seconds each here): {', '.join(left_out)}.*")]
             if left_out else []))
        t = deploy.settings_of(dev)
        bad, fp32 = list(t.index[t["within_tolerance"] == 0]), list(t.index[t["ran_as_said"] == 0])
        display.show(display.markdown(f"**The graphs** (each written beside this report: `{ID}/{device}/*.graph.txt`"
                                      " and `*.code.txt`), nodes by kind:"),
                     style(deploy.nodes_table(deploy.graphs_of(dev))),
                     *map(display.markdown, deploy.graph_changes(deploy.graphs_of(dev))),
                     *([display.markdown("**What runs**, counted: the convolution calls in the code inductor "
                                         "generated (qconv: oneDNN's quantized int8 ones; the code beside this "
                                         f"report: `{ID}/{device}/*.inductor.py.txt`, a package's `*.wrapper.cpp.txt`"
                                         "), the convolution "
                                         "weights by dtype (eager's parameters, the frozen graphs' constants):"),
                        style(kernels)] if len(kernels := deploy.kernels_table(dev)) else []), *(
                         [display.html(f"<p style='color:#c0392b;font-weight:bold'>Ran in fp32, never timed or named "
                                       f"faster: {', '.join(fp32)}.</p>")] if fp32 else []),
                     display.markdown(f"**Accuracy** on the same {images:,} test images, against eager's logits "
                                      "logit by logit: each |logit − eager logit| within its precision's bound, "
                                      "atol + rtol·|eager logit|; the worst logit's |diff| as a share of its bound "
                                      "(above 1: outside):"), style(accuracy_table(dev)), *(
                         [display.html(f"<p style='color:#c0392b;font-weight:bold'>Outside its bound, never timed or "
                                       f"named faster: {', '.join(bad)}.</p>")] if bad else []))
        copy = "inside" if value("latency_copy_input_timed") else "outside (the input is already on the device)"
        display.show(display.markdown(f"**Batch-1 latency per call**, settings interleaved in blocks "
                                      f"({value('latency_blocks'):.0f} blocks of {value('latency_calls_per_block'):.0f}"
                                      f" calls after {value('latency_warmup'):.0f} warm-up calls), the host→device "
                                      f"copy {copy}; a percentile is shown only where at least 10 calls lie beyond "
                                      "it:"),
                     style(latency_table(dev, family, report_peaks(results_dir, device))),
                     display.markdown(explain_latency(family)),
                     display.markdown(f"**Throughput and peak memory** (3 calls after 2 warm-up calls; "
                                      f"{value('peak_how') or ''}):"), style(deploy.throughput_table(dev)),
                     display.markdown("**C10.5 — from C++**, the same files, batch 1, blocks alternating which side "
                                      "goes first (a C++ block is one run of the program):"),
                     style(cpp_table(dev, cpp_family)),
                     display.markdown(explain_cpp(dev, cpp_family)))


def latency_answer(dev: pd.DataFrame, family: dict, best, peaks: dict | None = None) -> str:
    """C10.4 in a line: the fastest setting where one is decidedly faster than eager (its share of its precision's
    peak), and TorchScript's answer."""
    p50 = {label(n, th): (ms(v), p) for (n, th, p), v in deploy.latency_of(dev, family=family)["p50"].items()}
    script = [c for c in family.values() if c.a.startswith("TorchScript")]  # the lab's question: PyTorch vs TorchScript
    named, rest = [f"{c.a} {c.factor()}" for c in script if c.decided], [c for c in script if not c.decided]
    ts = "; ".join(([", ".join(named) + " against eager"] if named else [])
                   + ([undecided(rest, "other" if named else "claim")] if rest else []))
    # a p50 needs enough calls (deploy.percentiles): where there is none, the factor from the blocks stands alone
    eager = ", ".join(f"{v:.2f} ms at {k.split(', ')[1]}" for k, (v, _) in p50.items() if k.startswith(BASELINE + ",")
                      and v)
    (fast, precision), share = p50.get(best.a, (None, None)) if best else (None, None), "—"
    if fast:
        share = peak_share(step_flops(1, train=False), fast / 1e3, precision, peaks)
    answer = (f"fastest {best.a}: " + (f"p50 {fast:.2f} ms, " if fast else "") + f"{best.factor()} against eager"
              + (f" ({share})" if share != "—" else "") if best else
              "no setting decidedly faster than eager fp32" + (f" (p50 {eager})" if eager else ""))
    return answer + (f"; TorchScript against eager: {ts}" if ts else "")


def findings(records, results_dir=None) -> list[display.Finding]:
    rows = results.read(results_dir, part=ID)
    device, dev = next(iter(deploy.by_device(rows).items()))
    (family, cpp_family), t = families(records, results_dir).get(device, ({}, {})), deploy.settings_of(dev)
    failed = "; ".join(f"{n} ({c['reason']})" for n, c in t.iterrows() if c["status"] != "ok")
    made = ", ".join(f"{n} {stats.sig(c['convert_s'])} s" for n, c in t.iterrows()
                     if c["status"] == "ok" and pd.notna(c["file"])) + (f"; failed: {failed}" if failed else "")
    acc = t.dropna(subset=["top1"])
    base = acc.loc[BASELINE]
    best = max((c for c in family.values() if c.verdict == "faster"), key=lambda c: c.ratio, default=None)
    data = f"{results.value(rows, 'test_images'):,.0f} test images of {results.value(rows, 'dataset')} data"
    return [display.Finding("C10.1", QUESTIONS[0][1], f"on {device}: {made}", f"{results.value(rows, 'model')}; file "
                            "sizes, load and first-call times in the section", ID),
            display.Finding("C10.2", QUESTIONS[1][1], deploy.graphs_in_a_line(deploy.graphs_of(dev)),
                            f"graphs saved in {ID}/{device}/", ID),
            display.Finding("C10.3", QUESTIONS[2][1], f"eager top-1 {base['top1']:.1%} (95 % {base['top1_low']:.1%}–"
                            f"{base['top1_high']:.1%}); {agreement_answer(acc.drop(BASELINE))}",
                            f"{data}; {(acc['within_tolerance'] == 1).sum()} of {len(acc)} settings within their "
                            "bound", ID),
            display.Finding("C10.4", QUESTIONS[3][1], f"batch 1, {device}: "
                            f"{latency_answer(dev, family, best, report_peaks(results_dir, device))}",
                            stats.evidence_line(best) if best else f"{len(family)} claims, one family", ID),
            cpp_finding(dev, cpp_family)]


def cpp_finding(dev: pd.DataFrame, family: dict) -> display.Finding:
    binary, reason = results.value(dev, "cpp_binary"), results.value(dev, "cpp_build_reason")
    if binary is None:
        return display.Finding("C10.5", QUESTIONS[4][1], "not run" + (f": {reason}" if reason else ""), "—", ID)
    t, parts = deploy.latency_of(dev, cpp_side=True, family=family), []
    for name, a in deploy.artifacts_of(dev).iterrows():
        if pd.isna(a["reason"]):  # the p50s where there are enough calls for them (deploy.percentiles)
            verdict = stats.verdict_line(t.loc[(name, "C++"), "claim"])
            cxx, python = ms(t.loc[(name, "C++"), "p50"]), ms(t.loc[(name, "Python"), "p50"])
            answer = (f"C++ p50 {cxx:.2f} ms vs Python {python:.2f} ms, " + verdict.split(": ", 1)[-1]
                      if cxx and python else verdict)
            agree = f"logits within the bound, the worst at {stats.sig(a['worst_of_bound'])} of it"
            parts.append(f"{name}: {answer}; " + (agree if a["within_tolerance"] == 1 else "LOGITS DIFFER"))
    return display.Finding("C10.5", QUESTIONS[4][1], "; ".join(parts) or "no artifact ran from C++",
                           stats.evidence_line(next(iter(family.values()))) if family else "—", ID)


def verdicts(records, results_dir) -> dict:
    """Every claim C10's sentences make (C10.4's family and C10.5's), on every device: keyed by the device too."""
    by_device = deploy.by_device(results.read(results_dir, part=ID))
    return {(f"{device}: {a}", f"{device}: {b}", metric): c for device, dev in by_device.items()
            for (a, b, metric), c in {**deploy.claims_of(dev), **deploy.claims_of(dev, cpp_side=True)}.items()}


PART = Part(ID, "C10 — The trained model deployed", QUESTIONS,
            (*COMMON, "compile_settings", "inductor_settings", "test_images", "latency_blocks", "latency_calls",
             "throughput_batches"), runs, section, findings, measure=measure, verdicts=verdicts)
