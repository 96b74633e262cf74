"""The extra credit: the deployed ResNet-18 loaded from C++ (cpp/deploy_bench.cpp, lab.engine.cpp). The program
builds once per session (into this session's LAB_CACHE, conftest.py), and its logits match Python's for a
TorchScript file and an AOTInductor package; a missing compiler or a failed build is a reason, not an
exception. Nothing here asserts speed."""
import os
import shutil
import struct
import warnings

import pytest
import torch
from conftest import model_with_statistics

from lab.engine import cpp
from lab.engine.fast import c_compiler

CALLS = 5


@pytest.fixture(scope="session")
def binary():
    built = cpp.build()
    assert built.reason is None and built.binary is not None, built.reason  # g++ is on these machines: never skip
    assert built.binary.is_file() and built.seconds > 0 and built.reason is None  # built here, or by another worker
    return built.binary


@pytest.fixture(scope="session")
def model():
    """The lab's ResNet-18 in eval mode, seeded, with running statistics other than the initial 0 and 1 (so
    that a loader that ignored them would show), its input and its logits in Python."""
    net = model_with_statistics()
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        return net, x, net(x)


@pytest.fixture(scope="session")
def torchscript_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("deploy") / "resnet18.ts"
    with warnings.catch_warnings():  # torch.jit.script and save are deprecated (FutureWarning) and still work
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model[0]), str(path))
    return path


@pytest.fixture(scope="session")
def aoti_package(model, tmp_path_factory):
    """torch.export at batch 1, then AOTInductor (~20 s on 2 cores)."""
    net, x, _ = model
    path = tmp_path_factory.mktemp("deploy") / "resnet18.pt2"
    exported = torch.export.export(net, (x,))
    torch._inductor.aoti_compile_and_package(exported, package_path=str(path))
    return path


@pytest.mark.parametrize("kind", cpp.KINDS)
def test_the_cpp_logits_match_pythons(kind, binary, model, request):
    artifact = request.getfixturevalue({"torchscript": "torchscript_file", "aoti": "aoti_package"}[kind])
    _, x, expected = model
    seconds, logits = cpp.run(binary, kind, artifact, x, threads=1, warmup=2, calls=CALLS)
    assert len(seconds) == CALLS and all(s > 0 for s in seconds)
    assert logits.shape == expected.shape == (1, 10)
    assert (logits - expected).abs().max().item() <= 1e-4


def test_a_second_build_is_the_cached_binary(binary):
    again = cpp.build()
    assert again.binary == binary and again.cached and again.reason is None and again.seconds > 0
    assert cpp.build_dir(cpp.build_flags(), again.command[0]).name.startswith(torch.__version__)


def test_a_missing_compiler_is_a_reason_not_an_exception(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    built = cpp.build()
    assert built.binary is None and "no C++ compiler" in built.reason


def test_a_failed_build_is_a_one_line_reason(tmp_path):
    source = tmp_path / "broken.cpp"
    source.write_text("int main( {\n")
    built = cpp.build(source=source)
    assert built.binary is None and "failed to build broken.cpp" in built.reason and "\n" not in built.reason
    assert not any(cpp.build_dir(cpp.build_flags(), c_compiler(), source).glob("*deploy_bench*"))


@pytest.mark.parametrize("how", ["read-only", "under a file"])
def test_an_unwritable_cache_is_a_reason_and_c10_says_not_run(how, tmp_path, monkeypatch):
    """The build folder cannot be made (a read-only $LAB_CACHE, or a file where a folder goes): C10.5 says why in
    one line, nothing raises (before: mkdir's PermissionError stopped the report at C10)."""
    from lab.core import results
    from lab.parts import c10_deploy

    cache = tmp_path / "cache"
    if how == "read-only":
        cache.mkdir()
        cache.chmod(0o555)
        if os.access(cache, os.W_OK):
            pytest.skip("this user writes into read-only folders (root)")
    else:
        cache.write_text("a file, not a folder")
    monkeypatch.setenv("LAB_CACHE", str(cache))
    built = cpp.build()
    assert built.binary is None and built.reason.startswith(f"cannot write the build folder {cache}/cpp/")
    assert "\n" not in built.reason and built.reason.endswith("(set LAB_CACHE to a writable folder)")
    cpp.measure(results.Rows(tmp_path / "out", c10_deploy.ID, device="cpu").start(), [], torch.zeros(1), 1, 1,
                note=lambda line: None)
    finding = c10_deploy.cpp_finding(results.read(tmp_path / "out", part=c10_deploy.ID), {})
    assert finding.answer == f"not run: {built.reason}"


@pytest.mark.parametrize("threads", ["0", "1025", "4294967297", "4x", "-1", ""])
def test_a_thread_count_out_of_range_is_refused_in_one_line(binary, threads, tmp_path):
    """THREADS is parsed whole and bounded (1 to 1024) before the int cast set_num_threads takes."""
    import subprocess

    done = subprocess.run([str(binary), "torchscript", "m.ts", "x.bin", threads, "0", "1", str(tmp_path / "p")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr == (f"deploy_bench: bad arguments: THREADS must be an integer from 1 "
                                                    f"to 1024, not '{threads}'\n")


def test_a_failed_run_is_a_clear_error(binary, model, tmp_path):
    with pytest.raises(cpp.CppError, match=r"deploy_bench torchscript failed \(exit 1\): deploy_bench: .*"):
        cpp.run(binary, "torchscript", tmp_path / "missing.ts", model[1], calls=1)
    with pytest.raises(ValueError, match="kind must be"):
        cpp.run(binary, "onnx", tmp_path / "missing.onnx", model[1])


def test_the_exchange_format_round_trips_and_rejects_other_files(tmp_path):
    x = torch.randn(2, 3, 4)
    cpp.write_tensor(tmp_path / "x.bin", x)
    data = (tmp_path / "x.bin").read_bytes()
    assert data[:8] == b"LABF32\x00\x01" and struct.unpack_from("<4q", data, 8) == (3, 2, 3, 4)
    assert torch.equal(cpp.read_tensor(tmp_path / "x.bin"), x)
    (tmp_path / "short.bin").write_bytes(data[:-4])
    with pytest.raises(cpp.CppError, match=r"bytes of values for a tensor of shape \[2, 3, 4\]"):
        cpp.read_tensor(tmp_path / "short.bin")
    (tmp_path / "other.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(cpp.CppError, match="not a tensor file"):
        cpp.read_tensor(tmp_path / "other.bin")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_cuda_path_matches_pythons(binary, model, torchscript_file):
    _, x, expected = model
    seconds, logits = cpp.run(binary, "torchscript", torchscript_file, x, warmup=2, calls=CALLS, device="cuda")
    assert len(seconds) == CALLS and all(s > 0 for s in seconds)
    # cuDNN's convolutions in TF32 (its fp32 precision is tf32 by default, in C++ as in Python): a looser bound
    assert (logits - expected).abs().max().item() <= 1e-2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(binary, model, torchscript_file):
    with pytest.raises(cpp.CppError, match="failed \\(exit 1\\): deploy_bench: cuda asked for but not available"):
        cpp.run(binary, "torchscript", torchscript_file, model[1], calls=1, device="cuda")
