import json
import os
import pickle

import numpy as np
import pytest
import torch
import torchvision

from lab.core.config import Config
from lab.data.cifar10 import (
    BATCH_DIR,
    CLASSES,
    SYNTHETIC_VERSION,
    DataError,
    SyntheticCIFAR10,
    ensure_synthetic,
    load_dataset,
    make_loader,
    write_synthetic_cifar10,
)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    write_synthetic_cifar10(root, n_train=100, n_test=30, seed=1)
    return root


def test_files_have_the_official_layout_for_both_readers(small_set):
    folder = small_set / BATCH_DIR
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["batches.meta"] + [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    with open(folder / "data_batch_1", "rb") as f:  # the official snippet: Python-2 strings as bytes
        batch = pickle.load(f, encoding="bytes")
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (20, 3072)
    assert all(0 <= label <= 9 for label in batch[b"labels"])
    with open(folder / "batches.meta", "rb") as f:  # torchvision's way
        meta = pickle.load(f, encoding="latin1")
    assert meta["label_names"] == list(CLASSES)


def test_loads_through_torchvision_with_shapes_dtypes_and_labels(small_set):
    train = SyntheticCIFAR10(str(small_set), train=True)
    test = SyntheticCIFAR10(str(small_set), train=False)
    assert train.data.shape == (100, 32, 32, 3) and train.data.dtype == np.uint8
    assert test.data.shape == (30, 32, 32, 3)
    with open(small_set / BATCH_DIR / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    assert train.targets[:20] == raw["labels"]
    # torchvision's row layout: 1024 red, 1024 green, 1024 blue values, row-major 32x32
    assert np.array_equal(train.data[0], raw["data"][0].reshape(3, 32, 32).transpose(1, 2, 0))
    assert train.classes == list(CLASSES)
    # the real class still checks md5s: our files are not passed off as CIFAR-10
    with pytest.raises(RuntimeError):
        torchvision.datasets.CIFAR10(str(small_set), train=True, download=False)


def test_same_transforms_and_loader_path_as_real_data(synthetic_data):
    config = synthetic_data.replace(batch_size=32, workers=0)
    dataset = load_dataset(config, train=True)
    x, y = dataset[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 3  # normalized
    images, labels = next(iter(make_loader(dataset, config, torch.device("cpu"))))
    assert images.shape == (32, 3, 32, 32) and labels.dtype == torch.int64


@pytest.mark.cuda
def test_pin_memory_only_on_cuda(synthetic_data):
    dataset = load_dataset(synthetic_data, train=True)
    assert make_loader(dataset, synthetic_data, torch.device("cuda")).pin_memory is True
    assert make_loader(dataset, synthetic_data, torch.device("cpu")).pin_memory is False


def test_missing_cifar10_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_dataset(Config(data=str(tmp_path / "nothing"), dataset="cifar10"), train=True)
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and "--dataset synthetic" in message and "\n" not in message


def test_corrupt_batch_file_is_named(tmp_path):
    config = Config(data=str(tmp_path), dataset="synthetic", synthetic_train=50, synthetic_test=10)
    load_dataset(config, train=True, log=lambda m: None)
    bad = tmp_path / "synthetic" / BATCH_DIR / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:1000])  # truncated
    with pytest.raises(DataError) as err:
        load_dataset(config, train=True, log=lambda m: None)
    assert "data_batch_3" in str(err.value) and "regenerate" in str(err.value)


def _batch(root, name="data_batch_1"):
    with open(root / BATCH_DIR / name, "rb") as f:
        return pickle.load(f, encoding="bytes")  # the official snippet


def test_version_is_in_every_batch_label_and_the_marker(small_set):
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        assert f"version {SYNTHETIC_VERSION},".encode() in _batch(small_set, name)[b"batch_label"]
    assert json.loads((small_set / "synthetic.json").read_text())["version"] == SYNTHETIC_VERSION == 2


def test_deterministic_for_a_seed(tmp_path, small_set):
    write_synthetic_cifar10(tmp_path / "same", n_train=100, n_test=30, seed=1)
    write_synthetic_cifar10(tmp_path / "other", n_train=100, n_test=30, seed=2)
    for name in ("data_batch_1", "test_batch"):
        assert (tmp_path / "same" / BATCH_DIR / name).read_bytes() == (small_set / BATCH_DIR / name).read_bytes()
        assert not np.array_equal(_batch(tmp_path / "other", name)[b"data"], _batch(small_set, name)[b"data"])


@pytest.fixture(scope="module")
def medium_set(tmp_path_factory):
    """5000 train + 2000 test images: enough for class counts and a nearest-class-mean classifier."""
    root = tmp_path_factory.mktemp("syn_medium")
    write_synthetic_cifar10(root, n_train=5000, n_test=2000, seed=3)
    return SyntheticCIFAR10(str(root), train=True), SyntheticCIFAR10(str(root), train=False)


def test_classes_are_roughly_balanced(medium_set):
    for ds in medium_set:
        counts = np.bincount(ds.targets, minlength=10)
        expected = len(ds.targets) / 10
        assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected * 0.9)), counts  # 5 binomial sigmas


