"""C8 measures rows, not files: its plan, the eager step's profile, Q5's compile account and what a compilation
cost read back as measured, and its section, findings and verdicts are drawn from them and its records."""
import json

import pandas as pd
import pytest

from lab.core import results
from lab.engine import acceleration
from lab.parts import c8_acceleration as c8, display
from lab.parts.base import Report
from lab.parts.tables import step_flops

# Q5's account as lab.engine.profiling.measure_compile returns it (the golden fixture's, inductor on a 2-core CPU)
ACCOUNT = {"device_type": "cpu", "batch_size": 128, "backend": "inductor", "graphs": 1, "graph_breaks": 0,
           "break_reasons": [], "forward_ops_captured": 67,
           "before": {"aten_ops": 1302.0, "compiled_graphs": 0.0, "generated_kernels": 0.0, "launches": 0.0,
                      "conv_share": 0.85},
           "after": {"aten_ops": 795.0, "compiled_graphs": 2.0, "generated_kernels": 0.0, "launches": 0.0,
                     "conv_share": 0.89},
           "step_s": {"eager": [6.43, 4.97, 3.01, 2.77], "compiled": [5.94, 5.19, 2.2, 2.17]},
           "first_compiled_step_s": 14.37, "compile_s": 14.37 - (5.94 + 5.19 + 2.2 + 2.17) / 4}


def test_c8_measures_rows_that_read_back_and_draw_its_section(tiny_config, tmp_path, monkeypatch, one_thread):
    """C8's measure on this CPU (2 epochs of 2 batches per setting, no compiled settings, one profiled step; Q5's
    compilation stood in for by its fixture account) leaves records, traces and rows, and no JSON file of its own."""
    monkeypatch.setattr(acceleration, "measure_compile", lambda config, backend: ACCOUNT)
    monkeypatch.setattr(acceleration, "c_compiler", lambda: "c++")  # Q5 is measured (here: stood in for)
    out = tmp_path / c8.ID
    params = {"max_autotune": False, "compile_settings": False, "profile_steps": 1, "explain_compile": True}
    records = c8.measure(tiny_config.replace(epochs=2, experiment=c8.ID), params, out, Report(tmp_path))
    assert not {p.name for p in out.iterdir()} & {"plan.json", "compile.json", "step_eager_fp32.json"}

    rows = results.read(tmp_path, part=c8.ID)
    assert set(rows["kind"].dropna()) == {acceleration.PLAN, acceleration.PROFILE, acceleration.LAYERS,
                                          acceleration.ACCOUNT}
    planned = list(rows.loc[rows["metric"] == "planned", "setting"])
    assert planned == list(dict.fromkeys(r["tag"] for r in records)) and planned[0] == c8.BASELINE
    left_out = rows[rows["metric"] == "left_out"].set_index("setting")["text"]
    assert "compile_settings: false" in left_out["compile default"] and c8.FAST_PHASE in left_out
    profile = acceleration.read_profile(rows)
    assert profile["device_type"] == "cpu" and "device_busy_ms_per_step" not in set(rows["metric"])  # CUDA only
    assert profile["points"]["precision"] == "fp32" and len(profile["points"]["layers"]) > 40  # 20 conv fwd, 20 bwd
    assert sum(p["flops"] for p in profile["points"]["layers"]) == step_flops(16)  # the step with shapes, read back
    account = acceleration.read_account(rows)
    assert account.pop("compile_s") == pytest.approx(ACCOUNT["compile_s"])
    assert account == {k: v for k, v in ACCOUNT.items() if k not in ("break_reasons", "compile_s")}
    assert (results.value(rows, "compile_s"), rows.loc[rows["metric"] == "compile_s", "unit"].item()) == (
        ACCOUNT["compile_s"], "s")  # no compiled setting ran: Q5's one compilation, for the estimate
    assert json.loads(results.to_json(rows).splitlines()[0])["schema"] == results.SCHEMA

    df = pd.DataFrame(records)
    shown = []
    monkeypatch.setattr(display, "show", lambda *objs: shown.extend(objs))
    monkeypatch.setattr(display, "figure", lambda fig, name, figures_dir=None: shown.append(name))
    c8.section(df, tmp_path)
    text = "\n".join(o.data for o in shown if isinstance(getattr(o, "data", None), str))  # the Markdown shown
    assert "Which roof bounds the eager step was not measured (this report measured no peaks)" in text
    assert "compute-bound" not in text and "TorchDynamo captured the forward as 1 graph with" in text
    assert "**compile default**: not measured: left out by this profile" in text and c8.ID in shown
    verdicts = c8.verdicts(df, tmp_path)
    assert ("compiled", "eager", "compile step") in verdicts and ("channels_last", c8.BASELINE, "epoch") in verdicts
    assert [f.question for f in c8.findings(df, tmp_path)] == ["C8", "Q5"]


