"""C11's engine: FLOPs counted by torch equal the layers' shapes' FLOPs to the FLOP; the peak probes return
finite rates within their budget; roofline points land where the formulas put them; the binding roof follows
the time; achieved/peak never exceeds 100 %. No test asserts a speed (CI runs with both cores busy)."""
import json
import math
import time

import pandas as pd
import pytest
import torch

from lab.engine import environment, flops, roofline
from lab.engine.model import resnet18
from lab.engine.roofline import OpEvent

FORWARD_PER_IMAGE = 1_110_845_440  # FlopCounterMode, torch 2.14.1, lab's ResNet-18, 32×32
TRAIN_PER_IMAGE = 3_328_997_376  # forward + backward (the stem conv has no input gradient)
STEM = 2 * 64 * 32 * 32 * 3 * 3 * 3  # the stem conv's forward FLOPs


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("batch, device", [(1, "cpu"), (128, "meta")])
def test_counted_flops_equal_the_analytic_count(batch, device, train, one_thread):
    model = resnet18()
    counted = flops.count(model, batch, train, device=device)
    assert counted == flops.analytic(model, batch, train)
    assert counted["total"] == batch * (TRAIN_PER_IMAGE if train else FORWARD_PER_IMAGE)
    assert counted["other"] == 0 and counted["linear"] == batch * 2 * 512 * 10 * (3 if train else 1)


def test_the_backward_rule_is_three_forwards_less_the_stems_input_gradient():
    assert TRAIN_PER_IMAGE == 3 * FORWARD_PER_IMAGE - STEM


def test_a_meta_count_equals_a_real_one(one_thread):
    model = resnet18()
    assert flops.count(model, 2, True, device="meta") == flops.count(model, 2, True, device="cpu")


def test_the_probes_return_finite_positive_rates_within_their_budget(one_thread):
    start = time.perf_counter()
    for precision in roofline.precisions("cpu"):
        peak = roofline.matmul_peak("cpu", precision, sizes=(32, 64), seconds=0.3, conv_shape=(2, 16, 8))
        assert set(peak["by_size"]) == {32, 64, "conv3x3"} and peak["tflops"] == max(peak["by_size"].values())
        assert all(math.isfinite(r) and r > 0 for r in peak["by_size"].values())
        assert peak["emulated"] == (precision == "bf16" and not roofline.bf16_native())
    memory = roofline.bandwidth("cpu", nbytes=2**20, seconds=0.2)
    assert all(math.isfinite(memory[k]) and memory[k] > 0 for k in ("copy_GBs", "triad_GBs"))
    assert memory["array_bytes"] == 2**20 and roofline.llc_bytes() > 0
    assert time.perf_counter() - start < 60  # a bound on the budget's honouring, not a speed


def test_cache_sizes_parse():
    assert roofline._size("32768K\n") == 32 * 2**20
    assert roofline._size("32 MiB (1 instance)") == 32 * 2**20
    assert roofline._size("1024") == 1024


