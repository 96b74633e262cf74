"""C10 and C11 as parts: what their tables and findings say from known numbers (the fixture report's files and
hand-made ones), never from a speed measured here."""
import copy
import json
from pathlib import Path

import pytest

from lab.core.files import save_json
from lab.engine import roofline
from lab.parts import c10_deploy, c11_limits, tables

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "report"


def fixture_c10() -> dict:
    return json.loads((FIXTURE / c10_deploy.ID / c10_deploy.RESULT).read_text())


def test_a_setting_outside_its_tolerance_is_flagged_and_never_named_faster(tmp_path):
    result = fixture_c10()
    dev = result["devices"]["cpu"]
    dev["accuracy"]["TorchScript traced"].update(within=False, same_prediction=0.5)
    for lat in dev["latency"].values():  # not timed, as measure() leaves it out
        lat["settings"].pop("TorchScript traced")
    save_json(tmp_path / c10_deploy.ID / c10_deploy.RESULT, result)
    table = c10_deploy.accuracy_table(dev)
    assert table.loc["TorchScript traced", "within tolerance"] == "NO"
    assert not any("TorchScript traced" in c.a for c in c10_deploy.latency_claims(dev).values())


def test_a_failed_conversion_is_a_row_with_its_reason(tmp_path):
    result = fixture_c10()
    dev = result["devices"]["cpu"]
    dev["conversions"]["TorchScript traced"].update(status="failed", reason="RuntimeError: injected")
    save_json(tmp_path / c10_deploy.ID / c10_deploy.RESULT, result)
    table = c10_deploy.conversions_table(dev)
    assert table.loc["TorchScript traced", "status"] == "failed"
    assert table.loc["TorchScript traced", "note"] == "RuntimeError: injected"
    c101 = next(f for f in c10_deploy.findings(None, tmp_path) if f.question == "C10.1")
    assert "failed: TorchScript traced (RuntimeError: injected)" in c101.answer


def test_the_latency_writer_names_a_real_difference_with_its_factor():
    dev = copy.deepcopy(fixture_c10()["devices"]["cpu"])
    for lat in dev["latency"].values():
        base = lat["settings"]["eager fp32"]["block_medians"] = [0.0100, 0.0101, 0.0099, 0.0100, 0.0102, 0.0098]
        lat["settings"]["TorchScript frozen"]["block_medians"] = [v / 2 for v in base]
    said = c10_deploy.explain_latency(dev)
    named = [c for c in said.named() if c.verdict == "faster"]
    assert {c.a for c in named} == {"TorchScript frozen, 1 thread", "TorchScript frozen, 2 threads"}
    assert all(c.factor() == "×2.00" for c in named)


def test_the_cpp_rows_compare_the_same_artifact_from_both_sides():
    dev = copy.deepcopy(fixture_c10()["devices"]["cpu"])
    times = {"n": 60, "p50": 0.010, "p90": 0.011, "p99": None, "mean": 0.0102}
    dev["cpp"] = {"build": {"binary": "/x/deploy_bench", "seconds": 17.0, "cached": False, "reason": None},
                  "artifacts": {"TorchScript scripted": {
                      "file": "x.pt", "threads": 2, "within": True, "tolerance": "max |logit diff| 0 <= 0.0001 (fp32)",
                      "C++": {**times, "p50": 0.008, "block_medians": [0.0080, 0.0081, 0.0079, 0.0080, 0.0082]},
                      "Python": {**times, "block_medians": [0.0100, 0.0101, 0.0099, 0.0100, 0.0102]}}}}
    table = c10_deploy.cpp_table(dev)
    assert table.loc[("TorchScript scripted", "C++"), "C++ vs Python"] == "×1.25 (faster)"
    finding = c10_deploy.cpp_finding(dev)
    assert "C++ p50 8.00 ms vs Python 10.00 ms" in finding.answer and "×1.2" in finding.answer
    dev["cpp"]["build"].update(binary=None, reason="no C++ compiler found")  # a missing compiler is the row's reason
    assert c10_deploy.cpp_finding(dev).answer == "not run: no C++ compiler found"


def test_c11_sets_every_step_against_the_peak_of_its_precision():
    peaks = {"fp32": 0.2, "bf16": 0.4, "copy_GBs": 30.0, "triad_GBs": 30.0}
    table = c11_limits.achieved_table(FIXTURE, peaks, "cpu")
    c10 = table.loc[c10_deploy.ID]
    bf16 = c10.loc["eager bf16 autocast, batch 1, 1 thread, p50"]
    assert bf16["precision"] == "bf16" and bf16["TFLOP/s"] == pytest.approx(bf16["GFLOP"] / bf16["measured s"] / 1e3)
    share = bf16["TFLOP/s"] / 0.4
    assert bf16["share of peak"] == f"{share:.0%}" and bf16["at the peak s"] == pytest.approx(bf16["GFLOP"] / 400)
    assert "C2_timing" in table.index.get_level_values(0)


def test_c11_never_prints_a_share_above_the_peak():
    assert "above the measured fp32 peak (the probe underestimated it)" in tables.peak_share(1e12, 1.0, "fp32",
                                                                                                 {"fp32": 0.5})
    assert tables.peak_share(1e11, 1.0, "fp32", {"fp32": 0.5}) == "0.1 TFLOP/s, 20% of the fp32 peak"


def test_c11_finding_names_the_binding_roof_from_the_profile():
    result = json.loads((FIXTURE / c11_limits.ID / c11_limits.RESULT).read_text())
    finding = c11_limits.findings(None, FIXTURE)[0]
    roofs = [roofline.binding_roof(p, result["peaks"])[0] for p in result["profiles"].values()]
    assert all(roof in finding.answer for roof in roofs) and "of the fp32 peak" in finding.answer
