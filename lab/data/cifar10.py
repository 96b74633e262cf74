"""CIFAR-10 the lab's way: transforms, the real data set through torchvision, a synthetic data set in
the very same file format (for machines that cannot download CIFAR-10), and DataLoader construction."""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms as T

from ..core.config import Config
from ..core.errors import LabError
from ..core.files import atomic_write, read_json

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCH_DIR = "cifar-10-batches-py"
BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class DataError(LabError):
    """Missing or unreadable data."""


def train_transform():
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])


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


SYNTHETIC_VERSION = 2  # in synthetic.json and every batch_label; bump it whenever the images change

# The generator's knobs; synthetic_images says what they do.
MODES = 4                          # templates per class
SPRITE = 16                        # template resolution, pixels
SCALE = (0.8, 1.5)                 # drawn size / template size: objects of 13 to 24 pixels
CENTRE = (6.0, 26.0)               # object centre, pixels: up to 10 from the middle (RandomCrop moves 4)
OPACITY = (0.6, 1.0)               # of the labelled object
DISTRACTORS = 2                    # objects of other classes behind the labelled one (the last: PAIRS)
DISTRACTOR_OPACITY = (0.15, 0.5)
PAIRS = 0.25                       # images with a co-equal object of another class: top-1 <= 1 - PAIRS / 2
COLOUR_JITTER = 25                 # per-image change of a template's two colours (std, grey levels)
NOISE = 15                         # pixel noise (std, grey levels)


