import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = Path(__file__).resolve().parent / "tiny.yaml"

os.environ.setdefault("LAB_OFFLINE", "1")  # tests never try to download CIFAR-10

# --fast on a CPU measures its settings once per machine and caches the choice; the tests pre-seed that
# cache (eager channels_last, no compile) so that no test pays for the probe or a compilation. The probe
# itself is tested with injected timings (test_fast.py).
FAST_CHOICE = {"channels_last": True, "amp": "off", "compile": "off"}


def _seed_fast_cache():
    import json
    import tempfile

    from lab.train import fast_cache_key

    cache = Path(tempfile.mkdtemp(prefix="lab-cache-"))
    entries = {fast_cache_key(b, t): {"choice": FAST_CHOICE, "step_s": {}} for b in (8, 16, 32) for t in (1, 2, os.cpu_count())}
    (cache / "fast-choice.json").write_text(json.dumps(entries))
    os.environ["LAB_CACHE"] = str(cache)


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
    from lab.config import Config
    from lab.data import ensure_synthetic

    root = tmp_path_factory.mktemp("data")
    config = Config(data=str(root), dataset="synthetic", synthetic_train=640, synthetic_test=128)
    ensure_synthetic(config, log=lambda msg: None)
    return config


@pytest.fixture
def tiny_config(synthetic_data, tmp_path):
    """A tiny CPU run on the shared synthetic set; checkpoints in this test's folder."""
    return synthetic_data.replace(device="cpu", workers=0, batch_size=16, max_batches=2, epochs=1,
                                  checkpoint=str(tmp_path / "ckpt.pt"))


def report_command(profile, tmp, *extra):
    return [sys.executable, "-m", "lab", "report", "--profile", str(profile), "--results", str(tmp / "results"),
            "--data", str(tmp / "data"), *extra]


def report(profile, tmp, *extra, env=None):
    return subprocess.run(report_command(profile, tmp, *extra), capture_output=True, text=True, timeout=1500,
                          cwd=ROOT, env=env)


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory):
    """One report of every notebook on tiny parameters, shared by the report and browser tests."""
    tmp = tmp_path_factory.mktemp("report")
    done = report(TINY, tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return done, (tmp / "results" / "latest").resolve()
