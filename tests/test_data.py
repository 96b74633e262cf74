import pickle

import numpy as np
import pytest
import torch
import torchvision

from lab.config import Config
from lab.data import (BATCH_DIR, CLASSES, DataError, SyntheticCIFAR10, load_dataset, make_loader,
                      write_synthetic_cifar10)


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


def test_classes_differ_so_the_set_is_learnable(small_set):
    ds = SyntheticCIFAR10(str(small_set), train=True)
    targets = np.array(ds.targets)
    means = [ds.data[targets == c].astype(float).mean(0) for c in range(10) if (targets == c).sum() >= 3]
    spread = np.mean([np.abs(a - b).mean() for a in means for b in means])
    assert spread > 10  # class means differ by more than 10 grey levels on average


def test_same_transforms_and_loader_path_as_real_data(synthetic_data):
    config = synthetic_data.replace(batch_size=32, workers=0)
    dataset = load_dataset(config, train=True)
    x, y = dataset[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 3  # normalized
    images, labels = next(iter(make_loader(dataset, config, torch.device("cpu"))))
    assert images.shape == (32, 3, 32, 32) and labels.dtype == torch.int64


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
