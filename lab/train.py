"""Training: optimizers, one timed epoch, evaluation, checkpoints, and `run(config)`.

Timed phases per epoch (see lab.timing): `load` is the wait on the loader (its `iter()` and every
`next()`), `train` is the move to the device + forward + backward + step (+ reading the batch's loss),
ending with a device sync, `total` is the whole epoch. Evaluation is never inside an epoch's timers.
"""
from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from . import data, results
from .config import Config, ConfigError, LabError
from .model import resnet18
from .tensor_loader import TensorLoader
from .timing import PhaseTimer

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# Fields a checkpoint must share with the run that resumes it: anything else would train another model
# (the optimizer's lr, momentum and weight decay come back from its saved state) or see other batches.
RESUME_MUST_MATCH = ("batch_norm", "optimizer", "lr", "momentum", "weight_decay", "dataset", "batch_size",
                     "max_batches", "seed", "loader", "amp", "channels_last", "synthetic_train", "synthetic_test")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LabError(f"CUDA was requested (--gpu / --device cuda) but torch {torch.__version__} sees no "
                       "CUDA device; run with --device cpu (or --device auto)")
    return torch.device(name)


def build_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
    """The lab's five optimizers; momentum applies to the two SGD variants only."""
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd-nesterov":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}")


def train_one_epoch(model, loader, optimizer, device, max_batches=None, criterion=None, timer=None,
                    progress=False, desc="train", channels_last=False, amp_dtype=None, scaler=None,
                    on_step=None) -> dict:
    """Train for one epoch (or `max_batches` batches) and return its timings and metrics.

    loss and top1 are over all samples of the epoch (sample-weighted means), not the best batch.
    `batches` lists per-batch loss/top1/load_s/train_s. `diverged` is set when the loss stops being
    finite; the epoch stops there. `amp_dtype` turns on autocast (with `scaler` for fp16);
    `on_step()` is called after each batch (a profiler's step)."""
    criterion = criterion or nn.CrossEntropyLoss()
    timer = timer or PhaseTimer(device)
    copy = {"non_blocking": device.type == "cuda"}
    if channels_last:
        copy["memory_format"] = torch.channels_last
    n_batches = len(loader) if max_batches is None else min(len(loader), max_batches)
    model.train()
    loss_sum, correct, images, batches, diverged = 0.0, 0, 0, [], False
    bar = tqdm(total=n_batches, desc=desc, disable=not progress, file=sys.stderr, leave=False)
    with timer.phase("total"):
        with timer.phase("load"):
            it = iter(loader)
        for index in range(n_batches):
            before = dict(timer.seconds)
            with timer.phase("load"):
                x, y = next(it)
            with timer.phase("train"):
                x = x.to(device, **copy)
                y = y.to(device, non_blocking=copy["non_blocking"])
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    out = model(x)
                    loss = criterion(out, y)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                batch_loss = loss.item()
                batch_correct = int((out.argmax(1) == y).sum().item())
            n = y.size(0)
            loss_sum += batch_loss * n
            correct += batch_correct
            images += n
            batches.append({"batch": index + 1, "loss": batch_loss, "top1": batch_correct / n, "images": n,
                            "load_s": timer.seconds["load"] - before.get("load", 0.0),
                            "train_s": timer.seconds["train"] - before.get("train", 0.0)})
            if on_step is not None:
                on_step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / images:.3f}", top1=f"{correct / images:.3f}")
            if not math.isfinite(batch_loss):
                diverged = True
                break
        del it  # worker shutdown belongs to this epoch ("other")
    bar.close()
    return {**timer.split(), "loss": loss_sum / max(images, 1), "top1": correct / max(images, 1),
            "images": images, "batches": batches, "diverged": diverged}


