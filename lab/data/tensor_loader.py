"""An on-device batched loader, as the fastest CIFAR-10 trainers (airbench, hlb-CIFAR10) do it: the whole uint8
data set on the run's device, a fresh permutation each epoch, the lab's augmentation as batched tensor work with
*per-image* random crops and flips (torchvision.transforms.v2 draws one for a whole batch), then ToTensor's
scaling and Normalize in torchvision's order of floating-point operations."""
from __future__ import annotations

import math

import torch

from .cifar10 import MEAN, STD

PAD = 4


def draw_augmentation(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop offsets in 0..2*PAD (top, left) and flip flags, all independent, drawn on the
    generator's device (no host-to-device copy)."""
    device = generator.device
    top = torch.randint(0, 2 * PAD + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, 2 * PAD + 1, (n,), generator=generator, device=device)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    return top, left, flip


def crop_flip(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Zero-pad uint8 NCHW images by PAD, crop 32x32 at each image's (top, left), then mirror where `flip`:
    one gather over the flattened padded image, the flip folded into the column index."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (PAD, PAD, PAD, PAD)).view(n, c, -1)
    arange_w = torch.arange(w, device=images.device)
    cols = torch.where(flip[:, None], w - 1 - arange_w, arange_w) + left[:, None]            # (n, w)
    rows = (top[:, None] + torch.arange(h, device=images.device)) * (w + 2 * PAD)            # (n, h)
    index = (rows[:, :, None] + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.gather(2, index).view(n, c, h, w)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float32, exactly as ToTensor (x / 255) then Normalize ((x - mean) / std)."""
    x = images.to(torch.float32).div(255)
    mean = torch.as_tensor(MEAN, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(STD, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


class TensorLoader:
    """Iterates (images, labels) batches like the lab's DataLoader: same batch size, shuffled each epoch
    for training, the last partial batch kept, float32 NCHW images and int64 labels."""

    def __init__(self, images_nhwc, labels, batch_size: int, device, train: bool = True, augment: bool | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        self.device = torch.device(device)
        self.images = torch.as_tensor(images_nhwc).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        self.batch_size, self.train, self.augment = batch_size, train, train if augment is None else augment
        self.rank, self.world_size = rank, world_size  # rank r of N takes every N-th image, as DistributedSampler
        # the epoch's permutation and augmentation are drawn on the device (re-seeded per epoch by seed_epoch)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    @classmethod
    def from_dataset(cls, dataset, batch_size: int, device, train: bool = True, **kwargs) -> "TensorLoader":
        """From a torchvision CIFAR10 (or our synthetic subclass): its uint8 `data` and `targets`."""
        return cls(dataset.data, dataset.targets, batch_size, device, train=train, **kwargs)

    def _shard_size(self) -> int:
        return math.ceil(len(self.labels) / self.world_size)

    def __len__(self) -> int:
        return math.ceil(self._shard_size() / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = (torch.randperm(n, generator=self.generator, device=self.device) if self.train
                 else torch.arange(n, device=self.device))
        if self.augment:
            top, left, flip = draw_augmentation(n, self.generator)
        if self.world_size > 1:  # pad to a multiple of N with the first images (as DistributedSampler), shard
            padded = torch.arange(self._shard_size() * self.world_size, device=self.device) % n
            keep = padded[self.rank::self.world_size]
            order = order[keep]
            if self.augment:
                top, left, flip = top[keep], left[keep], flip[keep]
            n = len(order)
        for start in range(0, n, self.batch_size):
            batch = slice(start, start + self.batch_size)
            index = order[batch]
            images = self.images.index_select(0, index)
            if self.augment:
                images = crop_flip(images, top[batch], left[batch], flip[batch])
            yield normalize(images), self.labels[index]
