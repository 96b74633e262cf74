"""CIFAR-10 the lab's way: transforms, the real data set through torchvision, a synthetic data set in
the very same file format (for machines that cannot download CIFAR-10), and DataLoader construction."""
from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms as T

from .config import Config, LabError
from .results import atomic_write

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCH_DIR = "cifar-10-batches-py"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class DataError(LabError):
    """Missing or unreadable data."""


def train_transform():
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(MEAN, STD)])


def test_transform():
    return T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])


# --- synthetic CIFAR-format files -----------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Pickles str and bytes as Python 2 strings (BINSTRING), as the official CIFAR-10 files do, so that
    both torchvision (encoding='latin1') and the official snippet (encoding='bytes') can read them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def _dump_py2(obj, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def synthetic_images(labels: np.ndarray, rng: np.random.Generator, templates: np.ndarray) -> np.ndarray:
    """Class-dependent images: the class template, shifted by up to 4 pixels, with a random colour cast,
    contrast and Gaussian noise. Learnable, but not in one step, so optimizers can be told apart."""
    n = len(labels)
    shifts = rng.integers(-4, 5, size=(n, 2))
    images = np.empty((n, 3, 32, 32), dtype=np.float32)
    for i, (label, (dy, dx)) in enumerate(zip(labels, shifts)):
        images[i] = np.roll(templates[label], (dy, dx), axis=(1, 2))
    images *= rng.uniform(0.5, 1.2, size=(n, 1, 1, 1)).astype(np.float32)
    images += rng.normal(128, 20, size=(n, 3, 1, 1)).astype(np.float32)
    images += rng.normal(0, 48, size=images.shape).astype(np.float32)
    return np.clip(images, 0, 255).astype(np.uint8).reshape(n, 3072)


def write_synthetic_cifar10(root, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> Path:
    """Write `root/cifar-10-batches-py/` (data_batch_1..5, test_batch, batches.meta) with synthetic images.

    Same keys, dtypes and layout as the official files: data uint8 (N, 3072) with 1024 red, 1024 green,
    1024 blue values per row; labels a list of ints 0-9."""
    root = Path(root)
    folder = root / BATCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 70, size=(10, 3, 8, 8)).astype(np.float32)
    templates = coarse.repeat(4, axis=2).repeat(4, axis=3)  # smooth 4x4 blocks, 32x32
    splits = [("data_batch_%d" % (i + 1), n) for i, n in
              enumerate(np.diff(np.linspace(0, n_train, 6).astype(int)))] + [("test_batch", n_test)]
    for name, n in splits:
        labels = rng.integers(0, 10, size=n)
        batch = {
            "batch_label": f"synthetic {name} (lab.data.write_synthetic_cifar10, seed {seed})",
            "labels": [int(x) for x in labels],
            "data": synthetic_images(labels, rng, templates),
            "filenames": [f"synthetic_{name}_{i:05d}.png" for i in range(n)],
        }
        _dump_py2(batch, folder / name)
    _dump_py2({"num_cases_per_batch": int(n_train // 5), "label_names": list(CLASSES), "num_vis": 3072},
              folder / "batches.meta")
    (root / "synthetic.json").write_text(json.dumps(
        {"n_train": n_train, "n_test": n_test, "seed": seed, "format": "cifar-10-python"}))
    return folder


class SyntheticCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 with the md5 checks switched off for our synthetic files (and only those)."""

    train_list = [[f"data_batch_{i}", None] for i in range(1, 6)]
    test_list = [["test_batch", None]]
    meta = {"filename": "batches.meta", "key": "label_names", "md5": None}


def synthetic_root(config: Config) -> Path:
    return Path(config.data) / "synthetic"


def ensure_synthetic(config: Config, log=print) -> Path:
    """Write the synthetic set under `<data>/synthetic` unless it is there with the requested sizes."""
    root = synthetic_root(config)
    wanted = {"n_train": config.synthetic_train, "n_test": config.synthetic_test, "seed": 0}
    marker = root / "synthetic.json"
    try:
        have = json.loads(marker.read_text())
    except (OSError, ValueError):
        have = {}
    if any(have.get(k) != v for k, v in wanted.items()):
        log(f"writing synthetic CIFAR-format data ({config.synthetic_train} + {config.synthetic_test} "
            f"images) to {root / BATCH_DIR}")
        write_synthetic_cifar10(root, config.synthetic_train, config.synthetic_test, seed=0)
    return root


def _find_bad_file(folder: Path) -> str | None:
    for path in sorted(folder.glob("*_batch*")) + [folder / "batches.meta"]:
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            if "data" in entry:
                np.asarray(entry["data"]).reshape(-1, 3, 32, 32)
        except Exception as exc:  # noqa: BLE001 - any failure means this file is unusable
            return f"{path} ({type(exc).__name__}: {exc})"
    return None


def load_dataset(config: Config, train: bool, transform=None, log=print):
    """The train or test split of the configured data set, through torchvision's CIFAR10 code path."""
    transform = transform if transform is not None else (train_transform() if train else test_transform())
    if config.dataset == "synthetic":
        root, cls = ensure_synthetic(config, log), SyntheticCIFAR10
        how_to_fix = f"delete {root} and run again to regenerate it"
    else:
        root, cls = Path(config.data), torchvision.datasets.CIFAR10
        how_to_fix = f"delete {root / BATCH_DIR} and download CIFAR-10 again ({CIFAR10_URL})"
        if not (root / BATCH_DIR).is_dir():
            download_cifar10(root, log)
    try:
        return cls(str(root), train=train, transform=transform, download=False)
    except Exception as exc:  # noqa: BLE001 - translated into one line naming the bad file
        bad = _find_bad_file(root / BATCH_DIR) or f"{root / BATCH_DIR} ({exc})"
        raise DataError(f"cannot read CIFAR-10 batch file {bad}; {how_to_fix}") from exc


def download_cifar10(root: Path, log=print) -> None:
    if os.environ.get("LAB_OFFLINE"):
        reason = "LAB_OFFLINE is set"
    else:
        log(f"CIFAR-10 not found in {root}; downloading {CIFAR10_URL}")
        try:
            torchvision.datasets.CIFAR10(str(root), train=True, download=True)
            return
        except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
            reason = f"download failed: {type(exc).__name__}: {exc}".splitlines()[0]
    raise DataError(f"CIFAR-10 is not in {root / BATCH_DIR} and {reason}; download {CIFAR10_URL} "
                    f"and unpack it into {root}, or use --dataset synthetic")


def make_loader(dataset, config: Config, device: torch.device, train: bool = True) -> torch.utils.data.DataLoader:
    """The lab's DataLoader. `pin_memory` only when the device is CUDA; the generator drives shuffling
    and the workers' seeds, and is re-seeded every epoch so a resumed run sees the same batches."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=train, num_workers=config.workers,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(config.seed),
    )
