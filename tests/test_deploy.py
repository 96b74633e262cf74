"""C10's engine: every conversion of the eval model is built once per session (AOTInductor and torch.compile
compile for tens of seconds on 2 cores) and checked against eager; graphs are counted; latency statistics are
checked with fake clocks only (no test depends on speed or machine load)."""
import math
from pathlib import Path

import pytest
import torch
from conftest import model_with_statistics

from lab.engine import deploy
from lab.engine.model import count_conv_layers, resnet18

TORCHSCRIPT = ("TorchScript scripted", "TorchScript traced", "TorchScript frozen")


@pytest.fixture(scope="session")
def deployed(tmp_path_factory):
    """Every CPU setting converted once, at batch 2 (the smallest dynamic batch export accepts)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, out = model_with_statistics(), tmp_path_factory.mktemp("deploy")
        example = torch.randn(2, 3, 32, 32)
        converted = deploy.convert_all(model, deploy.settings_for("cpu"), example, out, "cpu", max_batch=16)
        yield model, converted, out
    finally:
        torch.set_num_threads(threads)


def test_every_conversion_agrees_with_eager_within_its_tolerance(deployed, one_thread):
    model, converted, out = deployed
    assert set(converted) == {s.name for s in deploy.settings_for("cpu")}
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
        if name in TORCHSCRIPT or name == "AOTInductor":
            assert Path(c.file).is_file() and c.file_bytes == Path(c.file).stat().st_size > 1_000_000
            assert Path(c.file).parent == out and c.load_s > 0
        else:
            assert c.file is None and c.load_s is None
    assert converted["eager bf16 autocast"].precision == "bf16" and converted["TorchScript frozen"].precision == "fp32"
    aoti = converted["AOTInductor"]
    assert aoti.batch == "dynamic 1-16"  # one package, built at batch 2, runs other batch sizes
    with torch.inference_mode():
        for batch in (1, 3):
            ok, why = deploy.within_tolerance(model(images[:batch]), aoti.fn(images[:batch]), "fp32")
            assert ok, (batch, why)
    assert any("deprecated" in w for w in converted["TorchScript scripted"].warnings)  # torch.jit, on this torch


def test_export_falls_back_to_a_static_batch(monkeypatch, one_thread):
    export = torch.export.export

    def no_dynamic_batch(model, args, dynamic_shapes=None):
        if dynamic_shapes is not None:
            raise ValueError("Constraints violated (batch)")
        return export(model, args)

    monkeypatch.setattr(torch.export, "export", no_dynamic_batch)
    result = deploy.Converted("AOTInductor")
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
    exported = converted["AOTInductor"].graphs["exported"]
    assert exported["aten.conv2d.default"] == convs and exported["placeholder"] > 1
    for name in ("torchscript-scripted", "torchscript-traced", "torchscript-frozen", "aotinductor"):
        assert (out / f"{name}.graph.txt").stat().st_size > 0 and (out / f"{name}.code.txt").stat().st_size > 0


def test_a_failing_conversion_is_a_row_with_its_reason(monkeypatch, tmp_path, one_thread):
    def broken_trace(*args, **kwargs):
        raise RuntimeError("tracer broke\nsecond line")

    monkeypatch.setattr(torch.jit, "trace", broken_trace)
    monkeypatch.setattr(deploy, "c_compiler", lambda: None)
    wanted = ["eager fp32", "TorchScript traced", "TorchScript scripted", "AOTInductor"]
    rows = deploy.convert_all(resnet18(), deploy.settings_for("cpu", names=wanted), torch.randn(2, 3, 32, 32),
                              tmp_path, "cpu")
    assert rows["TorchScript traced"].status == "failed" and rows["TorchScript traced"].fn is None
    assert rows["TorchScript traced"].reason == "RuntimeError: tracer broke"
    assert rows["AOTInductor"].status == "failed" and "no C++ compiler" in rows["AOTInductor"].reason
    assert rows["eager fp32"].status == rows["TorchScript scripted"].status == "ok"
    assert rows["TorchScript scripted"].fn(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert "fn" not in rows["AOTInductor"].row() and rows["AOTInductor"].row()["status"] == "failed"


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
