"""C10 and C11 as parts: what their tables and findings say from known numbers (the fixture report's files and
hand-made ones), never from a speed measured here."""
import copy
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from lab.core import results
from lab.core.config import Config
from lab.engine import cpp, deploy, roofline
from lab.parts import c10_deploy, c11_limits, display, tables
from lab.parts.base import Report

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "report"


def fixture_c10() -> pd.DataFrame:
    """The fixture report's C10 rows (one device: cpu)."""
    return results.read(FIXTURE, part=c10_deploy.ID)


def cpu(rows: pd.DataFrame) -> pd.DataFrame:
    return deploy.by_device(rows)["cpu"]


def save_c10(folder, rows: pd.DataFrame) -> None:
    """`rows` as a report's C10 rows."""
    rows = [json.loads(line) for line in results.to_json(rows).splitlines()]
    results.Rows(folder, c10_deploy.ID).start().extend(rows)


def is_(rows: pd.DataFrame, metric: str, setting: str):
    return (rows["metric"] == metric) & (rows["setting"] == setting)


def test_a_setting_outside_its_tolerance_is_flagged_and_never_named_faster():
    rows = fixture_c10()
    rows.loc[is_(rows, "within_tolerance", "TorchScript traced"), "value"] = 0
    rows.loc[is_(rows, "same_prediction", "TorchScript traced"), "value"] = 0.5
    rows = rows[~(rows["metric"].str.startswith("latency_") & (rows["setting"] == "TorchScript traced"))]  # not timed
    table = c10_deploy.accuracy_table(cpu(rows))
    assert table.loc["TorchScript traced", "within_tolerance"] == "NO"
    assert not any("TorchScript traced" in c.a for c in deploy.claims_of(cpu(rows)).values())


def no_inductor(monkeypatch):
    """C10's settings less those that compile with inductor or export to ONNX (tests/test_deploy.py converts them on a
    small model, the tiny report on the ResNet-18)."""
    monkeypatch.setattr(deploy, "SETTINGS", [s for s in deploy.SETTINGS if not s.compiles and s.how != "onnx"])