def test_machine_peaks_are_cached_per_conditions(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(roofline, "others_load", lambda seconds=0.5: 0.0)
    tiny = {"sizes": (32,), "conv_shape": (2, 16, 8), "nbytes": 2**20, "seconds": 0.2}
    peaks = roofline.machine_peaks("cpu", threads=1, **tiny)
    assert set(roofline.precisions("cpu")) <= set(peaks) and peaks["copy_GBs"] > 0 and peaks["triad_GBs"] > 0
    conditions = peaks["conditions"]
    assert conditions["threads"] == 1 and conditions["sizes"] == [32] and conditions["conv3x3"] == [2, 16, 8]
    assert conditions["torch"] == torch.__version__ and set(conditions["by_size"]["fp32"]) == {"32", "conv3x3"}
    assert "1 threads" in conditions["key"] and "idle" in conditions["key"]
    # the machine as the report's environment names it: the CPU's model and flags, its cores, memory, torch
    assert conditions["key"].startswith(environment.machine("cpu")) and " cores | " in conditions["key"]
    assert " GiB | torch " in conditions["key"] and conditions["source"] == "measured" and conditions["cached"]

    def fail(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(roofline, "matmul_peak", fail)
    again = roofline.machine_peaks("cpu", threads=1, **tiny)  # from peaks.json
    assert again["conditions"]["source"] == "cache" and again["conditions"]["date"] == conditions["date"]
    without = lambda p: {k: v for k, v in p.items() if k != "conditions"}  # noqa: E731
    assert without(again) == without(peaks)
    with pytest.raises(AssertionError, match="measured again"):
        roofline.machine_peaks("cpu", threads=1, cache=False, **tiny)


def test_a_probe_during_which_the_load_changed_is_not_cached(tmp_path, monkeypatch, one_thread):
    """Idle before and after, busy between two of the probe's stages: the peaks serve this call, not the cache."""
    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    loads = iter([0.0, 0.9, 0.0, 0.0, 0.0])  # before, after fp32, after bf16 (and int8), after
    monkeypatch.setattr(roofline, "others_load", lambda seconds=0.5: next(loads))
    peaks = roofline.machine_peaks("cpu", threads=1, sizes=(32,), conv_shape=(), nbytes=2**20, seconds=0.1)
    conditions = peaks["conditions"]
    assert conditions["others_load"][:2] == [0.0, 0.9] and conditions["others_load_after"] == 0.0
    assert "idle" in conditions["key"] and not conditions["cached"] and peaks["fp32"] > 0
    assert conditions["cache_note"] == "not cached: the load of other processes changed during the probe"
    assert not (tmp_path / "peaks.json").exists()


TINY = {"sizes": (32,), "conv_shape": (2, 16, 8), "nbytes": 2**20, "seconds": 0.2}


def only_int8_probed(monkeypatch):
    """machine_peaks with made-up float and bandwidth probes and an idle machine: the int8 probe alone runs."""
    monkeypatch.setattr(roofline, "others_load", lambda seconds=0.5: 0.0)
    monkeypatch.setattr(roofline, "matmul_peak", lambda device, p, *args: {"precision": p, "tflops": 1.0,
                                                                             "by_size": {32: 1.0}, "emulated": False})
    monkeypatch.setattr(roofline, "bandwidth", lambda *args: {"copy_GBs": 9.0, "triad_GBs": 9.0, "array_bytes": 1,
                                                              "llc_bytes": 1})


def test_the_int8_probes_count_two_operations_per_multiply_accumulate(monkeypatch, one_thread):
    seen, real = [], roofline.sustained_rate

    def spy(fn, work, device, seconds):
        seen.append((fn(), work))
        return real(fn, work, device, seconds)

    monkeypatch.setattr(roofline, "sustained_rate", spy)
    peak = roofline.int8_peak(32, (2, 16, 8), seconds=0.2)
    (mm, mm_ops), (conv, conv_ops) = seen
    assert mm.dtype == torch.int32 and mm.shape == (32, 32) and mm_ops == 2 * 32**3  # int8 x int8 -> int32
    assert conv.dtype == torch.uint8 and conv.shape == (2, 16, 8, 8) and conv_ops == 2 * (2 * 16 * 8 * 8) * (16 * 9)
    assert set(peak["by_size"]) == {32, "conv3x3"} and peak["failed"] == {}
    assert peak["tops"] == max(peak["by_size"].values()) > 0 and math.isfinite(peak["tops"])


def test_without_int8_instructions_there_is_no_int8_peak_and_the_conditions_say_why(monkeypatch, one_thread):
    monkeypatch.setattr(roofline, "int8_instructions", lambda: [])
    monkeypatch.setattr(roofline, "int8_peak", None)  # never called
    only_int8_probed(monkeypatch)
    peaks = roofline.machine_peaks("cpu", threads=1, cache=False, **TINY)
    assert "int8" not in peaks and peaks["fp32"] == 1.0 and peaks["conditions"]["int8_instructions"] == []
    assert peaks["conditions"]["int8_missing"] == ("no int8 instructions (AMX-INT8, AVX512-VNNI, AVX-VNNI) in this "
                                                   "CPU's flags")


def test_a_failing_int8_probe_is_left_out_with_its_reason(monkeypatch, one_thread):
    def fail(*args):
        raise RuntimeError("no kernel for this build\nmore lines")

    monkeypatch.setattr(roofline, "int8_instructions", lambda: ["AVX512-VNNI"])
    monkeypatch.setattr(roofline, "_qconv", fail)
    only_int8_probed(monkeypatch)
    peaks = roofline.machine_peaks("cpu", threads=1, cache=False, **TINY)
    conditions = peaks["conditions"]
    assert peaks["int8"] == conditions["by_size"]["int8"]["32"] > 0 and "int8_missing" not in conditions
    assert conditions["int8_failed"] == {"conv3x3": "RuntimeError: no kernel for this build"}
    monkeypatch.setattr(roofline, "_int_mm", fail)
    peaks = roofline.machine_peaks("cpu", threads=1, cache=False, **TINY)
    failed = "RuntimeError: no kernel for this build"
    assert "int8" not in peaks
    assert peaks["conditions"]["int8_missing"] == f"the probes failed: 32: {failed}; conv3x3: {failed}"


def test_a_cached_entry_from_before_the_int8_probe_is_not_returned(tmp_path, monkeypatch, one_thread):
    from lab.core import files

    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(roofline, "int8_instructions", lambda: ["AMX-INT8"])
    only_int8_probed(monkeypatch)
    key = roofline.machine_peaks("cpu", threads=1, cache=False, **TINY)["conditions"]["key"]
    assert key.endswith(" | int8")
    files.save_json(tmp_path / "peaks.json", {key.removesuffix(" | int8"): {"fp32": 123.0}})  # as older code kept it
    peaks = roofline.machine_peaks("cpu", threads=1, **TINY)
    assert peaks["fp32"] == 1.0 and peaks["int8"] > 0 and set(files.read_json(tmp_path / "peaks.json")) == {
        key.removesuffix(" | int8"), key}


SOUND = {"fp32": 0.5, "bf16": 0.9, "copy_GBs": 20.0, "triad_GBs": 22.0, "emulated": [], "conditions": {}}


@pytest.mark.parametrize("entry, said", [
    ({**SOUND, "fp32": 0.0}, "['KEY'].fp32 is 0, not a positive number"),  # ZeroDivisionError in binding_roof before
    ({**SOUND, "bf16": "0.9"}, "['KEY'].bf16 is \"0.9\", not a number"),  # a string came back as a peak
    ({**SOUND, "copy_GBs": float("nan")}, "['KEY'].copy_GBs is nan, not a finite number"),
    ({**SOUND, "fp32": 1e30}, "['KEY'].fp32 is 1e+30, above the plausible 100000"),
    ({**SOUND, "triad_GBs": -3}, "['KEY'].triad_GBs is -3, not a positive number"),
    ({k: v for k, v in SOUND.items() if k != "bf16"}, "['KEY'].bf16 is missing"),
    ({**SOUND, "conditions": "?"}, "['KEY'].emulated, conditions are not a list and an object"),
    ([1, 2], "['KEY'] is list, not an object"),
    ("fast", "['KEY'] is str, not an object"),
])
def test_a_bad_cached_entry_is_measured_again_and_rewritten(tmp_path, monkeypatch, entry, said):
    from lab.core import files

    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(roofline, "int8_instructions", lambda: [])
    only_int8_probed(monkeypatch)
    key = roofline.machine_peaks("cpu", threads=1, cache=False, **TINY)["conditions"]["key"]
    (tmp_path / "peaks.json").write_text(json.dumps({key: entry, "another machine": SOUND}))
    peaks = roofline.machine_peaks("cpu", threads=1, **TINY)
    assert peaks["fp32"] == 1.0 and peaks["conditions"]["source"] == "measured" and peaks["conditions"]["cached"]
    assert peaks["conditions"]["cache_note"] == (f"the cached entry was ignored: {tmp_path / 'peaks.json'}: "
                                                 f"{said.replace('KEY', key)}; measured again")
    kept = files.read_json(tmp_path / "peaks.json")
    assert kept["another machine"] == SOUND and kept[key]["fp32"] == 1.0  # rewritten, the other entry kept
    assert roofline.machine_peaks("cpu", threads=1, **TINY)["conditions"]["source"] == "cache"


@pytest.mark.parametrize("text", ["[1, 2]", "", "{\"a\": ", "null", "\u0000"])
def test_a_peaks_file_that_is_not_an_object_counts_as_empty(tmp_path, monkeypatch, text):
    from lab.core import files

    monkeypatch.setenv("LAB_CACHE", str(tmp_path))
    monkeypatch.setattr(roofline, "int8_instructions", lambda: [])
    only_int8_probed(monkeypatch)
    (tmp_path / "peaks.json").write_text(text)  # a list stopped `make report` with a TypeError before
    peaks = roofline.machine_peaks("cpu", threads=1, **TINY)
    assert peaks["conditions"]["source"] == "measured" and "cache_note" not in peaks["conditions"]
    assert list(files.read_json(tmp_path / "peaks.json")) == [peaks["conditions"]["key"]]


def test_the_header_says_whether_the_peaks_were_measured_now_or_read_from_the_cache():
    from lab.report.summary import peaks_line

    measured = {"fp32": 0.31, "copy_GBs": 20.0, "conditions": {"source": "measured", "date": "2026-12-07 09:15"}}
    cached = {**measured, "conditions": {"source": "cache", "date": "2026-12-01 08:00"}}
    assert peaks_line({"cpu": measured}) == "cpu: fp32 0.31 TFLOP/s, copy 20 GB/s (measured now, 2026-12-07 09:15)"
    assert peaks_line({"cpu": cached}).endswith("(read from the cache, measured 2026-12-01 08:00)")
    busy = {**measured, "conditions": {**measured["conditions"], "cache_note": "not cached: the load of other "
                                       "processes changed during the probe"}}
    assert peaks_line({"cpu": busy}).endswith("(measured now, 2026-12-07 09:15; not cached: the load of other "
                                              "processes changed during the probe)")
    assert peaks_line({"cpu": {"fp32": 0.31, "conditions": {}}}) == "cpu: fp32 0.31 TFLOP/s"  # an older report


def test_the_peaks_table_shows_int8_in_tops_its_probe_and_why_it_is_missing(tmp_path):
    from lab.core import results
    from lab.parts import c11_limits, tables

    conditions = {"by_size": {"fp32": {"2048": 0.3, "conv3x3": 0.2}, "int8": {"2048": 3.5, "conv3x3": 6.3}},
                  "int8_instructions": ["AMX-INT8", "AVX512-VNNI"], "array_bytes": 64 * 2**20}
    peaks = {"fp32": 0.3, "int8": 6.3, "copy_GBs": 27.0, "emulated": [], "conditions": conditions}
    tables.save_peaks(results.Rows(tmp_path, "report"), "cpu", peaks)
    saved = results.read(tmp_path, part="report", metric="peak")
    assert dict(zip(saved["precision"], saved["unit"])) == {"fp32": "TFLOP/s", "int8": "TOPS"}
    assert [tables.peak_unit(k) for k in ("bf16", "int8", "copy_GBs")] == ["TFLOP/s", "TOPS", "GB/s"]
    assert tables.peaks_of(results.read(tmp_path, part="report"))["cpu"] == peaks  # read back as measured
    table = c11_limits.peaks_table(peaks)
    assert table.loc["int8 matmul/conv peak"].to_dict() == {"value": 6.3, "unit": "TOPS", "reached_by": "3×3 conv",
                                                             "note": "native: AMX-INT8"}
    assert table.loc["fp32 matmul/conv peak", "reached_by"] == "2048³ matmul"
    assert table.loc["copy bandwidth", "reached_by"] == "64 MiB arrays"
    missing = {**conditions, "int8_missing": "no int8 instructions (AMX-INT8, AVX512-VNNI, AVX-VNNI) in this "
                                             "CPU's flags"}
    row = c11_limits.peaks_table({"fp32": 0.3, "conditions": missing}).loc["int8 matmul/conv peak"]
    assert pd.isna(row["value"]) and row["note"] == missing["int8_missing"]


def test_achieved_against_the_peak():
    assert roofline.achieved(1e12, 2.0, 1.0) == {"tflops": 0.5, "share": 0.5, "at_peak_s": 1.0,
                                                 "peak_underestimated": False}
    over = roofline.achieved(3e12, 1.0, 2.0)
    assert over == {"tflops": 3.0, "share": None, "at_peak_s": None, "peak_underestimated": True}


# --- points from a made-up profile ------------------------------------------------------------------------

def conv(seconds, dtype="float"):
    """A 64→128 3×3 stride-2 convolution of 8 images 32×32 (output 8×128×16×16)."""
    return OpEvent("aten::convolution", [[8, 64, 32, 32], [128, 64, 3, 3], [], [], [], [], [], [], []],
                   [dtype, dtype, "", "ScalarList", "ScalarList", "ScalarList", "Scalar", "ScalarList", "Scalar"],
                   [None, None, None, [2, 2], [1, 1], [1, 1], False, [0, 0], 1], seconds)


def conv_backward(seconds, mask=(True, True, False)):
    return OpEvent("aten::convolution_backward",
                   [[8, 128, 16, 16], [8, 64, 32, 32], [128, 64, 3, 3], [], [], [], [], [], [], [], []],
                   ["float"] * 3 + ["ScalarList"] * 4 + ["Scalar", "ScalarList", "Scalar", "ScalarList"],
                   [None, None, None, [0], [2, 2], [1, 1], [1, 1], False, [0, 0], 1, list(mask)], seconds)


def batch_norm(seconds, shape=(8, 64, 32, 32)):
    return OpEvent("aten::batch_norm", [list(shape), [shape[1]], [shape[1]], [shape[1]], [shape[1]], [], [], [], []],
                   ["float"] * 5 + ["Scalar"] * 4, [None] * 5 + [True, 0.1, 1e-5, True], seconds)


def relu(seconds, shape=(8, 64, 32, 32)):
    return OpEvent("aten::relu", [list(shape)], ["float"], [None], seconds)


CONV_FLOPS = 2 * (8 * 128 * 16 * 16) * (64 * 3 * 3)  # 2 × output elements × one filter
CONV_BYTES = 4 * (8 * 64 * 32 * 32 + 128 * 64 * 3 * 3 + 8 * 128 * 16 * 16)  # input, weight, output in fp32
BN_BYTES = 4 * (2 * 8 * 64 * 32 * 32 + 4 * 64)  # read x and the 4 statistics/affine vectors, write y


def test_points_land_where_the_formulas_put_them():
    addmm = OpEvent("aten::addmm", [[10], [8, 512], [512, 10], [], []], ["float"] * 3 + ["Scalar"] * 2,
                    [None, None, None, 1, 1], 1e-5)
    sgd = OpEvent("aten::_foreach_add_", [[[128, 64, 3, 3], [10]], [[128, 64, 3, 3], [10]], []],
                  ["float", "float", "Scalar"], [None, None, -0.1], 2e-3, optimizer=True)
    view = OpEvent("aten::view", [[8, 512, 1, 1], []], ["float", "ScalarList"], [None, [8, -1]], 1e-6)
    step = [conv(4e-3), batch_norm(1e-3), relu(5e-4), view, addmm, conv_backward(8e-3),
            conv_backward(1e-3, (False, True, False)), sgd]
    second = [conv(2e-3)] + step[1:]  # the same step again, its conv faster: averaged per call
    profile = roofline.points(step + second, steps=2, wall_s=2 * 0.02)
    fwd, mm, bwd, bwd_weight = profile["layers"]
    assert fwd["label"] == "conv 64→128 3×3/2 16×16 fwd"
    assert (fwd["flops"], fwd["bytes"], fwd["seconds"]) == (CONV_FLOPS, CONV_BYTES, pytest.approx(3e-3))
    assert fwd["intensity"] == pytest.approx(CONV_FLOPS / CONV_BYTES)
    assert fwd["tflops"] == pytest.approx(CONV_FLOPS / 3e-3 / 1e12)
    # read grad_output, input, weight; write the input gradient (if asked) and the weight gradient
    grad_out, x, w = 8 * 128 * 16 * 16, 8 * 64 * 32 * 32, 128 * 64 * 3 * 3
    assert (bwd["flops"], bwd["bytes"]) == (2 * CONV_FLOPS, 4 * (grad_out + 2 * x + 2 * w))
    assert (bwd_weight["flops"], bwd_weight["bytes"]) == (CONV_FLOPS, 4 * (grad_out + x + 2 * w))
    assert bwd_weight["label"].endswith("bwd (weight grad)")
    assert (mm["flops"], mm["bytes"]) == (2 * 8 * 512 * 10, 4 * (10 + 8 * 512 + 512 * 10 + 8 * 10))
    assert profile["flops"] == 4 * CONV_FLOPS + 2 * 8 * 512 * 10
    groups = profile["no_flop"]
    assert groups["batch norm"]["bytes"] == BN_BYTES
    assert groups["batch norm"]["GBs"] == pytest.approx(BN_BYTES / 1e-3 / 1e9)
    assert groups["relu"]["bytes"] == 4 * 2 * 8 * 64 * 32 * 32
    assert groups["optimizer"]["bytes"] == 4 * 3 * (128 * 64 * 9 + 10) and groups["optimizer"]["calls"] == 1
    assert groups["other"]["bytes"] == 0  # a view moves nothing
    assert profile["step_s"] == pytest.approx(0.02)
    assert profile["unattributed_s"] == pytest.approx(0.02 - profile["layer_s"] - profile["no_flop_s"])


def test_bf16_tensors_count_two_bytes():
    point = roofline.points([conv(1e-3, "c10::BFloat16")])["layers"][0]
    assert (point["flops"], point["bytes"]) == (CONV_FLOPS, CONV_BYTES // 2)


def test_steps_that_differ_are_refused():
    with pytest.raises(ValueError, match="3 calls of aten::convolution"):
        roofline.points([conv(1e-3)] * 3, steps=2)


def test_a_profiled_step_has_the_counted_flops(one_thread):
    profile = roofline.layer_points(resnet18(), batch=2, steps=1)
    assert profile["flops"] == flops.count(resnet18(), 2, True, device="meta")["total"]
    labels = [p["label"] for p in profile["layers"]]
    assert sum(" fwd" in x for x in labels) == 20 and sum(" bwd" in x for x in labels) == 20
    assert sum(x.endswith("bwd (weight grad)") for x in labels) == 1  # the stem
    assert all(p["seconds"] > 0 for p in profile["layers"])
    assert all(profile["no_flop"][g]["calls"] > 0 for g in ("batch norm", "relu", "add", "optimizer"))
    assert profile["precision"] == "fp32" and profile["batch"] == 2


# --- the binding roof -------------------------------------------------------------------------------------

PEAKS = {"fp32": 1.0, "copy_GBs": 100.0, "triad_GBs": 80.0, "conditions": {"machine": "a made-up CPU"}}
# ridge: 1 TFLOP/s / 100 GB/s = 10 FLOP/byte; the conv's intensity is 88 FLOP/byte, right of it


def test_the_binding_roof_follows_the_time():
    at_80_percent = CONV_FLOPS / 0.8e12
    compute = roofline.points([conv(at_80_percent), batch_norm(BN_BYTES / 80e9)])
    roof, sentence = roofline.binding_roof(compute, PEAKS, "fp32")
    assert roof == "compute-bound"
    assert "at 80% of the measured fp32 peak" in sentence and "only lower precision or fewer FLOPs help" in sentence

    memory = roofline.points([conv(at_80_percent)] + [batch_norm(BN_BYTES / 80e9), relu(8 * 64 * 1024 * 8 / 80e9)] * 20)
    roof, sentence = roofline.binding_roof(memory, PEAKS, "fp32")
    assert roof == "memory-bound" and "at 80% of the measured bandwidth (100 GB/s)" in sentence

    overhead = roofline.points([conv(at_80_percent), batch_norm(1.0)], wall_s=10.0)  # BN at 0.005 GB/s, idle time
    roof, sentence = roofline.binding_roof(overhead, PEAKS, "fp32")
    assert roof == "launch/overhead-bound" and "fewer, larger operators" in sentence


@pytest.mark.parametrize("share, factor", [(0.26, "×3.85"), (0.85, None)])
def test_compute_bound_only_near_the_compute_roof(share, factor):
    """Right of the ridge at 85 % of the peak the step is compute-bound; at 26 % its kernels limit it, ×3.85 from
    the roof (1 / 0.26), and nothing calls it compute-bound."""
    profile = roofline.points([conv(CONV_FLOPS / (share * 1e12)), batch_norm(BN_BYTES / 80e9)])
    roof, sentence = roofline.binding_roof(profile, PEAKS, "fp32")
    assert f"at {share:.0%} of the measured fp32 peak (1 TFLOP/s)" in sentence
    if factor is None:
        assert roof == "compute-bound" and sentence.startswith("compute-bound: ")
        assert "only lower precision or fewer FLOPs help" in sentence
    else:
        assert roof == "kernel-limited (below the compute roof)" and "compute-bound" not in sentence
        assert "their kernels' efficiency limits them (memory layout, cache blocking, threads" in sentence
        assert f"up to {factor} faster" in sentence and sentence.count("×") == 1  # the factor, said once


def test_memory_bound_only_near_the_bandwidth_roof():
    """Batch norm and ReLU at 80 % of the 100 GB/s bandwidth are memory-bound; at 20 % their kernels limit them."""
    def step(share):
        return roofline.points([conv(CONV_FLOPS / 0.8e12)] + [batch_norm(BN_BYTES / (share * 100e9)),
                                                              relu(8 * 64 * 1024 * 8 / (share * 100e9))] * 20)

    roof, sentence = roofline.binding_roof(step(0.8), PEAKS, "fp32")
    assert roof == "memory-bound" and "at 80% of the measured bandwidth (100 GB/s)" in sentence
    roof, sentence = roofline.binding_roof(step(0.2), PEAKS, "fp32")
    assert roof == "kernel-limited (below the bandwidth roof)" and "memory-bound" not in sentence
    assert "at 20% of the measured bandwidth (100 GB/s)" in sentence and "up to ×5.00 faster" in sentence


def test_a_sentence_and_its_rule_agree_at_the_threshold():
    """59.6 % reads "60%": compute-bound, as said (the rule compares the share as the sentence rounds it)."""
    roof, sentence = roofline.binding_roof(roofline.points([conv(CONV_FLOPS / 0.596e12)]), PEAKS, "fp32")
    assert roof == "compute-bound" and "at 60% of the measured" in sentence
    roof, sentence = roofline.binding_roof(roofline.points([conv(CONV_FLOPS / 0.594e12)]), PEAKS, "fp32")
    assert roof.startswith("kernel-limited") and "at 59% of the measured" in sentence


def test_a_profile_reads_back_from_its_rows(tmp_path):
    """point_rows' rows, written and read back through the results table, are the profile again, rates included."""
    from lab.core import results

    profile = roofline.points([conv(2e-3), batch_norm(1e-3), conv_backward(5e-3), relu(5e-4)], wall_s=0.01)
    rows = results.Rows(tmp_path, "a part", kind="layer profile")
    rows.extend(roofline.point_rows(rows, profile))
    back = roofline.read_points(results.read(tmp_path, part="a part"))
    assert back["layers"] == profile["layers"] and back["step_s"] == profile["step_s"]
    assert back["no_flop"] == profile["no_flop"] and back["unattributed_s"] == pytest.approx(profile["unattributed_s"])
    assert roofline.read_points(results.read(tmp_path, part="another part")) is None


def test_a_rate_above_the_peak_is_flagged_not_shown_as_a_share():
    roof, sentence = roofline.binding_roof(roofline.points([conv(CONV_FLOPS / 2e12)]), PEAKS, "fp32")
    assert roof == "compute-bound" and "above the measured peak (the probe underestimated it)" in sentence
    assert "% of the measured" not in sentence


def test_the_figure_has_roofs_points_and_labels():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profile = roofline.points([conv(2e-3), conv_backward(5e-3), batch_norm(1e-3)])
    ax = roofline.plot_roofline({**profile, "batch": 8}, {**PEAKS, "bf16": 2.0}, "fp32")
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "a made-up CPU" in ax.get_title() and "fp32" in ax.get_title()
    assert len(ax.get_lines()) == 3  # fp32 roof, bf16 roof, the ridge
    names = [t.get_text() for t in ax.texts if "slowest layers" in t.get_text()][0]
    assert "1  conv 64→128 3×3/2 16×16 bwd (input + weight grad): 5 ms" in names and "batch norm: 1 ms" in names
    assert sorted(t.get_text() for t in ax.texts if t.get_text().isdigit()) == ["1", "2"]
    plt.close(ax.figure)
