"""C10's engine: every conversion of the eval model is built once per session (AOTInductor and torch.compile
compile for tens of seconds on 2 cores) and checked against eager; graphs are counted; latency statistics are
checked with fake clocks only (no test depends on speed or machine load)."""
import copy
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import model_with_statistics
from test_deploy_parts import coherent_model

from lab.engine import cpp, deploy
from lab.engine.model import count_conv_layers, resnet18

TORCHSCRIPT = ("TorchScript scripted", "TorchScript traced", "TorchScript frozen")
# what inductor compiles and issue 37's deploy paths: converted on a small model here (small_deployed; compiling the
# ResNet-18 takes tens of seconds each: tests/test_cpp.py builds its one package), the rest on the ResNet-18
NEW = ("AOTInductor frozen fp32", "torch.compile", "eager bf16 weights", "TorchScript frozen bf16 weights",
       "Inductor frozen fp32", "Inductor frozen bf16 weights", "int8 PT2E (torchao)", "ONNX Runtime fp32",
       "AOTInductor frozen bf16 weights", "AOTInductor int8")
RESNET = [s.name for s in deploy.settings_for("cpu") if s.name not in NEW]
AOTI = "AOTInductor frozen fp32"


@pytest.fixture(scope="session")
def deployed(tmp_path_factory):
    """Every CPU setting converted once, at batch 2 (the smallest dynamic batch export accepts)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, out = model_with_statistics(), tmp_path_factory.mktemp("deploy")
        example = torch.randn(2, 3, 32, 32)
        converted = deploy.convert_all(model, deploy.settings_for("cpu", names=RESNET), example, out, "cpu",
                                       max_batch=16)
        yield model, converted, out
    finally:
        torch.set_num_threads(threads)


def test_every_conversion_agrees_with_eager_within_its_tolerance(deployed, one_thread):
    model, converted, out = deployed
    assert set(converted) == set(RESNET)
    torch.manual_seed(1)
    images, labels = torch.randn(5, 3, 32, 32), torch.randint(0, 10, (5,))
    eager, _ = deploy.evaluate(model, (images, labels), n=4, device="cpu", batch_size=2)
    for name, c in converted.items():
        assert c.status == "ok", (name, c.reason)
        logits, seen = deploy.evaluate(c.fn, (images, labels), n=4, device="cpu", batch_size=2)
        assert torch.equal(seen, labels[:4]) and logits.shape == (4, 10) and logits.dtype == torch.float32
        ok, why = deploy.within_tolerance(eager, logits, c.precision)
        assert ok and deploy.worst_of_bound(eager, logits, c.precision) <= 0.1, (name, why)  # 10x inside its bound
        row = deploy.agreement(eager, logits, labels[:4])
        assert 0 <= row["top1_low"] <= row["top1"] <= row["top1_high"] <= 1 and 0 <= row["same_prediction"] <= 1
        assert math.isfinite(row["max_abs_diff"]) and c.convert_s > 0 and c.first_call_s > 0
        if name in TORCHSCRIPT:
            assert Path(c.file).is_file() and c.file_bytes == Path(c.file).stat().st_size > 1_000_000
            assert Path(c.file).parent == out and c.load_s > 0
        else:
            assert c.file is None and c.load_s is None
    assert converted["eager bf16 autocast"].precision == "bf16" and converted["TorchScript frozen"].precision == "fp32"
    assert any("deprecated" in w for w in converted["TorchScript scripted"].warnings)  # torch.jit, on this torch


def test_export_falls_back_to_a_static_batch(monkeypatch, one_thread):
    export = torch.export.export

    def no_dynamic_batch(model, args, dynamic_shapes=None):
        if dynamic_shapes is not None:
            raise ValueError("Constraints violated (batch)")
        return export(model, args)

    monkeypatch.setattr(torch.export, "export", no_dynamic_batch)
    result = deploy.Converted(AOTI)
    program = deploy._export(resnet18().eval(), torch.randn(2, 3, 32, 32), 16, result)
    assert result.batch == "static 2"
    assert result.note == "dynamic batch failed: ValueError: Constraints violated (batch)"
    assert deploy.graph_summary(program.graph)["aten.conv2d.default"] == 20


def test_graphs_are_counted_and_their_differences_derived(deployed):
    model, converted, out = deployed
    scripted = converted["TorchScript scripted"].graphs["scripted"]
    traced = converted["TorchScript traced"].graphs["traced"]
    frozen = converted["TorchScript frozen"].graphs["frozen"]
    convs = count_conv_layers(model)["total"]
    assert scripted["aten::batch_norm"] == traced["aten::batch_norm"] == convs  # a batch norm after each conv
    assert deploy._count(frozen, "batch_norm") == 0 and deploy._count(frozen, "conv") == convs
    assert "prim::GetAttr" in scripted and "prim::GetAttr" not in frozen
    changes = " | ".join(deploy.describe_changes(scripted, frozen, "scripted", "frozen"))
    assert f"folded into the convolutions: {convs} batch_norm nodes -> 0" in changes and "prim::GetAttr" in changes
    assert "prim::If" not in traced and scripted["prim::If"] > 0  # tracing ran the Python; scripting kept its ifs
    assert "scripted keeps control flow" in " | ".join(deploy.describe_changes(scripted, traced, "scripted", "traced"))
    for name in ("torchscript-scripted", "torchscript-traced", "torchscript-frozen"):
        assert (out / f"{name}.graph.txt").stat().st_size > 0 and (out / f"{name}.code.txt").stat().st_size > 0


def test_a_failing_conversion_is_a_row_with_its_reason(monkeypatch, tmp_path, one_thread):
    def broken_trace(*args, **kwargs):
        raise RuntimeError("tracer broke\nsecond line")

    monkeypatch.setattr(torch.jit, "trace", broken_trace)
    monkeypatch.setattr(deploy, "c_compiler", lambda: None)
    wanted = ["eager fp32", "TorchScript traced", "TorchScript scripted", AOTI]
    rows = deploy.convert_all(resnet18(), deploy.settings_for("cpu", names=wanted), torch.randn(2, 3, 32, 32),
                              tmp_path, "cpu")
    assert rows["TorchScript traced"].status == "failed" and rows["TorchScript traced"].fn is None
    assert rows["TorchScript traced"].reason == "RuntimeError: tracer broke"
    assert rows[AOTI].status == "failed" and "no C++ compiler" in rows[AOTI].reason
    assert rows["eager fp32"].status == rows["TorchScript scripted"].status == "ok"
    assert rows["TorchScript scripted"].fn(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert "fn" not in rows[AOTI].row() and rows[AOTI].row()["status"] == "failed"


def fake_clock(durations):
    """A clock whose i-th pair of reads (start, end) lies durations[i] apart."""
    reads, now = [], 0.0
    for d in durations:
        reads += [now, now + d]
        now += d + 1.0
    it = iter(reads)
    return lambda device: next(it)


def test_percentiles_are_exact_and_only_where_ten_calls_lie_beyond():
    durations = [i / 1000 for i in range(1000, 0, -1)]  # 1 ms .. 1 s, in reverse
    times = deploy.time_calls(lambda x: x, torch.zeros(1), 1000, "cpu", clock=fake_clock(durations))
    assert sorted(times) == pytest.approx(sorted(durations))
    p = deploy.percentiles(times)
    assert (p["n"], p["p50"], p["p90"], p["p99"]) == (1000, pytest.approx(0.5), pytest.approx(0.9), pytest.approx(0.99))
    assert p["mean"] == pytest.approx(0.5005)
    assert deploy.percentiles(list(range(1, 1000)))["p99"] is None  # 999 calls: 9 beyond the 99th
    assert deploy.percentiles(list(range(1, 100)))["p90"] is None
    assert deploy.percentiles(list(range(1, 101)))["p90"] == 90
    assert deploy.percentiles(list(range(1, 20)))["p50"] is None and deploy.percentiles(list(range(1, 21)))["p50"] == 10
    assert deploy.percentiles([]) == {"n": 0, "p50": None, "p90": None, "p99": None, "mean": None}


def test_interleaved_latency_alternates_the_order_each_block():
    calls = []
    settings = {name: (lambda x, name=name: calls.append(name)) for name in "abc"}
    clock = fake_clock([0.001] * 3 + [0.002] * 18)  # warm-up: 1 call each; then 3 blocks x 3 settings x 2 calls
    result = deploy.interleaved_latency(settings, lambda: torch.zeros(1), blocks=3, calls_per_block=2, device="cpu",
                                        warmup=1, clock=clock, measure_load=False)
    assert "".join(calls) == "abc" + "aabbcc" + "ccbbaa" + "aabbcc"
    assert result["order"] == list("abc" "cba" "abc")
    for name in "abc":
        row = result["settings"][name]
        assert row["times"] == pytest.approx([0.002] * 6) and row["block_medians"] == pytest.approx([0.002] * 3)
        assert row["p50"] is None and row["mean"] == pytest.approx(0.002)
    assert result["copy_input_timed"] is False and result["threads"] == torch.get_num_threads()


def test_a_setting_whose_warm_up_fails_is_left_out_of_the_blocks_and_named():
    """Dynamo at its recompile limit (C10 makes it an error: deploy.measure) stops one setting, not the others."""
    calls = []

    def over_the_limit(x):
        raise RuntimeError("Dynamo recompile limit exceeded\nhints")
    settings = {"a": calls.append, "b": over_the_limit, "c": calls.append}
    result = deploy.interleaved_latency(settings, lambda: torch.zeros(1), blocks=2, calls_per_block=1, device="cpu",
                                        warmup=1, clock=fake_clock([0.001] * 8), measure_load=False)
    assert result["failed"] == {"b": "RuntimeError: Dynamo recompile limit exceeded"}
    assert list(result["settings"]) == ["a", "c"] and result["order"] == list("ac" "ca") and len(calls) == 6


def test_host_copy_is_inside_the_timed_call_when_asked():
    seen = []
    result = deploy.interleaved_latency({"a": seen.append}, lambda: torch.zeros(1), 1, 1, "cpu", warmup=0,
                                        copy_input=True, clock=fake_clock([0.1]), measure_load=False)
    assert len(seen) == 1 and result["copy_input_timed"] is True and result["settings"]["a"]["times"] == [0.1]


def test_throughput_and_its_memory(one_thread):
    result = deploy.throughput(lambda x: x * 2, torch.zeros(8, 3, 32, 32), "cpu", calls=4, warmup=1,
                               clock=fake_clock([0.0, 0.5]))  # the warm-up call, then the 4 calls as one stretch
    assert result["images_per_s"] == pytest.approx(8 * 4 / 0.5) and result["batch"] == 8
    assert result["peak_bytes"] > 0 and "peak RSS" in result["peak_how"]


def test_agreement_and_tolerance_from_known_logits():
    eager = torch.tensor([[5.0, 1.0], [0.0, 2.0], [3.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 0])
    row = deploy.agreement(eager, eager.clone(), labels)
    assert row["top1"] == 0.75 and (row["top1_low"], row["top1_high"]) == pytest.approx(deploy.stats.wilson(0.75, 4))
    assert row["max_abs_diff"] == 0 and row["same_prediction"] == 1
    # fp32: |diff| <= 1e-4 + 1e-4 |eager| on each logit: 1e-4 at a logit of 0, 6e-4 at 5
    assert deploy.worst_of_bound(eager, eager + 5e-5, "fp32") == pytest.approx(0.5)  # at the zeros
    assert not deploy.within_tolerance(eager, eager + 4e-4, "fp32")[0]  # within 1e-4 x the largest |logit|: not enough
    at_five = eager.clone()
    at_five[0, 0] += 2 ** -11  # 4.9e-4, exact in float32
    assert deploy.within_tolerance(eager, at_five, "fp32") == (
        True, "|diff| ≤ 0.0001 + 0.0001·|eager| (fp32): the worst logit at 0.814 of its bound")
    at_five[0, 0] += 2 ** -11
    assert not deploy.within_tolerance(eager, at_five, "fp32")[0]
    assert deploy.worst_of_bound(eager, eager + 0.4, "bf16") == pytest.approx(1.0)  # bf16: 0.4 + 0.08 |eager|
    assert not deploy.within_tolerance(eager, eager + 0.41, "bf16")[0]
    nan = eager.clone()
    nan[0, 0] = math.nan
    assert deploy.agreement(eager, nan, labels)["max_abs_diff"] == math.inf
    assert deploy.within_tolerance(eager, nan, "bf16") == (False, "|diff| ≤ 0.4 + 0.08·|eager| (bf16): a logit not "
                                                                  "finite")


def test_batch_norm_statistics_are_estimated_on_a_copy_over_the_images():
    """One convolution and its batch norm: the running mean and variance become the average of the batches' (torch's
    cumulative average, momentum None), the weights and the model given stay as they were."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    model[1].running_var.fill_(1e-6)  # statistics from a few steps: eval outputs far off scale
    images = torch.randn(8, 3, 8, 8)
    estimated = deploy.estimate_batch_norm(model, images, batch_size=4)
    with torch.no_grad():
        out = [model[0](x) for x in images.split(4)]
    mean = torch.stack([o.mean((0, 2, 3)) for o in out]).mean(0)
    var = torch.stack([o.var((0, 2, 3)) for o in out]).mean(0)  # each batch's unbiased variance, as batch norm keeps
    assert torch.allclose(estimated[1].running_mean, mean, atol=1e-6)
    assert torch.allclose(estimated[1].running_var, var, rtol=1e-5)
    assert not estimated.training and estimated[1].momentum == model[1].momentum == 0.1
    assert torch.equal(estimated[0].weight, model[0].weight) and torch.equal(estimated[1].weight, model[1].weight)
    assert (model[1].running_var == 1e-6).all()  # the model given: untouched
    with torch.no_grad():
        assert model(images).abs().max() > 100 > estimated(images).abs().max()


