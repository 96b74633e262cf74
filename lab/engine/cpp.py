"""The extra credit: cpp/deploy_bench.cpp loads the deployed ResNet-18 (TorchScript or an AOTInductor .pt2) with
libtorch alone and times batch-1 calls. This module builds it against the installed torch wheel (g++ directly:
the wheel's CMake config needs a CUDA toolkit), caches the binary, runs it and reads its output (docs/cpp.md):
each timed call's nanoseconds, one per line, in <prefix>.ns, and the first call's logits in <prefix>.logits.
Tensors both ways: b"LABF32\\0\\1", an int64 ndim, ndim int64 sizes, float32 values; row-major, little-endian."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core import files
from ..core.errors import LabError
from . import deploy
from .fast import c_compiler
from .interleave import abba

SOURCE = Path(__file__).resolve().parents[2] / "cpp" / "deploy_bench.cpp"
MAGIC = b"LABF32\x00\x01"
KINDS = ("torchscript", "aoti")
DEVICES = ("cpu", "cuda")
BUILD_TIMEOUT_S = 1200  # ~25 s on an idle core; the AOTInductor loader's headers are most of it


class CppError(LabError):
    """deploy_bench could not run or wrote output that cannot be read: one line saying which."""


@dataclass(frozen=True)
class Flags:
    """The g++ flags for the installed torch wheel: `compile` and `link`."""

    compile: list[str]
    link: list[str]

    def command(self, compiler: str, source: Path, output: Path) -> list[str]:
        return [compiler, *self.compile, str(source), "-o", str(output), *self.link]


def build_flags() -> Flags:
    """torch's include folders, the C++11 ABI torch was built with, torch, torch_cpu and c10, and torch_cuda and
    c10_cuda where the wheel has them. --no-as-needed keeps libraries the binary does not call: libtorch.so, which
    an AOTInductor package's model .so needs when the loader dlopens it (the rpath does not reach a dlopened
    library's dependencies), and the CUDA libraries, which register the CUDA backend when loaded."""
    root = Path(torch.__file__).resolve().parent
    include, lib = root / "include", root / "lib"
    libraries = ["torch", "torch_cpu", "c10"] + [name for name in ("torch_cuda", "c10_cuda")
                                                 if (lib / f"lib{name}.so").exists()]
    return Flags(
        compile=["-std=c++20", "-O2", "-DNDEBUG", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}",
                 "-pthread", "-isystem", str(include), "-isystem", str(include / "torch" / "csrc" / "api" / "include")],
        link=[f"-L{lib}", "-Wl,--no-as-needed", *(f"-l{name}" for name in libraries), "-Wl,--as-needed",
              f"-Wl,-rpath,{lib}"])


@dataclass(frozen=True)
class Build:
    """What build() made: `binary`, or None and the `reason` in one line; the compilation's `seconds`."""

    binary: Path | None
    seconds: float | None
    reason: str | None
    cached: bool = False
    command: tuple[str, ...] = ()


def build_dir(flags: Flags, compiler: str, source: Path = SOURCE) -> Path:
    """cache_dir()/cpp/<torch version>-<sha256[:12] of the source, the compiler and the flags>."""
    digest = hashlib.sha256(source.read_bytes())
    digest.update("\0".join(flags.command(compiler, Path("SOURCE"), Path("OUTPUT"))).encode())
    return files.cache_dir() / "cpp" / f"{torch.__version__}-{digest.hexdigest()[:12]}"


def built(source: Path = SOURCE) -> bool:
    """Whether the program is already built for this torch, source and compiler (a plan's question; no build)."""
    compiler = c_compiler()
    return bool(compiler) and (build_dir(build_flags(), compiler, source) / "deploy_bench").is_file()


def build(force: bool = False, source: Path = SOURCE, timeout: float = BUILD_TIMEOUT_S) -> Build:
    """Compile deploy_bench once per torch, source and flags (cached; `force` compiles again). Never raises for a
    missing compiler, source or a failed compilation: the Build's `reason` says which."""
    compiler = c_compiler()
    if compiler is None:
        return Build(None, None, "no C++ compiler ($CXX, c++, g++ or clang++) on PATH")
    if not source.is_file():
        return Build(None, None, f"no C++ source at {source}")
    flags = build_flags()
    folder = build_dir(flags, compiler, source)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / ".lock", "w")
    except OSError as exc:  # a read-only cache: the C++ rows say so, the report goes on
        if not force and (folder / "deploy_bench").is_file():  # built before the folder became read-only
            return _build(compiler, flags, folder, source, False, timeout)
        return Build(None, None, f"cannot write the build folder {folder}: {exc.strerror or exc} (set LAB_CACHE "
                                 "to a writable folder)")
    with lock:  # one build at a time; a second process waits, then finds it cached
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(compiler, flags, folder, source, force, timeout)


