"""C11 on CUDA, kernel by kernel: a Chrome trace in the profiler's format, written here with known kernels, shapes
and times, read as lab.engine.kernels reads a GPU's (no GPU needed: the trace is data)."""
import json

import pytest

from lab.engine import kernels, roofline
from lab.parts import c11_limits, display

pytestmark = pytest.mark.cuda

PEAKS = {"fp32": 50.0, "tf32": 400.0, "bf16": 800.0, "copy_GBs": 3000.0, "triad_GBs": 3500.0}
M, K, N = 256, 512, 1024


def trace(idle_us: int = 20) -> dict:
    """Two profiled steps: a matrix product (20 µs), a ReLU (10 µs), a convolution_backward (that
    profile_analysis cannot count, 10 µs), a copy (10 µs); `idle_us` between the steps' kernels."""
    events = []

    def op(name, ts, ext, dims, types, concrete):
        events.append({"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": 5,
                       "args": {"External id": ext, "Input Dims": dims, "Input type": types,
                                "Concrete Inputs": concrete}})

    def kernel(name, ts, dur, ext, corr):
        events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1,
                       "ts": ts - 8, "dur": 3, "args": {"correlation": corr, "External id": ext}})
        events.append({"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": 7, "ts": ts, "dur": dur,
                       "args": {"correlation": corr, "External id": ext, "device": 0, "stream": 7}})

    t = 1000
    for step in range(2):
        ext = 10 * step
        op("aten::mm", t, ext + 1, [[M, K], [K, N]], ["float", "float"], ["", ""])
        kernel("void sm90_xmma_gemm_f32f32_tf32f32<128, 64>(Params)", t + 10, 20, ext + 1, ext + 101)
        op("aten::relu", t + 30, ext + 2, [[M, N]], ["float"], [""])
        kernel("void at::native::vectorized_elementwise_kernel<4, at::native::relu>(int, float*)", t + 30, 10,
               ext + 2, ext + 102)
        op("aten::convolution_backward", t + 40, ext + 3,
           [[8, 16, 8, 8], [8, 16, 8, 8], [16, 16, 3, 3], [], [], [], [], [], [], [], []],
           ["float", "float", "float", "", "", "", "", "", "", "", ""],
           ["", "", "", "[16]", "[1, 1]", "[1, 1]", "[1, 1]", "False", "[0, 0]", "1", "[True, True, False]"])
        kernel("void cudnn::wgrad_alg0_engine<float, 128>(float*)", t + 40, 10, ext + 3, ext + 103)
        events.append({"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoD (Device -> Device)", "pid": 0,
                       "tid": 7, "ts": t + 50, "dur": 10, "args": {"device": 0, "stream": 7}})
        t += 50 + 10 + idle_us
    return {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "NVIDIA H200"}],
            "distributedInfo": {"rank": 0}, "traceEvents": events}


def test_kernel_names_lose_their_templates_and_parameters():
    assert kernels.kernel_name("void at::native::vectorized_elementwise_kernel<4, at::native::(anon)::f<float>>"
                               "(int, float*)") == "at::native::vectorized_elementwise_kernel"
    assert kernels.kernel_name("sm90_xmma_fprop_f32") == "sm90_xmma_fprop_f32"


def test_each_kernel_gets_its_operators_flops_against_the_measured_peak():
    rows = {r["kernel"]: r for r in kernels.kernel_table(trace(), PEAKS, "tf32", steps=2)}
    gemm = rows["sm90_xmma_gemm_f32f32_tf32f32"]
    flops = 2 * M * K * N
    assert gemm["operator"] == "aten::mm" and gemm["calls"] == 1 and gemm["flops"] == flops
    assert gemm["seconds"] == pytest.approx(20e-6)
    assert gemm["tflops"] == pytest.approx(flops / 20e-6 / 1e12)
    assert gemm["precision"] == "tf32"  # fp32 operands in a step whose fp32 runs as TF32
    assert gemm["share_of_peak"] == pytest.approx(flops / 20e-6 / 1e12 / PEAKS["tf32"])
    assert gemm["share_of_gpu_time"] == pytest.approx(20 / 40)  # kernels only: the copy is not a kernel
    relu = rows["at::native::vectorized_elementwise_kernel"]
    assert relu["flops"] == 0 and relu["tflops"] is None and relu["share_of_peak"] is None
    wgrad = rows["cudnn::wgrad_alg0_engine"]  # profile_analysis raises on it: listed with its time, uncounted
    assert wgrad["operator"] == "aten::convolution_backward" and wgrad["tflops"] is None
    assert wgrad["seconds"] == pytest.approx(10e-6)
    assert list(rows) == [r["kernel"] for r in sorted(rows.values(), key=lambda r: -r["seconds"])]