def test_threads_are_restored():
    before = torch.get_num_threads()
    with deploy.threads(1) as n:
        assert n == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before and deploy.thread_counts()[0] == 1


def small_model():
    """Two 3x3 convolutions with batch norm (estimated over its 64 images), pooling and 10 logits: inductor compiles
    it in a second or two."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    images = torch.randn(64, 3, 32, 32)
    return deploy.estimate_batch_norm(model, images), images


@pytest.fixture(scope="module")
def small_deployed(tmp_path_factory):
    """Issue 37's settings and eager fp32, converted from the small model at 1 thread, int8 calibrated on its images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (model, images), out = small_model(), tmp_path_factory.mktemp("deploy-small")
        converted = deploy.convert_all(model, deploy.settings_for("cpu", names=(deploy.BASELINE, *NEW)), images[:2],
                                       out, "cpu", calibration=images)
        yield model, images, converted, out
    finally:
        torch.set_num_threads(threads)


def test_the_new_settings_agree_run_what_they_say_and_take_any_batch(small_deployed, one_thread):
    model, images, converted, out = small_deployed
    eager, _ = deploy.evaluate(model, (images, torch.zeros(64)), 64, "cpu")
    precision = {name: c.precision for name, c in converted.items()}
    assert precision == {deploy.BASELINE: "fp32", "eager bf16 weights": "bf16", "TorchScript frozen bf16 weights":
                         "bf16", "Inductor frozen fp32": "fp32", "Inductor frozen bf16 weights": "bf16",
                         "int8 PT2E (torchao)": "int8", "ONNX Runtime fp32": "fp32", AOTI: "fp32", "torch.compile":
                         "fp32", "AOTInductor frozen bf16 weights": "bf16", "AOTInductor int8": "int8"}
    for name, c in converted.items():
        assert c.status == "ok" and c.ran_as_said, (name, c.reason, c.note)
        logits, _ = deploy.evaluate(c.fn, (images, torch.zeros(64)), 64, "cpu")
        worst = deploy.worst_of_bound(eager, logits, c.precision)
        assert worst <= (0.25 if c.precision == "int8" else 0.1), (name, worst)  # int8: 4x inside; the rest 10x
        assert (logits.argmax(1) == eager.argmax(1)).float().mean() >= (0.9 if c.precision == "int8" else 1), name
        with torch.inference_mode():
            assert [c.fn(images[:b]).shape for b in (1, 3)] == [(1, 10), (3, 10)], name  # no batch fixed at 2
    # what runs, counted: 2 convolutions, in oneDNN's int8 kernels with int8 weights, in bf16 weights, in fp32
    int8, bf16 = converted["int8 PT2E (torchao)"].kernels, converted["Inductor frozen bf16 weights"].kernels
    assert (int8["qconv"], int8["conv"], int8["conv weights int8"]) == (2, 0, 2)
    assert (bf16["qconv"], bf16["conv"], bf16["conv weights bf16"]) == (0, 2, 2) and "conv weights fp32" not in bf16
    assert converted["Inductor frozen fp32"].kernels == {"qconv": 0, "conv": 2, "conv weights fp32": 2}
    assert converted["eager bf16 weights"].kernels == converted["TorchScript frozen bf16 weights"].kernels == {
        "conv weights bf16": 2}
    # the packages, counted in their C++ wrapper (what the .so that is loaded and timed calls), fp32 in and out
    packaged = {k: converted[f"AOTInductor {k}"] for k in ("int8", "frozen bf16 weights")}
    fp32_package = converted[AOTI]  # one package, exported at batch 2, runs any batch (the loop above: 1 and 3)
    assert fp32_package.batch == "dynamic 1-1024" and fp32_package.file_bytes == Path(fp32_package.file).stat().st_size
    assert fp32_package.graphs["exported"]["aten.conv2d.default"] == 2 and fp32_package.load_s > 0
    assert (out / "aotinductor-frozen-fp32.graph.txt").stat().st_size > 0
    assert (packaged["int8"].kernels["qconv"], packaged["int8"].kernels["conv"]) == (2, 0), packaged["int8"].kernels
    bf16_package = packaged["frozen bf16 weights"].kernels
    assert (bf16_package["conv"], bf16_package["conv weights bf16"]) == (2, 2)
    assert "conv weights fp32" not in bf16_package
    assert all(Path(c.file).with_suffix(".wrapper.cpp.txt").is_file() for c in packaged.values())
    assert converted["int8 PT2E (torchao)"].graphs["int8 (PT2E)"]["quantized_decomposed.quantize_per_tensor.default"]
    assert converted["int8 PT2E (torchao)"].batch.startswith("dynamic")
    onnx = converted["ONNX Runtime fp32"]
    assert Path(onnx.file).parent == out and onnx.file.endswith(".onnx") and onnx.file_bytes > 10_000
    assert onnx.note == "exported with torch.onnx.export(dynamo=True)" and onnx.load_s > 0