def _upsample(low: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of the last two axes (m x m) to size x size: smooth random fields."""
    m = low.shape[-1]
    pos = np.linspace(0, m - 1, size)
    i0 = np.minimum(pos.astype(int), m - 2)
    u = np.zeros((size, m), np.float32)
    u[np.arange(size), i0] = 1 - (pos - i0)
    u[np.arange(size), i0 + 1] += pos - i0
    return u @ low.astype(np.float32) @ u.T


def synthetic_templates(rng: np.random.Generator, modes: int = MODES, size: int = SPRITE):
    """`modes` templates per class, template k of class k // modes: a random compact blob (alpha in
    [0, 1]), a texture inside it (a smooth random field plus an oriented grating, in [0, 1]) and the two
    colours the texture blends between."""
    k = 10 * modes
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    alpha = np.clip(2 * (_upsample(rng.normal(0, 1, (k, 4, 4)), size) + 1.5 * (1 - yy ** 2 - xx ** 2)), 0, 1)
    theta = rng.uniform(0, np.pi, (k, 1, 1))
    freq = rng.uniform(1, 2.5, (k, 1, 1))  # half-cycles across the template
    phase = rng.uniform(0, 2 * np.pi, (k, 1, 1))
    grating = np.sin(np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    texture = 0.5 + 0.5 * np.tanh(_upsample(rng.normal(0, 1, (k, 5, 5)), size) + grating)
    palette = rng.uniform(0, 255, (k, 2, 3))
    return alpha.astype(np.float32), texture.astype(np.float32), palette.astype(np.float32)


def _draw(images: np.ndarray, templates, kinds: np.ndarray, opacity: np.ndarray, rng: np.random.Generator):
    """Alpha-blend template kinds[i] into images[i] (n, 3, 32, 32), in place: random scale and centre
    (nearest-pixel sampling), its two colours moved by COLOUR_JITTER."""
    alpha, texture, palette = templates
    n, size = len(kinds), alpha.shape[-1]
    scale = rng.uniform(*SCALE, (n, 1))
    centre = rng.uniform(*CENTRE, (2, n, 1))
    ty, tx = np.floor((np.arange(32) + 0.5 - centre) / scale + size / 2).astype(np.int64)  # (n, 32) each
    inside = ((ty >= 0) & (ty < size))[:, :, None] & ((tx >= 0) & (tx < size))[:, None, :]
    ty, tx = ty.clip(0, size - 1), tx.clip(0, size - 1)
    flat = (kinds[:, None, None] * size + ty[:, :, None]) * size + tx[:, None, :]  # (n, 32, 32)
    a = alpha.reshape(-1)[flat] * inside * opacity[:, None, None].astype(np.float32)
    t = texture.reshape(-1)[flat]
    lo, hi = (palette[kinds] + rng.normal(0, COLOUR_JITTER, (n, 2, 3)).astype(np.float32)).transpose(1, 0, 2)
    colour = lo[:, :, None, None] + (hi - lo)[:, :, None, None] * t[:, None]
    images += a[:, None] * (colour - images)


def synthetic_images(labels: np.ndarray, rng: np.random.Generator, templates) -> np.ndarray:
    """Images of the given classes, uint8 (n, 3072) rows as in CIFAR-10 (1024 red, green, blue values).

    Each image: a smooth background; DISTRACTORS - 1 faint objects of other classes; the labelled object and
    one more object of another class, each at a random scale, centre and opacity in jittered colours; then a
    random contrast, a colour cast and pixel noise. In a PAIRS fraction of images the other object is as strong
    as the labelled one and in front half the time: no classifier can exceed 1 - PAIRS / 2 = 87.5 % top-1.
    Its measured difficulty: docs/measuring.md, "Data"."""
    n = len(labels)
    modes = len(templates[0]) // 10

    def other_class():
        return (labels + rng.integers(1, 10, n)) % 10 * modes + rng.integers(0, modes, n)

    images = _upsample(rng.normal(0, 40, (n, 3, 4, 4)) + rng.uniform(30, 225, (n, 3, 1, 1)), 32)
    for _ in range(DISTRACTORS - 1):
        _draw(images, templates, other_class(), rng.uniform(*DISTRACTOR_OPACITY, n), rng)
    pair = rng.random(n) < PAIRS
    behind, front = other_class(), labels * modes + rng.integers(0, modes, n)
    swap = pair & (rng.random(n) < 0.5)
    behind[swap], front[swap] = front[swap], behind[swap]
    opacity = np.where(pair, rng.uniform(*OPACITY, n), rng.uniform(*DISTRACTOR_OPACITY, n))
    _draw(images, templates, behind, opacity, rng)
    _draw(images, templates, front, rng.uniform(*OPACITY, n), rng)
    mean = images.mean(axis=(1, 2, 3), keepdims=True)
    images = (images - mean) * rng.uniform(0.6, 1.2, (n, 1, 1, 1)).astype(np.float32) + mean  # contrast
    images += rng.normal(0, 20, (n, 3, 1, 1)).astype(np.float32)  # colour cast
    images += NOISE * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images, 0, 255).astype(np.uint8).reshape(n, 3072)


def write_synthetic_cifar10(root, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> None:
    """Write `root/cifar-10-batches-py/` with synthetic images in the official files' keys, dtypes and layout,
    and `root/synthetic.json` (sizes, seed, SYNTHETIC_VERSION) last, once every batch file is complete."""
    root = Path(root)
    (root / "synthetic.json").unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    templates = synthetic_templates(rng)
    for name, n in zip(BATCH_FILES, list(np.diff(np.linspace(0, n_train, 6).astype(int))) + [n_test]):
        labels = rng.integers(0, 10, size=n)
        _dump_py2({"batch_label": f"synthetic {name} (lab.data.write_synthetic_cifar10 version {SYNTHETIC_VERSION}, "
                                  f"seed {seed})",
                   "labels": [int(x) for x in labels], "data": synthetic_images(labels, rng, templates),
                   "filenames": [f"synthetic_{name}_{i:05d}.png" for i in range(n)]}, root / BATCH_DIR / name)
    _dump_py2({"num_cases_per_batch": int(n_train // 5), "label_names": list(CLASSES), "num_vis": 3072},
              root / BATCH_DIR / "batches.meta")
    with atomic_write(root / "synthetic.json") as f:
        json.dump({"version": SYNTHETIC_VERSION, "n_train": n_train, "n_test": n_test, "seed": seed,
                   "format": "cifar-10-python"}, f)


class SyntheticCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 with the md5 checks switched off for our synthetic files (and only those)."""

    train_list = [[name, None] for name in BATCH_FILES[:5]]
    test_list = [["test_batch", None]]
    meta = {"filename": "batches.meta", "key": "label_names", "md5": None}


def synthetic_root(config: Config) -> Path:
    return Path(config.data) / "synthetic"