def test_a_rate_above_the_peak_is_not_a_share():
    rows = kernels.kernel_table(trace(), {**PEAKS, "tf32": 1.0}, "tf32", steps=2)
    assert rows[0]["tflops"] > 1.0 and rows[0]["share_of_peak"] is None


def test_bf16_operands_compute_in_bf16():
    t = trace()
    for e in t["traceEvents"]:
        if e["name"] == "aten::mm":
            e["args"]["Input type"] = ["c10::BFloat16", "c10::BFloat16"]
    gemm = kernels.kernel_table(t, PEAKS, "bf16", steps=2)[0]
    assert gemm["precision"] == "bf16" and gemm["share_of_peak"] == pytest.approx(gemm["tflops"] / 800.0)


@pytest.mark.parametrize("idle_us", [20, 200])
def test_holistic_trace_analysis_splits_the_gpus_time(tmp_path, idle_us):
    pytest.importorskip("hta")
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(trace(idle_us)))
    b = kernels.time_breakdown(path)
    # the window runs from the first kernel to the last copy: 2 × 50 µs of work, one gap between the steps
    window = 100 + 10 + idle_us
    assert b["compute"] == pytest.approx(80e-6) and b["non_compute"] == pytest.approx(20e-6)
    assert b["idle_share"] == pytest.approx((window - 100) / window, abs=0.01)
    assert b["launches"] == 6 and b["launch_cpu_us"] == pytest.approx(3)


def test_the_section_says_launch_bound_only_when_the_gpu_mostly_waits(tmp_path):
    pytest.importorskip("hta")
    sentences = {}
    for idle_us in (20, 200):
        path = tmp_path / f"trace-{idle_us}.json"
        path.write_text(json.dumps(trace(idle_us)))
        analysis = kernels.analyse(path, PEAKS, "tf32", steps=2, step_flops=4 * M * K * N)
        assert analysis["counted_share"] == pytest.approx(0.5)
        sentences[idle_us] = c11_limits.kernels_sentence(analysis, "tf32", 4 * M * K * N)
        frame = c11_limits.kernels_frame(analysis)
        assert frame.loc["sm90_xmma_gemm_f32f32_tf32f32", "of_peak"].endswith("of tf32")
        assert frame.loc["cudnn::wgrad_alg0_engine", "tflops"] == "—"
    assert "launch-bound" not in sentences[20] and "launch-bound" in sentences[200]
    assert "50%" in sentences[20]  # the counted share of the step's FLOPs


def test_c11_on_cuda_writes_its_trace_and_reads_it_kernel_by_kernel(tmp_path, monkeypatch):
    """C11's measure on a (faked) CUDA device: the profile's trace lands in its folder and its kernels and
    breakdown among its rows, read back as kernels.analyse gave them; the findings row says how long the GPU sat
    idle."""
    pytest.importorskip("hta")
    from lab.core.config import Config
    from lab.parts.base import Report

    def fake_layer_points(batch, device, steps, amp, trace=None):
        trace.write_text(json.dumps(globals()["trace"](200)))
        return {"layers": [], "no_flop": {}, "flops": 0, "layer_s": 0.0, "no_flop_s": 0.0, "step_s": 0.01,
                "unattributed_s": 0.01, "device": "cuda", "machine": "a GPU", "batch": batch, "steps": steps,
                "amp": amp, "precision": "tf32" if amp == "off" else amp, "threads": 2}

    monkeypatch.setattr(c11_limits, "device_type", lambda device: "cuda")
    monkeypatch.setattr(c11_limits, "report_peaks", lambda results_dir, device: PEAKS)
    monkeypatch.setattr(c11_limits.roofline, "layer_points", fake_layer_points)
    out = tmp_path / c11_limits.ID
    out.mkdir()
    c11_limits.measure(Config(device="cpu", batch_size=4), {"profile_steps": 2}, out, Report(tmp_path))
    result = c11_limits.read(tmp_path)
    assert set(result["profiles"]) == {"tf32", "bf16"} and (out / "trace-off.json").exists()
    analysis = kernels.analyse(out / "trace-off.json", PEAKS, "tf32", 2, result["flops"]["train"]["total"])
    assert result["profiles"]["tf32"]["kernels"] == analysis  # JSON keeps a float exactly
    assert c11_limits.kernels_sentence(result["profiles"]["tf32"]["kernels"], "tf32", 1e9) == \
        c11_limits.kernels_sentence(analysis, "tf32", 1e9)
    finding = c11_limits.findings([], tmp_path)[0]
    assert isinstance(finding, display.Finding) and "GPU idle" in finding.answer
    assert roofline.binding_roof(result["profiles"]["tf32"], PEAKS)[0] == "launch/overhead-bound"