def test_cpp_loads_the_fastest_package_and_computes_what_python_does(small_deployed, one_thread):
    """C10.5's choice: TorchScript scripted's file and the AOTInductor package fastest in Python; the int8 and
    bf16 packages take fp32 in and give fp32 out (deploy.Served), so the C++ program runs them as they are."""
    converted = small_deployed[2]
    latency = {"AOTInductor int8": 0.002, "AOTInductor frozen bf16 weights": 0.003, deploy.BASELINE: 0.001}
    timed = {n: replace(converted[n], latency_s=v) for n, v in latency.items()}
    scripted = deploy.Converted(cpp.SCRIPTED, file="/x/torchscript-scripted.pt", latency_s=0.005)
    assert [c.name for c in cpp.chosen({**timed, cpp.SCRIPTED: scripted})] == [cpp.SCRIPTED, "AOTInductor int8"]
    assert [cpp.kind_of(c) for c in (scripted, timed["AOTInductor int8"], timed[deploy.BASELINE])] == [
        "torchscript", "aoti", None]
    built, x = cpp.build(), torch.randn(1, 3, 32, 32)
    assert built.binary is not None, built.reason
    for name in ("AOTInductor int8", "AOTInductor frozen bf16 weights"):
        _, logits = cpp.run(built.binary, "aoti", converted[name].file, x, threads=1, warmup=1, calls=2)
        with torch.inference_mode():
            assert torch.equal(logits, converted[name].fn(x)), name


