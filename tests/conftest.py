import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# inductor's kernels, kept between runs outside /tmp (content-addressed: a cache nothing can poison) beside the lab's
# own caches, or where the user points it; read before torch (imported by lab) pins it to /tmp/torchinductor_<user>
INDUCTOR_CACHE = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or str(
    Path(os.environ.get("LAB_CACHE", Path.home() / ".cache" / "resnet-perf-lab")) / "inductor")

from lab import parts  # noqa: E402
from lab.parts import c2_timing, c8_acceleration  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = Path(__file__).resolve().parent / "tiny.yaml"
NOTEBOOK_COUNT = len(parts.IDS) + 1  # every part's notebook and the summary: the runner's "[i/N]"

os.environ.setdefault("LAB_OFFLINE", "1")  # tests never try to download CIFAR-10


def _private_tmp() -> str | None:
    """One temporary folder for the whole run, removed at its end (pytest_unconfigure): pytest's tmp_path, the caches
    below (the reports' 180 MB of data, the C++ build) and whatever the lab's subprocesses put in
    $TMPDIR, so a test run leaves nothing in /tmp. Made by the first process (xdist's controller, or a plain
    pytest); its workers and the processes the tests start inherit it through $TMPDIR. LAB_KEEP_TMP=1 keeps it."""
    if os.environ.get("LAB_TEST_TMP"):
        return None
    folder = tempfile.mkdtemp(prefix="lab-test-")
    os.environ["LAB_TEST_TMP"] = os.environ["TMPDIR"] = folder
    tempfile.tempdir = None  # gettempdir() reads $TMPDIR again
    return folder


_OWN_TMP = _private_tmp()


def pytest_unconfigure(config):
    if _OWN_TMP and not hasattr(config, "workerinput") and not os.environ.get("LAB_KEEP_TMP"):
        shutil.rmtree(_OWN_TMP, ignore_errors=True)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs a pytest worker per core: one thread per worker (and per process it starts), so the
    # workers' torch threads do not outnumber the cores (oversubscribed OpenMP threads spin and crawl)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# --fast on a CPU measures its settings once per machine and caches the choice; the tests pre-seed that
# cache (eager channels_last, no compile) so that no test pays for the probe or a compilation. The probe
# itself is tested with injected timings (test_fast.py).
FAST_CHOICE = {"channels_last": True, "amp": "off", "compile": "off"}


def _seed_fast_cache():
    import json

    from lab.engine.fast import EAGER_ONLY, fast_cache_key

    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # one cache for the run's workers: the C++ program builds once
    cache = Path(tempfile.gettempdir()) / f"lab-cache-{run}" if run else Path(tempfile.mkdtemp(prefix="lab-cache-"))
    cache.mkdir(parents=True, exist_ok=True)
    entries = {fast_cache_key(b, t, load) + stage:
               {"choice": FAST_CHOICE, "step_s": {}, "reason": "seeded by the tests"}
               for b in (8, 16, 32) for t in (1, 2, os.cpu_count()) for load in ("idle", "busy")
               for stage in ("", EAGER_ONLY)}
    seeded = cache / f".fast-choice.{os.getpid()}.tmp"
    seeded.write_text(json.dumps(entries))
    seeded.replace(cache / "fast-choice.json")  # workers write the same file: each whole
    os.environ["LAB_CACHE"] = str(cache)
    # inductor's caches (FX graphs, the C++ kernels AOTInductor and torch.compile build) shared by the run's
    # workers, the processes they start and the next run: a graph compiled once is read, not compiled again
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = INDUCTOR_CACHE


_seed_fast_cache()


@pytest.fixture
def one_thread():
    """One torch thread: small tensor ops slow down sharply with 2 threads while another process is busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """A small synthetic CIFAR-format data set shared by the tests: 640 train + 128 test images."""
    from lab.core.config import Config
    from lab.data.cifar10 import ensure_synthetic

    root = tmp_path_factory.mktemp("data")
    config = Config(data=str(root), dataset="synthetic", synthetic_train=640, synthetic_test=128)
    ensure_synthetic(config, log=lambda msg: None)
    return config


@pytest.fixture
def tiny_config(synthetic_data, tmp_path):
    """A tiny CPU run on the shared synthetic set; checkpoints in this test's folder."""
    return synthetic_data.replace(device="cpu", workers=0, batch_size=16, max_batches=2, epochs=1,
                                  checkpoint=str(tmp_path / "ckpt.pt"))


def shared_data() -> Path:
    """The full-size synthetic set (60,000 images, ~17 s to write) the reports under test read: written once per
    test run, under a lock, for every worker (each report writing its own cost a worker that much per report)."""
    import fcntl

    from lab.core.config import Config
    from lab.data.cifar10 import ensure_synthetic

    folder = Path(os.environ["LAB_CACHE"]) / "report-data"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_synthetic(Config(dataset="synthetic", data=str(folder)), log=lambda msg: None)
    return folder


def report_command(profile, tmp, *extra):
    return [sys.executable, "-m", "lab", "report", "--profile", str(profile), "--results", str(tmp / "results"),
            "--data", str(shared_data()), *extra]


def report(profile, tmp, *extra, env=None):
    return subprocess.run(report_command(profile, tmp, *extra), capture_output=True, text=True, timeout=1500,
                          cwd=ROOT, env=env)


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory):
    """The one end-to-end report, shared by tests/test_report.py's tests: every notebook on tiny parameters,
    killed with SIGKILL while C8 writes its records, then the same command again, which keeps the finished
    notebooks and runs C8 to C11 and the summary. Returns (runs, folder): runs.killed is the first run's stderr,
    runs.left what the kill left (report.json, the kept notebooks' mtimes, C2's records), runs.resumed the second
    run (a CompletedProcess)."""
    import json
    import signal
    import time
    from types import SimpleNamespace

    tmp = tmp_path_factory.mktemp("report")
    proc = subprocess.Popen(report_command(TINY, tmp), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    killed = []
    for line in proc.stderr:
        killed.append(line)
        if f"[8/{NOTEBOOK_COUNT}] {c8_acceleration.ID}" in line:
            break
    out = (tmp / "results" / "latest").resolve()
    partial, deadline = out / c8_acceleration.ID / "records.jsonl", time.time() + 600
    while not partial.exists() and time.time() < deadline and proc.poll() is None:  # some of C8's records
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    killed.append(proc.stderr.read())
    proc.wait(timeout=60)
    time.sleep(3)  # the orphaned kernel notices its parent is gone within a second
    meta = json.loads((out / "report.json").read_text())
    left = {"meta": meta, "partial": partial.exists(), "html": (out / "report.html").exists(),
            "mtimes": {name: (out / f"{name}.ipynb").stat().st_mtime_ns for name in meta["done"]},
            "c2_records": (out / c2_timing.ID / "records.jsonl").read_text()}
    resumed = report(TINY, tmp)  # exactly the same command
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return SimpleNamespace(killed="".join(killed), left=left, resumed=resumed), out


def pytest_collection_modifyitems(items):
    """test_report.py first: under `pytest -n` it is the longest file (a worker runs a file whole), so it
    starts at once and the other worker takes every other file meanwhile."""
    items.sort(key=lambda item: item.path.name != "test_report.py")


def model_with_statistics():
    """ResNet-18 in eval mode, seeded, with batch-norm statistics and affine weights other than the initial ones,
    so that folding them (freezing) matters and a loader that ignored them would show."""
    import torch

    from lab.engine.model import resnet18

    torch.manual_seed(0)
    model = resnet18().eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model