def test_a_q5_left_out_says_why_and_decides_nothing(tmp_path):
    rows = results.Rows(tmp_path, c8.ID)
    rows.add("left_out", text="left out by this profile (explain_compile: false)", kind=acceleration.ACCOUNT)
    account = acceleration.read_account(results.read(tmp_path, part=c8.ID))
    assert account == {"left_out": "left out by this profile (explain_compile: false)"}
    assert c8.explain_compile(account, None).endswith(
        "not measured: left out by this profile (explain_compile: false).")
    assert c8.explain_compile({}, None).endswith("not measured in this report.")
    assert c8.verdicts(pd.DataFrame(), tmp_path) == {}
    q5 = c8.findings(pd.DataFrame(), tmp_path)[1]
    assert q5.answer == "not measured: left out by this profile (explain_compile: false)"


PEAKS = {"fp32": 1.0, "copy_GBs": 100.0, "triad_GBs": 80.0}  # ridge: 10 FLOP/byte


def profile_rows(tmp_path, device: str, share: float | None, busy_ms: float = 9.5) -> dict:
    """A step profile's rows as C8 writes them, read back: on `device`, with one convolution right of the ridge
    (100 FLOP/byte) at `share` of the 1 TFLOP/s roof (None: not profiled with shapes)."""
    rows = results.Rows(tmp_path / device / str(share), c8.ID)
    acceleration.save_profile(rows, {"device_type": device, "wall_ms_per_step": 10.0, "launches_per_step": 600.0,
                                     "device_busy_ms_per_step": busy_ms if device == "cuda" else None, "steps": 1})
    if share is not None:
        seconds = 1e9 / (share * 1e12)
        acceleration.save_points(rows, {
            "device": device, "precision": "fp32", "batch": 128, "threads": 2, "steps": 1, "step_s": seconds,
            "unattributed_s": 0.0, "no_flop": {},
            "layers": [{"op": "aten::convolution", "label": "conv", "flops": 1e9, "bytes": 1e7, "seconds": seconds}]})
    return acceleration.read_profile(results.read(rows.path.parent, part=c8.ID))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_bound_sentence_follows_the_profile_not_the_device(device, tmp_path):
    """The same profile rows say the same on a CPU and on a busy GPU: compute-bound at 85 % of the roof, its kernels
    at 26 % with ×3.85 left; without a per-layer profile or peaks no bound is stated; an idle GPU is launch-bound."""
    table, found = pd.DataFrame(columns=["status"]), {}
    near = c8.bound_verdict(profile_rows(tmp_path, device, 0.85), table, found, PEAKS)
    assert "**compute-bound**: 100% of the step's time" in near and "at 85% of the measured fp32 peak" in near
    far = c8.bound_verdict(profile_rows(tmp_path, device, 0.26), table, found, PEAKS)
    assert "**kernel-limited (below the compute roof)**" in far and "compute-bound" not in far
    assert "at 26% of the measured fp32 peak" in far and "up to ×3.85 faster" in far
    unprofiled, profiled = profile_rows(tmp_path, device, None), profile_rows(tmp_path, device, 0.85)
    for profile, peaks, missing in ((unprofiled, PEAKS, "the step was not profiled with shapes"),
                                    (profiled, None, "this report measured no peaks"),
                                    (profiled, {"bf16": 2.0}, "this report measured no fp32 peak")):
        said = c8.bound_verdict(profile, table, found, peaks)
        assert f"Which roof bounds the eager step was not measured ({missing}" in said and "-bound" not in said
    if device == "cuda":
        assert near.startswith("The GPU was busy 9.5 ms of each 10.0 ms eager step (95%; 600 kernel launches")
        idle = c8.bound_verdict(profile_rows(tmp_path, device, 0.85, busy_ms=3.0), table, found, PEAKS)
        assert "the step is **launch-bound**" in idle and "compute-bound" not in idle