def ensure_synthetic(config: Config, log=print) -> Path:
    """Write the synthetic set under `<data>/synthetic` unless it is there with this generator's version
    and the requested sizes (older files, without a version or with another one, are rewritten)."""
    root = synthetic_root(config)
    wanted = {"version": SYNTHETIC_VERSION, "n_train": config.synthetic_train,
              "n_test": config.synthetic_test, "seed": 0}
    have = read_json(root / "synthetic.json")
    have = have if isinstance(have, dict) else None
    stale = [f"{k} {have.get(k)} -> {v}" for k, v in wanted.items() if have is not None and have.get(k) != v]
    if have is None or stale:
        why = "none there" if have is None else "stale: " + ", ".join(stale)
        log(f"writing synthetic CIFAR-format data version {SYNTHETIC_VERSION} ({config.synthetic_train} + "
            f"{config.synthetic_test} images) to {root / BATCH_DIR} ({why})")
        write_synthetic_cifar10(root, config.synthetic_train, config.synthetic_test, seed=0)
    return root


@functools.lru_cache(maxsize=None)
def _sha256_of(path: str, inode: int, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _sha256(path: Path) -> str:
    """sha256 of a file's contents, computed once per process for a file as long as it is unchanged
    (same inode, size and modification time): ~0.3 s for CIFAR-10's 180 MB."""
    st = path.stat()
    return _sha256_of(str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def fingerprint(config: Config) -> dict:
    """What a checkpoint records of the data it trained on: the data set kind and the sha256 of each batch
    file's contents; not the folder (moved identical data is the same data): `folder` is for messages only."""
    folder = (synthetic_root(config) if config.dataset == "synthetic" else Path(config.data)) / BATCH_DIR
    return {"dataset": config.dataset, "folder": str(folder),
            "sha256": {name: _sha256(folder / name) for name in BATCH_FILES if (folder / name).is_file()}}


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
    """The train or test split of the configured data set, through torchvision's CIFAR10 code path
    (the training split without augmentation when `config.augment` is off)."""
    if transform is None:
        transform = train_transform() if train and config.augment else test_transform()
    if config.dataset == "synthetic":
        root, cls = ensure_synthetic(config, log), SyntheticCIFAR10
        how_to_fix = f"delete {root} and run again to regenerate it"
    else:
        root, cls = Path(config.data), torchvision.datasets.CIFAR10
        how_to_fix = f"delete {root / BATCH_DIR} and download CIFAR-10 again ({CIFAR10_URL})"
        ensure_cifar10(root, log)
    try:
        return cls(str(root), train=train, transform=transform, download=False)
    except Exception as exc:  # noqa: BLE001 - translated into one line naming the bad file
        bad = _find_bad_file(root / BATCH_DIR) or f"{root / BATCH_DIR} ({exc})"
        raise DataError(f"cannot read CIFAR-10 batch file {bad}; {how_to_fix}") from exc


def ensure_cifar10(root: Path, log=print) -> None:
    """Download CIFAR-10 into `root` unless it is there; DataError where it cannot be."""
    if (root / BATCH_DIR).is_dir():
        return
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


def resolve_dataset(dataset: str, data: str, log=print) -> str:
    """'auto' -> 'cifar10' where it is on disk or can be downloaded, else 'synthetic' (said loudly)."""
    if dataset != "auto":
        return dataset
    try:
        ensure_cifar10(Path(data), log)
        return "cifar10"
    except DataError:
        log(f"CIFAR-10 is not in {Path(data) / BATCH_DIR} and cannot be downloaded here: using SYNTHETIC "
            f"CIFAR-format data. Timings are real; accuracies are not CIFAR-10's. (Get {CIFAR10_URL})")
        return "synthetic"


def make_loader(dataset, config: Config, device: torch.device, train: bool = True, rank: int = 0,
                world_size: int = 1) -> torch.utils.data.DataLoader:
    """The lab's DataLoader, `pin_memory` only on CUDA. Training shuffles through a DistributedSampler (one
    process too): its permutation follows the seed and the epoch only (seed_epoch calls set_epoch) and rank r of
    N takes every N-th image, so N ranks see what one process sees and a resumed run sees the same batches.
    persistent_workers and prefetch_factor only with workers (DataLoader refuses them without)."""
    sampler = (torch.utils.data.DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                                   seed=config.seed * 100_003) if train else None)
    workers = ({"persistent_workers": config.persistent_workers, "prefetch_factor": config.prefetch_factor}
               if config.workers > 0 else {})
    return torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                                       num_workers=config.workers, pin_memory=device.type == "cuda",
                                       generator=torch.Generator().manual_seed(config.seed), **workers)
