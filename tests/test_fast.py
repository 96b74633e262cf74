"""--fast: what it resolves to, how the CPU choice is measured, and that it records its mode; the
interleaved runner of compared settings."""
import json

import pytest
import torch
from conftest import FAST_CHOICE

import lab.engine.fast
import lab.engine.train
from lab import cli
from lab.engine.fast import CUDA_FAST, cpu_fast_probe, fast_reason, resolve_fast, setting_name
from lab.engine.records import read_records
from lab.parts.base import interleave


def test_fast_runs_and_records_its_mode(synthetic_data, tmp_path, capsys):
    code = cli.main(["train", "--dataset", "synthetic", "--data", synthetic_data.data, "--synthetic-train", "640",
                     "--synthetic-test", "128", "--device", "cpu", "--batch-size", "16", "--max-batches", "3",
                     "--epoch", "2", "--fast", "--checkpoint", str(tmp_path / "c.pt"), "--results", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "fast: loader=tensor, channels_last=True, amp=off, compile=off, timers=epoch" in out
    assert "load/train/other: not measured (epoch timers" in out
    assert "--fast on this CPU: channels_last (seeded by the tests;" in out  # what it took, and why
    records = read_records(tmp_path)
    assert list(records["fast"]) == [True, True] and set(records["timers"]) == {"epoch"}
    assert set(records["loader"]) == {"tensor"} and set(records["channels_last"]) == {FAST_CHOICE["channels_last"]}
    assert records["load_s"].isna().all() and records["train_s"].isna().all() and (records["total_s"] > 0).all()
    assert (records["images"] == 3 * 16).all()
    batches = read_records(tmp_path, kind="batch")
    assert len(batches) == 6 and batches["loss"].notna().all() and batches["load_s"].isna().all()


def test_fast_with_phase_timers_measures_the_split(tiny_config):
    record = next(lab.engine.train.run(tiny_config.replace(fast=True, timers="phase")))
    assert record["timers"] == "phase" and record["fast"] and record["loader"] == "tensor"
    assert record["load_s"] >= 0 and record["train_s"] > 0


@pytest.mark.cuda
def test_fast_on_cuda_is_the_cuda_graphs_recipe_and_resolving_twice_changes_nothing(tiny_config):
    config = resolve_fast(tiny_config.replace(fast=True), torch.device("cuda"))
    assert {k: getattr(config, k) for k in CUDA_FAST} == CUDA_FAST and config.timers == "epoch"
    assert resolve_fast(config, torch.device("cuda")) == config
    assert resolve_fast(tiny_config, torch.device("cpu")).timers == "phase"


def test_the_cpu_probe_takes_a_setting_only_where_it_is_decidedly_faster_and_caches_it(tiny_config, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    calls = []
    steps = {"eager fp32": [3.0, 3.1, 3.05, 2.95], "bf16 autocast": [7.0, 7.2, 7.1, 6.9],
             "channels_last": [2.5, 2.55, 2.45, 2.5], "channels_last + bf16 autocast": [6.0, 6.1, 5.9, 6.0],
             "channels_last + compile default": [2.0, 2.1, 2.05, 1.95]}

    def fake_samples(settings, batch_size, rounds=4, warmup=1):
        calls.append(([setting_name(s) for s in settings], batch_size))
        return {json.dumps(s): steps[setting_name(s)] for s in settings}

    monkeypatch.setattr(lab.engine.fast, "interleaved_samples", fake_samples)
    monkeypatch.setattr(lab.engine.fast, "c_compiler", lambda: "/usr/bin/c++")
    monkeypatch.setattr(lab.engine.fast, "others_load", lambda seconds=0.5: 0.0)
    config = tiny_config.replace(batch_size=128)
    probe = cpu_fast_probe(config, log=lambda m: None)
    assert probe["choice"] == {"channels_last": True, "amp": "off", "compile": "default"}
    assert [batch for _, batch in calls] == [128, 128]  # at the run's batch size, candidates interleaved
    assert calls[1][0] == ["channels_last", "channels_last + compile default"]
    assert "is faster than" in probe["reason"] and "p = " in probe["reason"]
    assert cpu_fast_probe(config, log=lambda m: None)["choice"]["compile"] == "default" and len(calls) == 2  # cached
    assert "compile default" in fast_reason(config) and "batch 128" in fast_reason(config)
    monkeypatch.setattr(lab.engine.fast, "others_load", lambda seconds=0.5: 0.9)  # busy: measured again
    cpu_fast_probe(config, log=lambda m: None)
    assert len(calls) == 4
    # settings within the noise of eager fp32 do not replace it
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "other"))
    steps.update({"channels_last": [3.0, 2.9, 3.1, 3.05], "channels_last + bf16 autocast": [2.9, 3.2, 3.0, 3.1]})
    monkeypatch.setattr(lab.engine.fast, "c_compiler", lambda: None)
    probe = cpu_fast_probe(config, log=lambda m: None)
    assert probe["choice"] == {"channels_last": False, "amp": "off", "compile": "off"}
    assert probe["reason"].startswith("no setting is decidedly faster than eager fp32")
    # without its compiled stage (a profile that leaves compilation out): the eager candidates only, cached apart
    monkeypatch.setenv("LAB_CACHE", str(tmp_path / "eager"))
    monkeypatch.setattr(lab.engine.fast, "c_compiler", lambda: "/usr/bin/c++")
    calls.clear()
    steps.update({"channels_last": [2.5, 2.55, 2.45, 2.5]})
    probe = cpu_fast_probe(config, log=lambda m: None, compiled=False)
    assert probe["choice"] == {"channels_last": True, "amp": "off", "compile": "off"} and len(calls) == 1
    assert cpu_fast_probe(config, measure=False, compiled=True) is None  # the full probe has not run
    assert cpu_fast_probe(config, measure=False, compiled=False)["choice"]["channels_last"]


def test_compared_settings_run_interleaved_by_epoch_in_alternating_order(tiny_config, tmp_path):
    configs = [tiny_config.replace(epochs=3, max_batches=1, seed=s, tag=t) for s, t in ((1, "a"), (2, "b"), (3, "c"))]
    records = interleave(configs, tmp_path)
    assert [(r["epoch"], r["tag"]) for r in records] == [
        (1, "a"), (1, "b"), (1, "c"), (2, "c"), (2, "b"), (2, "a"), (3, "a"), (3, "b"), (3, "c")]
    assert [r["warmup"] for r in records] == [True] * 3 + [False] * 6


def test_a_diverging_setting_drops_out_and_the_others_go_on(tiny_config, tmp_path):
    configs = [tiny_config.replace(epochs=3, max_batches=1, tag="ok"),
               tiny_config.replace(epochs=3, max_batches=4, lr=1e12, tag="boom", fast=True)]
    records = interleave(configs, tmp_path)
    boom = [r for r in records if r["tag"] == "boom"]
    assert boom[-1]["status"] == "diverged" and len(boom) < 3  # epoch timers: caught at an epoch's end
    assert [r["epoch"] for r in records if r["tag"] == "ok"] == [1, 2, 3]


@pytest.mark.parametrize("flag", ["--timers", "--fast"])
def test_bad_values_of_the_new_flags_are_usage_errors(flag, capsys):
    args = ["train", flag, "sometimes"] if flag == "--timers" else ["train", "--fast=yes"]
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err


def test_c8_leaves_out_bf16_where_the_probe_measured_it_emulated():
    from lab.engine.acceleration import FAST, acceleration_settings

    def probe(fp32, bf16):
        key = lambda amp: json.dumps({"channels_last": False, "amp": amp})  # noqa: E731
        return {"choice": FAST_CHOICE, "step_s": {key("off"): fp32, key("bf16"): bf16}}

    settings, skipped = acceleration_settings("cpu", probe=probe(0.7, 6.3))
    assert "autocast bf16" not in [s["tag"] for s in settings] and "9.0x eager fp32's" in skipped["autocast bf16"]
    settings, skipped = acceleration_settings("cpu", probe=probe(0.7, 0.4))  # a CPU with AMX keeps it
    assert "autocast bf16" in [s["tag"] for s in settings] and "autocast bf16" not in skipped
    assert all(s["loader"] == "tensor" for s in settings) and [s["tag"] for s in settings][-1] == FAST


def test_others_load_sees_a_busy_core():
    """A busy-loop process beside this one keeps at least one core of the machine busy: the probe's load
    class counts it (a bound that more load can only raise)."""
    import os
    import subprocess
    import sys

    from lab.engine.fast import load_class, others_load

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        load = others_load(1.0)
    finally:
        spinner.kill()
        spinner.wait()
    assert load >= 0.8 / (os.cpu_count() or 1) and 0.0 <= load <= 1.0
    assert load_class(0.6) == "busy" and load_class(0.1) == "idle"


def fake_probe(monkeypatch, loads):
    """cpu_fast_probe with made-up step times (channels_last decidedly fastest, no compiler) and `loads` as the
    others' load it samples (before, between its stages, after)."""
    steps = {"eager fp32": [3.0, 3.1, 3.05, 2.95], "bf16 autocast": [7.0, 7.2, 7.1, 6.9],
             "channels_last": [2.5, 2.55, 2.45, 2.5], "channels_last + bf16 autocast": [6.0, 6.1, 5.9, 6.0]}
    calls = []

    def fake_samples(settings, batch_size, rounds=4, warmup=1):
        calls.append(batch_size)
        return {json.dumps(s): steps[setting_name(s)] for s in settings}

    loads = iter(loads)
    monkeypatch.setattr(lab.engine.fast, "interleaved_samples", fake_samples)
    monkeypatch.setattr(lab.engine.fast, "c_compiler", lambda: None)
    monkeypatch.setattr(lab.engine.fast, "others_load", lambda seconds=0.5: next(loads))
    return calls


@pytest.mark.parametrize("entry", [
    {"choice": {"channels_last": "yes"}}, {"choice": {"amp": "fp8"}}, {"choice": {"compile": "max-autotune"}},
    {"choice": FAST_CHOICE, "step_s": {"eager": 0.0}}, {"choice": FAST_CHOICE, "step_s": {"eager": float("nan")}},
    {"choice": FAST_CHOICE, "step_s": [1.0]}, {"reason": "no choice"}, [FAST_CHOICE], "channels_last"])
def test_a_bad_fast_choice_entry_is_measured_again_and_rewritten(tiny_config, tmp_path, monkeypatch, entry):
    from lab.core import files
    from lab.engine.fast import EAGER_ONLY, fast_cache_key

    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    calls = fake_probe(monkeypatch, [0.0, 0.0, 0.0])
    key = fast_cache_key(128, load="idle") + EAGER_ONLY
    (tmp_path / "fast-choice.json").write_text(json.dumps({key: entry, "another machine": {"choice": FAST_CHOICE}},
                                                          default=str).replace('"nan"', "NaN"))
    config = tiny_config.replace(batch_size=128)
    assert cpu_fast_probe(config, measure=False) is None  # a plan does not take it either
    said = []
    probe = cpu_fast_probe(config, log=said.append)
    assert probe["choice"] == {"channels_last": True, "amp": "off", "compile": "off"} and calls == [128]
    assert said[0].startswith(f"--fast on this CPU: the cached choice is ignored: {tmp_path / 'fast-choice.json'}: "
                              f"[{key!r}]") and said[0].endswith("; measured again")
    kept = files.read_json(tmp_path / "fast-choice.json")
    assert kept[key]["choice"] == probe["choice"] and kept["another machine"] == {"choice": FAST_CHOICE}


def test_a_fast_choice_file_that_is_a_list_counts_as_empty(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    calls = fake_probe(monkeypatch, [0.0] * 3)
    (tmp_path / "fast-choice.json").write_text("[1, 2, 3]")
    assert cpu_fast_probe(tiny_config.replace(batch_size=128), log=lambda m: None)["choice"]["channels_last"]
    assert calls == [128] and isinstance(json.loads((tmp_path / "fast-choice.json").read_text()), dict)


def test_a_fast_choice_measured_while_the_load_changed_is_used_not_cached(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    said = []
    calls = fake_probe(monkeypatch, [0.0, 0.9] + [0.0] * 3)  # idle before, busy after the eager candidates
    config = tiny_config.replace(batch_size=128)
    probe = cpu_fast_probe(config, log=said.append)
    assert probe["choice"]["channels_last"] and probe["others_load"] == [0.0, 0.9]
    assert said[-1] == ("--fast on this CPU: not cached: the load of other processes changed during the probe "
                        "(0%, 90% of the cores busy)")
    assert not (tmp_path / "fast-choice.json").exists()
    cpu_fast_probe(config, log=said.append)  # measured again
    assert calls == [128, 128] and (tmp_path / "fast-choice.json").exists()  # steady this time: cached