def _build(compiler: str, flags: Flags, folder: Path, source: Path, force: bool, timeout: float) -> Build:
    binary, meta, name = folder / "deploy_bench", folder / "build.json", Path(compiler).name
    command = tuple(flags.command(compiler, source, binary))
    if binary.is_file() and os.access(binary, os.X_OK) and not force:
        return Build(binary, (files.read_json(meta) or {}).get("seconds"), None, cached=True, command=command)
    tmp = folder / f".deploy_bench.{os.getpid()}.tmp"  # renamed into place: a concurrent build never sees half
    start = time.perf_counter()
    try:
        done = subprocess.run(flags.command(compiler, source, tmp), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        return Build(None, None, f"{name} took over {timeout:.0f} s to build {source.name}")
    except OSError as exc:
        return Build(None, None, f"{name} could not start: {exc.strerror or exc}")
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        first_error = next((line for line in lines if "error" in line), lines[-1]).strip()
        return Build(None, seconds,
                     f"{name} failed to build {source.name} (exit {done.returncode}): {first_error[:300]}")
    os.replace(tmp, binary)
    with contextlib.suppress(OSError):  # the build's time is a note; the binary is what counts
        files.save_json(meta, {"seconds": round(seconds, 2), "command": list(command), "torch": torch.__version__})
    return Build(binary, seconds, None, command=command)


def write_tensor(path, x: torch.Tensor) -> None:
    """`x` as float32 in the exchange format."""
    x = x.detach().to("cpu", torch.float32).contiguous()
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack(f"<q{x.dim()}q", x.dim(), *x.shape))
        f.write(x.numpy().astype("<f4", copy=False).tobytes())


def read_tensor(path) -> torch.Tensor:
    """A tensor in the exchange format; CppError where the file is not one."""
    data = Path(path).read_bytes()
    if len(data) < 16 or data[:8] != MAGIC:
        raise CppError(f"{path} is not a tensor file (no LABF32 header)")
    (ndim,) = struct.unpack_from("<q", data, 8)
    if not 0 <= ndim <= 8 or len(data) < 16 + 8 * ndim:
        raise CppError(f"{path} has a bad header (ndim {ndim})")
    shape = struct.unpack_from(f"<{ndim}q", data, 16)
    values = data[16 + 8 * ndim:]
    if min(shape, default=0) < 0 or len(values) != 4 * math.prod(shape):
        raise CppError(f"{path}: {len(values)} bytes of values for a tensor of shape {list(shape)}")
    return torch.frombuffer(bytearray(values), dtype=torch.float32).reshape(shape)