def test_not_separable_by_nearest_class_mean_on_raw_pixels(medium_set):
    """Version 1 (one template per class, small shifts) scored about 95 % here; version 2 scores about
    12 %, chance being 10 %: no mean image stands for a class. The bound leaves a wide margin."""
    train, test = medium_set
    x = train.data.reshape(len(train.data), -1).astype(np.float64)
    y = np.array(train.targets)
    means = np.stack([x[y == c].mean(0) for c in range(10)])
    xt = test.data.reshape(len(test.data), -1).astype(np.float64)
    distance = (means ** 2).sum(1) - 2 * xt @ means.T  # + |xt|^2, the same for every class
    accuracy = (distance.argmin(1) == np.array(test.targets)).mean()
    assert accuracy < 0.3


def _marker_config(tmp_path):
    return Config(data=str(tmp_path), dataset="synthetic", synthetic_train=50, synthetic_test=10)


def test_current_files_are_reused(tmp_path):
    config, said = _marker_config(tmp_path), []
    root = ensure_synthetic(config, log=said.append)
    assert len(said) == 1 and "none there" in said[0]
    before = (root / BATCH_DIR / "data_batch_1").stat().st_mtime_ns
    ensure_synthetic(config, log=said.append)
    assert len(said) == 1 and (root / BATCH_DIR / "data_batch_1").stat().st_mtime_ns == before


@pytest.mark.parametrize("marker", [
    {"n_train": 50, "n_test": 10, "seed": 0, "format": "cifar-10-python"},  # version 1 wrote no version
    {"version": 1, "n_train": 50, "n_test": 10, "seed": 0, "format": "cifar-10-python"},
])
def test_files_of_another_generator_version_are_rewritten(tmp_path, marker):
    config, said = _marker_config(tmp_path), []
    root = ensure_synthetic(config, log=lambda m: None)
    (root / "synthetic.json").write_text(json.dumps(marker))
    old = root / BATCH_DIR / "data_batch_1"
    old.write_bytes(b"stale")  # as if an older generator had written it
    ensure_synthetic(config, log=said.append)
    assert len(said) == 1 and f"version {marker.get('version')} -> {SYNTHETIC_VERSION}" in said[0]
    assert _batch(root)[b"data"].shape == (10, 3072)
    assert json.loads((root / "synthetic.json").read_text())["version"] == SYNTHETIC_VERSION


class WorkerPid(torch.utils.data.Dataset):
    """Each item is the id of the process that loaded it."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.tensor(os.getpid())


def _loading_pids(loader) -> set:
    return {int(pid) for batch in loader for pid in batch}


@pytest.mark.parametrize("persistent", [True, False])
def test_persistent_workers_serve_every_epoch_and_others_restart(persistent):
    config = Config(workers=1, batch_size=2, persistent_workers=persistent)
    loader = make_loader(WorkerPid(), config, torch.device("cpu"))
    first, second = _loading_pids(loader), _loading_pids(loader)  # two epochs of the same DataLoader
    assert os.getpid() not in first | second and len(first) == len(second) == 1
    assert (first == second) is persistent  # persistent: the same worker; else a new one each epoch


def test_prefetch_depth_reaches_the_loader_and_no_workers_ignore_both():
    dataset = WorkerPid()
    deep = make_loader(dataset, Config(workers=1, prefetch_factor=4), torch.device("cpu"))
    assert deep.prefetch_factor == 4 and deep.persistent_workers is False
    none = make_loader(dataset, Config(workers=0, persistent_workers=True, prefetch_factor=4), torch.device("cpu"))
    assert none.persistent_workers is False and none.prefetch_factor is None  # DataLoader would refuse them
    assert len(_loading_pids(none)) == 1
