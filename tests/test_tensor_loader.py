import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from lab.data import cifar10 as data
from lab.data.cifar10 import load_dataset, make_loader
from lab.data.tensor_loader import TensorLoader, crop_flip, draw_augmentation
from lab.engine.train import run


@pytest.fixture(scope="module")
def dataset(synthetic_data):
    return load_dataset(synthetic_data, train=True, transform=data.test_transform())


def test_no_augmentation_reproduces_torchvision_tensors_exactly(dataset):
    loader = TensorLoader.from_dataset(dataset, batch_size=100, device="cpu", train=False)
    x, y = next(iter(loader))
    reference = torch.stack([dataset[i][0] for i in range(100)])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, reference)  # bit for bit: ToTensor then Normalize, same operation order
    assert y.tolist() == dataset.targets[:100]


def test_crop_and_flip_match_torchvision_for_each_images_own_offsets(dataset):
    images = torch.as_tensor(dataset.data[:64]).permute(0, 3, 1, 2).contiguous()
    top, left, flip = draw_augmentation(64, torch.Generator().manual_seed(1))
    out = crop_flip(images, top, left, flip)
    for i in range(64):
        expected = TF.crop(TF.pad(images[i], 4), int(top[i]), int(left[i]), 32, 32)
        assert torch.equal(out[i], TF.hflip(expected) if flip[i] else expected)


def test_offsets_are_per_image_independent_and_cover_all_81_positions():
    n = 81 * 400
    top, left, flip = draw_augmentation(n, torch.Generator().manual_seed(0))
    joint = torch.bincount(top * 9 + left, minlength=81).double() / n
    assert (joint > 0).all()  # every one of the 9 x 9 positions occurs
    assert joint.max() < 1.35 / 81 and joint.min() > 0.65 / 81  # ~uniform joint: top and left independent
    batch = draw_augmentation(128, torch.Generator().manual_seed(5))
    assert len(set(zip(batch[0].tolist(), batch[1].tolist()))) > 40  # not one crop for the whole batch
    assert abs(flip.double().mean().item() - 0.5) < 0.02
    assert abs(np.corrcoef(flip.numpy(), top.numpy())[0, 1]) < 0.03


def test_batches_like_the_dataloader(dataset, synthetic_data):
    config = synthetic_data.replace(batch_size=96)
    tensor = TensorLoader.from_dataset(dataset, 96, "cpu")
    torch_loader = make_loader(dataset, config, torch.device("cpu"))
    assert len(tensor) == len(torch_loader) == 7  # 640 images: six of 96 and a last partial batch of 64
    sizes = [y.numel() for _, y in tensor]
    assert sizes == [96] * 6 + [64]
    first, second = [torch.cat([y for _, y in tensor]) for _ in range(2)]
    assert sorted(first.tolist()) == sorted(dataset.targets)  # each image once per epoch
    assert not torch.equal(first, second)  # a fresh permutation each epoch


def test_trains_through_the_same_loop_and_timers(tiny_config):
    records = list(run(tiny_config.replace(loader="tensor", epochs=2)))
    assert [r["images"] for r in records] == [32, 32]
    assert all(r["load_s"] > 0 and r["other_s"] >= 0 for r in records)
    assert records[0]["loader"] == "tensor"
    again = list(run(tiny_config.replace(loader="tensor", epochs=2)))
    assert [r["loss"] for r in again] == [r["loss"] for r in records]  # seeded per epoch