def coherent_model():
    """A 9x9 convolution whose 243 weights all push one way, batch norm (estimated over the images), pooling and 10
    logits, with its images: a 1 % scale of the weights moves every position alike, where bf16's rounding is random
    and averages out over the positions (on C2's ResNet-18 the two are only 13x apart: docs/measuring.md)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 9, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    with torch.no_grad():
        model[0].weight.uniform_(0, 1)
        model[5].weight.normal_(0, 3)
        model[5].bias[0] = 300  # one confident class: a bound relative to the largest |logit| is loose for the rest
    images = torch.rand(32, 3, 32, 32)
    return deploy.estimate_batch_norm(model, images), images


def test_a_conversion_whose_weights_are_off_by_one_percent_is_flagged_in_fp32_and_bf16(tmp_path, monkeypatch,
                                                                                       one_thread):
    """One convolution's weights scaled by 1.01 in the converted copy only, eager fp32 (the reference) unchanged: the
    frozen (fp32) and bf16 settings are outside their bound, never timed, and said so; the others agree 10x inside
    (bf16 weights: 2x)."""
    no_inductor(monkeypatch)
    model, images = coherent_model()
    off = copy.deepcopy(model)
    with torch.no_grad():
        off[0].weight.mul_(1.01)
    wrong, convert = ["TorchScript frozen", "eager bf16 autocast"], deploy.convert
    monkeypatch.setattr(deploy, "convert", lambda m, setting, *args, **kwargs: convert(
        off if setting.name in wrong else m, setting, *args, **kwargs))
    rows = results.Rows(tmp_path, c10_deploy.ID).start()
    rows.extend([rows.row("model", text="a tiny model"), rows.row("dataset", text="random"),
                 rows.row("test_images", len(images), "images")])
    labels = torch.zeros(len(images), dtype=torch.long)
    timed = deploy.measure(rows.scoped(device="cpu"), model, (images, labels), tmp_path / "cpu", heavy=False,
                           blocks=2, calls=2, batches=[1], note=lambda line: None)
    dev = cpu(results.read(tmp_path, part=c10_deploy.ID))
    table = c10_deploy.accuracy_table(dev)
    assert list(table.index[table["within_tolerance"] == "NO"]) == wrong and "TorchScript traced" in timed
    assert not set(wrong) & set(timed) and (table.loc[wrong, "worst_of_bound"] > 1).all()
    weights = ["eager bf16 weights", "TorchScript frozen bf16 weights"]  # every activation in bf16 too: lossier
    assert (table.drop(wrong + weights)["worst_of_bound"] <= 0.1).all()
    assert (table.loc[weights, "worst_of_bound"].between(0.2, 0.6)).all()  # 2x inside here, 4x on C2's ResNet-18
    bf16 = deploy.settings_of(dev).loc["eager bf16 autocast"]
    assert bf16["max_abs_diff"] < 0.1 * bf16["largest_logit"]  # the rule before: within 0.1 x the largest |logit|
    assert c10_deploy.agreement_answer(deploy.settings_of(dev).drop(deploy.BASELINE)).startswith(
        "OUTSIDE its bound: TorchScript frozen, eager bf16 autocast")
    shown = []
    monkeypatch.setattr(display, "show", lambda *objs: shown.extend(objs))
    c10_deploy.section(None, tmp_path)
    assert any("Outside its bound, never timed or named faster: TorchScript frozen, eager bf16 autocast." in
               getattr(o, "data", "") for o in shown)


def test_a_failed_conversion_is_a_row_with_its_reason(tmp_path):
    rows = fixture_c10()
    rows.loc[is_(rows, "status", "TorchScript traced"), "text"] = "failed"
    failed = rows[is_(rows, "status", "TorchScript traced")].assign(metric="reason", text="RuntimeError: injected")
    save_c10(tmp_path, pd.concat([rows, failed]))
    table = c10_deploy.conversions_table(cpu(results.read(tmp_path, part=c10_deploy.ID)))
    assert table.loc["TorchScript traced", "status"] == "failed"
    assert table.loc["TorchScript traced", "note"] == "RuntimeError: injected"
    c101 = next(f for f in c10_deploy.findings(None, tmp_path) if f.question == "C10.1")
    assert "failed: TorchScript traced (RuntimeError: injected)" in c101.answer


def test_the_latency_writer_names_a_real_difference_with_its_factor():
    rows = fixture_c10()
    base = [0.0100, 0.0101, 0.0099, 0.0100, 0.0102, 0.0098]
    for setting, values in (("eager fp32", base), ("TorchScript frozen", [v / 2 for v in base])):
        medians = rows[is_(rows, "latency_block_median_s", setting)]  # 4 blocks at each thread count -> 6
        made = [{**m.to_dict(), "value": v, "sample": i} for _, m in medians.drop_duplicates("threads").iterrows()
                for i, v in enumerate(values)]
        rows = pd.concat([rows.drop(medians.index), pd.DataFrame(made)])
    said = c10_deploy.explain_latency(deploy.claims_of(cpu(rows)))
    named = [c for c in said.named() if c.verdict == "faster"]
    assert {c.a for c in named} == {"TorchScript frozen, 1 thread", "TorchScript frozen, 2 threads"}
    assert all(c.factor() == "×2.00" for c in named)


def cpp_rows(folder, reason: str | None = None) -> pd.DataFrame:
    """Hand-made C10.5 rows on the CPU: TorchScript scripted from C++ (p50 8 ms) and Python (10 ms), or `reason`
    why the program could not be built."""
    rows = results.Rows(folder, c10_deploy.ID, device="cpu")
    if reason:
        return pd.DataFrame([rows.row("cpp_build_reason", text=reason)])
    one = rows.scoped(setting="TorchScript scripted", artifact="x.pt", precision="fp32")
    times = {"n": 60, "p90": 0.011, "p99": None, "mean": 0.0102}
    return pd.DataFrame([rows.row("cpp_build_s", 17.0, "s"), rows.row("cpp_build_cached", False, "bool"),
                         rows.row("cpp_binary", text="/x/deploy_bench"), one.row("within_tolerance", True, "bool"),
                         one.row("worst_of_bound", 0.02, "ratio"),
                         one.row("tolerance", text="|diff| ≤ 0.0001 + 0.0001·|eager| (fp32): the worst logit at "
                                                   "0.02 of its bound"),
                         *deploy.latency_rows(one, {**times, "p50": 0.008, "block_medians": [0.0080, 0.0081, 0.0079,
                                                                                               0.0080, 0.0082]},
                                              side="C++", threads=2),
                         *deploy.latency_rows(one, {**times, "p50": 0.010, "block_medians": [0.0100, 0.0101, 0.0099,
                                                                                               0.0100, 0.0102]},
                                              side="Python", threads=2)])


def test_the_cpp_rows_compare_the_same_artifact_from_both_sides(tmp_path):
    dev = cpu(pd.concat([fixture_c10(), cpp_rows(tmp_path)]))
    family = deploy.claims_of(dev, cpp_side=True)
    table = c10_deploy.cpp_table(dev, family)
    assert table.loc[("TorchScript scripted", "C++"), "cpp_vs_python"] == "×1.25 (faster)"
    finding = c10_deploy.cpp_finding(dev, family)
    assert "C++ p50 8.00 ms vs Python 10.00 ms" in finding.answer and "×1.2" in finding.answer
    assert finding.answer.endswith("logits within the bound, the worst at 0.0200 of it")
    dev = cpu(pd.concat([fixture_c10(), cpp_rows(tmp_path, reason="no C++ compiler found")]))
    assert c10_deploy.cpp_finding(dev, {}).answer == "not run: no C++ compiler found"  # a missing compiler: its reason


def test_measure_writes_the_rows_the_section_and_the_findings_read(tmp_path, monkeypatch):
    """A tiny C10 on the CPU (no inductor, C++ left out): measure's rows, then the section, findings and verdicts
    read from them alone."""
    monkeypatch.setattr(cpp, "build", lambda: cpp.Build(None, None, "left out in this test"))
    no_inductor(monkeypatch)
    config = Config(dataset="synthetic", data=str(tmp_path / "data"), device="cpu", batch_size=4, synthetic_train=8,
                    synthetic_test=8, checkpoint=None, experiment=c10_deploy.ID)
    params = {"compile_settings": False, "test_images": 8, "latency_blocks": 2, "latency_calls": 2,
              "throughput_batches": [1, 2]}
    assert c10_deploy.PART.make(config, params, tmp_path / c10_deploy.ID, Report(tmp_path)) == []
    rows = results.read(tmp_path, part=c10_deploy.ID)
    medians = rows[rows["metric"] == "latency_block_median_s"]
    assert set(medians["sample"]) == {0, 1} and set(medians["precision"]) == {"fp32", "bf16"}
    assert results.value(rows, "latency_calls", setting="eager fp32", threads=1) == 4
    assert results.value(rows, "cpp_build_reason") == "left out in this test"
    assert results.value(rows, "bn_images") == 8 and results.value(rows, "largest_logit_as_saved") > 0  # 8 there
    assert "its batch-norm statistics re-estimated over 8 training images before conversion" in c10_deploy.model_line(
        rows)
    shown = []
    monkeypatch.setattr(display, "show", lambda *objs: shown.extend(objs))
    c10_deploy.section(None, tmp_path)
    assert len(shown) > 10
    answers = {f.question: f.answer for f in c10_deploy.findings(None, tmp_path)}
    assert answers["C10.5"] == "not run: left out in this test" and "TorchScript scripted" in answers["C10.1"]
    assert any(a.startswith("cpu: TorchScript scripted, 1 thread") for a, _, _ in c10_deploy.verdicts(None, tmp_path))


def test_c11_sets_every_step_against_the_peak_of_its_precision(tmp_path):
    """C2's steady steps from its epoch records, C10's batch-1 calls from its p50 rows (C10.5's C++ calls left
    out), each against the peak of the precision it computes in."""
    shutil.copytree(FIXTURE / "C2_timing", tmp_path / "C2_timing")
    rows = results.Rows(tmp_path, c10_deploy.ID, device="cpu")
    rows.extend([rows.row("latency_p50_s", 0.0185, "s", setting="eager bf16 autocast", threads=1, precision="bf16"),
                 rows.row("latency_p50_s", 0.008, "s", setting="TorchScript scripted", threads=2, precision="fp32",
                          side="C++", artifact="TorchScript scripted"),
                 rows.row("latency_p50_s", 0.002, "s", setting="int8 PT2E (torchao)", threads=2, precision="int8")])
    peaks = {"fp32": 0.2, "bf16": 0.4, "int8": 6.0, "copy_GBs": 30.0, "triad_GBs": 30.0}
    table = c11_limits.achieved_table(tmp_path, peaks, "cpu")
    c10 = table.loc[c10_deploy.ID]
    assert list(c10.index) == ["eager bf16 autocast, batch 1, 1 thread, p50",
                               "int8 PT2E (torchao), batch 1, 2 threads, p50"]
    int8 = c10.loc["int8 PT2E (torchao), batch 1, 2 threads, p50"]
    assert int8["rate_unit"] == "TOPS" and int8["share_of_peak"] == f"{int8['rate'] / 6.0:.0%}"
    bf16 = c10.loc["eager bf16 autocast, batch 1, 1 thread, p50"]
    assert bf16["precision"] == "bf16" and bf16["rate"] == pytest.approx(bf16["flops"] / bf16["measured_s"] / 1e12)
    assert bf16["rate_unit"] == "TFLOP/s"
    share = bf16["rate"] / 0.4
    assert bf16["share_of_peak"] == f"{share:.0%}" and bf16["at_peak_s"] == pytest.approx(bf16["flops"] / 4e11)
    assert "C2_timing" in table.index.get_level_values(0)


def test_c11_never_prints_a_share_above_the_peak():
    assert "above the measured fp32 peak (the probe underestimated it)" in tables.peak_share(1e12, 1.0, "fp32",
                                                                                                 {"fp32": 0.5})
    assert tables.peak_share(1e11, 1.0, "fp32", {"fp32": 0.5}) == "0.1 TFLOP/s, 20% of the fp32 peak"


def test_c11_finding_names_the_binding_roof_from_the_profile():
    result = c11_limits.read(FIXTURE)
    finding = c11_limits.findings(None, FIXTURE)[0]
    roofs = [roofline.binding_roof(p, result["peaks"])[0] for p in result["profiles"].values()]
    assert all(roof in finding.answer for roof in roofs) and "of the fp32 peak" in finding.answer


def test_c11_measures_rows_that_read_back_as_the_profile_and_draw_its_section(tmp_path, monkeypatch):
    """C11's measure on this CPU (batch 2, one profiled step, the report's peaks given) writes rows and no file;
    read back, each precision's profile is layer_points' own, and the section draws a roofline from it."""
    import pandas as pd

    from lab.core.config import Config
    from lab.parts import display
    from lab.parts.base import Report

    # peaks far above any CPU step (a step above its peak is said differently): every operator far below them
    peaks = {"fp32": 1000.0, "bf16": 2000.0, "copy_GBs": 1e4, "triad_GBs": 1e4, "conditions": {"machine": "here"}}
    tables.save_peaks(results.Rows(tmp_path, "report"), "cpu", peaks)
    profiled, measure_points = {}, roofline.layer_points

    def layer_points(**kw):
        profiled[kw["amp"]] = measure_points(**kw)
        return profiled[kw["amp"]]

    monkeypatch.setattr(roofline, "layer_points", layer_points)
    out = tmp_path / c11_limits.ID
    out.mkdir()
    c11_limits.measure(Config(device="cpu", batch_size=2), {"profile_steps": 1}, out, Report(tmp_path))
    assert not any(out.iterdir()) and "peak" not in set(results.read(tmp_path, part=c11_limits.ID)["metric"])
    result = c11_limits.read(tmp_path)
    assert result["batch_size"] == 2 and result["flops"]["train"]["total"] == 2 * 3_328_997_376
    assert list(result["profiles"]) == [p["precision"] for p in profiled.values()]
    for p in profiled.values():
        back = result["profiles"][p["precision"]]
        assert back["layers"] == p["layers"] and back["no_flop"] == p["no_flop"] and back["step_s"] == p["step_s"]
    shown = []
    monkeypatch.setattr(display, "show", lambda *objs: shown.extend(objs))
    monkeypatch.setattr(display, "figure", lambda fig, name, figures_dir=None: shown.append(name))
    c11_limits.section(pd.DataFrame(), tmp_path)
    assert "C11_roofline_fp32" in shown
    answer = c11_limits.findings(pd.DataFrame(), tmp_path)[0].answer
    assert "of the fp32 peak" in answer and "-bound" in answer