@torch.no_grad()
def evaluate(model, loader, device, max_batches=None) -> dict:
    """Test loss and top-1 over the (capped) test set; run outside the timed epoch."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss_sum, correct, images = 0.0, 0, 0
    for index, (x, y) in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss_sum += criterion(out, y).item()
        correct += int((out.argmax(1) == y).sum().item())
        images += y.size(0)
    return {"test_loss": loss_sum / max(images, 1), "test_top1": correct / max(images, 1)}


# --- checkpoints --------------------------------------------------------------------------------

def save_checkpoint(path, model, optimizer, epoch: int, config: Config, run_id: str = "") -> None:
    """Everything needed to continue: weights, optimizer state, epoch, RNG states, config, run id. Written
    to a temporary file, flushed to disk and renamed, so a crash never leaves half a checkpoint."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "run_id": run_id,
        "config": config.to_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    with results.atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path, config: Config) -> dict:
    """Load with weights_only=True (no pickled code runs) and check it belongs to this configuration."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--resume: no checkpoint at {path}; run without --resume to start from scratch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["config"]
        state["model"], state["optimizer"], state["epoch"]
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise LabError(f"--resume: checkpoint {path} is unreadable ({type(exc).__name__}); "
                       "delete it and start again without --resume") from exc
    differ = [f"{k}={saved.get(k)!r} (now {getattr(config, k)!r})" for k in RESUME_MUST_MATCH
              if saved.get(k) != getattr(config, k)]
    if differ:
        raise ConfigError(f"--resume: checkpoint {path} was made with a different configuration: "
                          f"{', '.join(differ)}")
    return state


def _seed_epoch(config: Config, epoch: int, loader) -> None:
    """Each epoch's randomness (shuffle, augmentation, worker seeds) derives from (seed, epoch) alone, so
    an interrupted and resumed run sees exactly the batches an uninterrupted one would."""
    seed = config.seed * 100_003 + epoch
    torch.manual_seed(seed)
    random.seed(seed)
    if getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(seed)


# --- a whole run ----------------------------------------------------------------------------------

def build_loaders(config: Config, device: torch.device, log=print):
    train_set = data.load_dataset(config, train=True, log=log)
    if config.loader == "tensor":
        train_loader = TensorLoader.from_dataset(train_set, config.batch_size, device, train=True, seed=config.seed)
    else:
        train_loader = data.make_loader(train_set, config, device, train=True)
    test_loader = None
    if config.evaluate:
        test_loader = data.make_loader(data.load_dataset(config, train=False, log=log),
                                       config.replace(workers=min(config.workers, 2)), device, train=False)
    return train_loader, test_loader


class Setup:
    """What a run trains with: device, model (and its compiled form), optimizer, loaders, precision."""

    def __init__(self, config: Config, log=None):
        log = log or (lambda msg: print(msg, file=sys.stderr))
        self.config = config.validate()
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.model = resnet18(batch_norm=config.batch_norm).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(config.optimizer, self.model.parameters(), config.lr, config.momentum,
                                         config.weight_decay)
        self.train_loader, self.test_loader = build_loaders(config, self.device, log)
        self.step_model = self.model if config.compile == "off" else torch.compile(
            self.model, mode=None if config.compile == "default" else config.compile)
        self.amp_dtype = AMP_DTYPES[config.amp]
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if config.amp == "fp16" and self.device.type == "cuda" else None)

    def train_epoch(self, epoch: int, progress=False, max_batches=None, on_step=None) -> dict:
        _seed_epoch(self.config, epoch, self.train_loader)
        return train_one_epoch(self.step_model, self.train_loader, self.optimizer, self.device,
                               max_batches or self.config.max_batches, progress=progress,
                               desc=f"epoch {epoch}/{self.config.epochs}", channels_last=self.config.channels_last,
                               amp_dtype=self.amp_dtype, scaler=self.scaler, on_step=on_step)


def run(config: Config, results_dir=None, progress=False, log=None):
    """Train `config.epochs` epochs and yield one record per epoch (and append them, with the per-batch
    records, to `results_dir/records.jsonl` and `results_dir/batches.jsonl` when given).

    The record of an epoch is written before its checkpoint; a resumed run keeps its run id and first
    drops any record of the epochs it is about to train again, so an interruption between the two never
    leaves a duplicate."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    config.validate()
    for folder in ([results_dir] if results_dir is not None else []) + (
            [Path(config.checkpoint).parent] if config.checkpoint else []):
        results.check_writable(Path(folder))  # before any work, not after the first epoch
    state = load_checkpoint(config.checkpoint, config) if config.resume else None
    if state is not None and state["epoch"] >= config.epochs:
        log(f"nothing to do: the checkpoint {config.checkpoint} is already at epoch {state['epoch']} "
            f"(--epoch {config.epochs})")
        return
    setup = Setup(config, log)
    start, run_id = 1, results.new_run_id(config)
    if state is not None:
        setup.model.load_state_dict(state["model"])
        setup.optimizer.load_state_dict(state["optimizer"])
        start, run_id = state["epoch"] + 1, state.get("run_id") or run_id
        log(f"resumed from {config.checkpoint} after epoch {state['epoch']}")
        if results_dir is not None:
            for name in ("records.jsonl", "batches.jsonl"):
                path = Path(results_dir) / name
                kept = [r for r in results.read_jsonl(path) if r.get("run_id") != run_id or r["epoch"] < start]
                results.write_jsonl(path, kept)
    prov = results.provenance(config, setup.device)
    for epoch in range(start, config.epochs + 1):
        stats = setup.train_epoch(epoch, progress=progress)
        metrics = {**stats, "epoch": epoch, "warmup": epoch == start,
                   "status": "diverged" if stats["diverged"] else "ok"}
        if setup.test_loader is not None and not stats["diverged"]:
            metrics.update(evaluate(setup.model, setup.test_loader, setup.device, config.max_batches))
        record = results.make_record(config, metrics, prov, run_id)
        if results_dir is not None:
            results.append_jsonl(Path(results_dir) / "batches.jsonl",
                                 [{"record": "batch", "run_id": run_id, "experiment": config.experiment,
                                   "tag": config.tag, "epoch": epoch, **b} for b in stats["batches"]])
            results.append_jsonl(Path(results_dir) / "records.jsonl", [record])
        if config.checkpoint and not stats["diverged"]:
            save_checkpoint(config.checkpoint, setup.model, setup.optimizer, epoch, config, run_id)
        yield record
        if stats["diverged"]:
            log(f"loss became {stats['loss']} in epoch {epoch}: the run diverged and stops here "
                f"(lr={config.lr}, optimizer={config.optimizer})")
            return