def test_onnx_runtime_computes_on_the_thread_count_torch_is_set_to(small_deployed):
    onnx = small_deployed[2]["ONNX Runtime fp32"].fn
    for n in (1, 2):
        with deploy.threads(n), torch.inference_mode():
            onnx(torch.zeros(1, 3, 32, 32))
    assert {n: s.get_session_options().intra_op_num_threads for n, s in onnx.sessions.items()} == {1: 1, 2: 2}


def test_a_frozen_compile_is_not_served_another_settings_graph(small_deployed, one_thread):
    """Dynamo shares compiled code between instances of one module class where the backends match: Inductor frozen
    fp32 converted after torch.compile ran the latter's unfrozen graph (the ResNet-18 at 1 thread: 15.6 ms both; on
    a backend of its own, 8.1 ms). Each compiled setting runs its own graph."""
    _, images, converted, _ = small_deployed  # converted in SETTINGS' order: torch.compile first
    with torch.inference_mode():  # the same graph would give the same bits; batch norm folded in, other ones
        unfrozen, frozen = (converted[n].fn(images[:4]) for n in ("torch.compile", "Inductor frozen fp32"))
    assert not torch.equal(unfrozen, frozen) and deploy.within_tolerance(unfrozen, frozen, "fp32")[0]


@pytest.mark.parametrize("how", ["compile", "aoti"])
def test_int8_compiled_without_freezing_runs_in_fp32_and_is_flagged_never_timed(how, tmp_path, monkeypatch,
                                                                                one_thread):
    """The known trap (pytorch/ao#4566): without inductor's freezing, the quantized model's convolutions run as fp32
    ones on dequantized weights, in torch.compile's code and in an AOTInductor package alike. Counted, flagged,
    never timed."""
    model, images = small_model()
    trap = deploy.Setting("int8 without freezing", how, devices=("cpu",), weights="int8")
    monkeypatch.setattr(deploy, "SETTINGS", [deploy.SETTINGS[0], trap])
    rows = deploy.results.Rows(tmp_path, "C10_deploy").start()
    limits = set()  # what dynamo does at its recompile limit while C10 measures: an error, not a silent eager run
    timed = deploy.measure(rows.scoped(device="cpu"), model, (images[:8], torch.zeros(8, dtype=torch.long)),
                           tmp_path / "cpu", heavy=False, blocks=2, calls=2, batches=[1], calibration=images,
                           note=lambda line: limits.add((torch._dynamo.config.recompile_limit,
                                                         torch._dynamo.config.fail_on_recompile_limit_hit)))
    assert list(timed) == [deploy.BASELINE] and limits == {(64, True)}
    dev = deploy.by_device(deploy.results.read(tmp_path, part="C10_deploy"))["cpu"]
    t = deploy.settings_of(dev).loc[trap.name]
    assert t["ran_as_said"] == 0 and t["within_tolerance"] == 1 and t["note"].startswith("ran in fp32")
    assert deploy.kernels_table(dev).loc[trap.name, ["qconv", "conv"]].tolist() == [0, 2]
    assert not (dev["setting"] == trap.name)[dev["metric"] == "latency_block_median_s"].any()


def test_int8_bound_passes_correct_conversions_and_fails_broken_ones(tmp_path, one_thread):
    """The int8 bound: the small model's correct conversion inside (test above), and the coherent model's (logits to
    300) 2x inside; the coherent model with its convolution's weights 10 % off, or the small one calibrated on images
    100x too wide (its activations coarsely quantized), outside."""
    int8 = next(s for s in deploy.SETTINGS if s.weights == "int8" and s.how == "compile")

    def worst(model, images, reference, calibration):
        c = deploy.convert(model, int8, images[:2], tmp_path, "cpu", calibration=calibration)
        eager, _ = deploy.evaluate(reference, (images, torch.zeros(len(images))), len(images), "cpu")
        logits, _ = deploy.evaluate(c.fn, (images, torch.zeros(len(images))), len(images), "cpu")
        return c.ran_as_said and deploy.worst_of_bound(eager, logits, "int8")
    coherent, images = coherent_model()
    off = copy.deepcopy(coherent)
    with torch.no_grad():
        off[0].weight.mul_(1.1)
    assert worst(coherent, images, coherent, images) <= 0.5 and worst(off, images, coherent, images) > 1
    small, images = small_model()
    assert worst(small, images, small, 100 * torch.randn_like(images)) > 1