def run(binary, kind: str, artifact, x: torch.Tensor, threads: int = 1, warmup: int = 10, calls: int = 100,
        device: str = "cpu", timeout: float = 600) -> tuple[list[float], torch.Tensor]:
    """Each of `calls` timed calls' seconds (after `warmup`) of deploy_bench on `artifact` with input `x`, and the
    first call's output; CppError where it fails or its output cannot be read."""
    if kind not in KINDS or device not in DEVICES:
        raise ValueError(f"kind must be one of {KINDS} and device one of {DEVICES}, not {kind!r}, {device!r}")
    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as tmp:
        write_tensor(Path(tmp) / "input.bin", x)
        prefix = Path(tmp) / "out"
        argv = [str(binary), kind, str(artifact), str(Path(tmp) / "input.bin"), str(threads), str(warmup),
                str(calls), str(prefix), device]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CppError(f"deploy_bench {kind} took over {timeout:.0f} s ({warmup} + {calls} calls)") from None
        except OSError as exc:
            raise CppError(f"cannot run {binary}: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"(no message; stdout: {done.stdout.strip()[-200:]!r})"]
            raise CppError(f"deploy_bench {kind} failed (exit {done.returncode}): {lines[-1].strip()}")
        try:
            text = prefix.with_suffix(".ns").read_text()
            logits = read_tensor(prefix.with_suffix(".logits"))
        except OSError as exc:
            raise CppError(f"deploy_bench {kind} exited 0 but left no output: {exc}") from exc
    try:
        ns = [int(line) for line in text.split()]
    except ValueError:
        raise CppError(f"deploy_bench {kind} wrote call times that are not integers: {text[:80]!r}") from None
    if len(ns) != calls or min(ns, default=0) <= 0:
        raise CppError(f"deploy_bench {kind} wrote {len(ns)} call times (expected {calls}, each > 0 ns)")
    return [n / 1e9 for n in ns], logits


SCRIPTED = "TorchScript scripted"  # with the fastest AOTInductor package (chosen), the files C++ loads


def chosen(timed: dict) -> list:
    """The deploy settings whose files C++ loads: TorchScript scripted, and the AOTInductor package fastest at batch 1
    in Python (Converted.latency_s) where one was made and timed."""
    packages = [c for c in timed.values() if kind_of(c) == "aoti" and c.latency_s is not None]
    return [c for n, c in timed.items() if n == SCRIPTED] + ([min(packages, key=lambda c: c.latency_s)] if packages
                                                             else [])


def kind_of(converted) -> str | None:
    """What deploy_bench's KIND calls a converted setting's file: a .pt2 is a package, a .pt a TorchScript file."""
    return {".pt2": "aoti", ".pt": "torchscript"}.get(Path(converted.file or "").suffix)


def blocks(latency_blocks: int) -> int:
    """C++'s blocks for a latency measurement of `latency_blocks`: 2 to 6 (each starts the program: about a second)."""
    return max(2, min(latency_blocks, 6))


def planned_calls(chosen: list, latency_blocks: int, calls: int) -> int:
    """The batch-1 calls `measure` makes for the files C++ loads (at most 2 per device, `chosen`), of (device,
    setting) pairs: in blocks(latency_blocks) blocks, each C++ then Python, 5 warm-ups + `calls` each."""
    files = len({d for d, s in chosen if s.name == SCRIPTED}) + len({d for d, s in chosen if s.how == "aoti"})
    return files * blocks(latency_blocks) * 2 * (calls + 5)


def against_python(binary, converted: deploy.Converted, x: torch.Tensor, device: str, calls: int, blocks: int,
                   threads: int, warmup: int = 5) -> dict:
    """One saved artifact timed from C++ and from Python in `blocks` ABBA blocks (a C++ block is one run of the
    program): per side each block's median and the percentiles of all calls, and whether the logits agree."""
    fn = converted.fn
    with torch.inference_mode():
        python_logits = fn(x.to(device)).float().cpu()
    times = {"C++": [], "Python": []}
    for order in abba(("C++", "Python"), blocks):
        for side in order:
            if side == "C++":
                seconds, logits = run(binary, kind_of(converted), converted.file, x, threads=threads,
                                      warmup=warmup, calls=calls, device=device)
            else:
                deploy.time_calls(fn, x.to(device), warmup, device)
                seconds = deploy.time_calls(fn, x.to(device), calls, device)
            times[side].append(seconds)
    within, tolerance = deploy.within_tolerance(python_logits, logits.float(), converted.precision)
    sides = {side: {"block_medians": [statistics.median(t) for t in ts],
                    **deploy.percentiles([v for t in ts for v in t])} for side, ts in times.items()}
    return {"sides": sides, "within_tolerance": within, "tolerance": tolerance,
            "worst_of_bound": deploy.worst_of_bound(python_logits, logits.float(), converted.precision)}


def measure(rows, converted: list, x: torch.Tensor, calls: int, blocks: int, note=print) -> None:
    """As rows: the build (or why it failed), and per artifact (fields setting, artifact, precision) its logits'
    agreement and each side's latency (field side) at Python's thread count, or why it could not run."""
    note(f"{rows.defaults['device']}: the same files from C++")
    built = build()
    if built.binary is None:
        rows.add("cpp_build_reason", text=built.reason)
        return
    rows.extend([rows.row("cpp_build_s", built.seconds, "s"), rows.row("cpp_build_cached", built.cached, "bool"),
                 rows.row("cpp_binary", text=str(built.binary))])
    threads = torch.get_num_threads()
    for c in converted:
        one = rows.scoped(setting=c.name, artifact=Path(c.file).name, precision=c.precision)
        try:
            timed = against_python(built.binary, c, x, rows.defaults["device"], calls, blocks, threads)
        except LabError as error:  # the program failed or wrote what cannot be read: a row with its reason
            one.add("reason", text=str(error))
            continue
        one.extend([one.row("within_tolerance", timed["within_tolerance"], "bool"),
                    one.row("worst_of_bound", timed["worst_of_bound"], "ratio"),
                    one.row("tolerance", text=timed["tolerance"])]
                   + [r for side, s in timed["sides"].items()
                      for r in deploy.latency_rows(one, s, side=side, threads=threads)])


def main(argv=None) -> int:
    """python -m lab.engine.cpp [--force]: build (or find) deploy_bench and print its path."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lab.engine.cpp", description=main.__doc__)
    parser.add_argument("--force", action="store_true", help="compile again even where a binary is cached")
    parser.add_argument("--command", action="store_true", help="print the compiler's command line too")
    args = parser.parse_args(argv)
    result = build(force=args.force)
    if result.binary is None:
        print(f"error: {result.reason}", file=sys.stderr)
        return 1
    took = f"{result.seconds:.1f} s" if result.seconds is not None else "an unknown time"
    print(f"cached (built in {took})" if result.cached else f"built in {took}", file=sys.stderr)
    if args.command:
        print(" ".join(result.command), file=sys.stderr)
    print(result.binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
