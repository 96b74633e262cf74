"""A whole run: the Trainer (model, optimizer, loaders, precision, the compiled step) and `run(config)`, which
trains epoch by epoch and writes one record per epoch (lab.engine.records) and the checkpoint."""
from __future__ import annotations

import random
import statistics
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from ..core import files
from ..core.config import Config
from ..core.errors import ConfigError, RunState
from ..core.timing import now
from ..data import cifar10
from ..data.tensor_loader import TensorLoader
from . import dist, records
from .checkpoint import check_same_data, load_checkpoint, restore_scaler, save_checkpoint
from .interleave import abba
from .loop import AMP_DTYPES, Precision, Step, evaluate, train_one_epoch
from .model import resnet18
from .progress import step as progress_step
from .resolve import Resolved, apply_speed_settings, resolve, speed_settings


def build_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
    """The lab's five optimizers; momentum applies to the two SGD variants only."""
    sgd = (torch.optim.SGD, {"momentum": momentum, "nesterov": name == "sgd-nesterov"})
    kinds = {"sgd": sgd, "sgd-nesterov": sgd, "adagrad": (torch.optim.Adagrad, {}),
             "adadelta": (torch.optim.Adadelta, {}), "adam": (torch.optim.Adam, {})}
    if name not in kinds:
        raise ConfigError(f"unknown optimizer {name!r}")
    cls, options = kinds[name]
    return cls(list(params), lr=lr, weight_decay=weight_decay, **options)


def seed_epoch(config: Config, epoch: int, loader) -> None:
    """Each epoch's randomness (shuffle, augmentation, worker seeds) derives from (seed, epoch) alone, so a
    resumed run sees exactly the batches an uninterrupted one would; persistent workers' augmentation is the
    exception (seeded when they start, once per run)."""
    seed = config.seed * 100_003 + epoch
    torch.manual_seed(seed)
    random.seed(seed)
    if getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(seed)
    if hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(epoch)


def build_loaders(config: Config, device: torch.device, log=print):
    train_set = cifar10.load_dataset(config, train=True, log=log)
    shard = {"rank": dist.current().rank, "world_size": dist.current().world_size}
    if config.loader == "tensor":
        train_loader = TensorLoader.from_dataset(train_set, config.batch_size, device, train=True, seed=config.seed,
                                                 augment=config.augment, **shard)
    else:
        train_loader = cifar10.make_loader(train_set, config, device, train=True, **shard)
    if not config.evaluate:
        return train_loader, None
    return train_loader, cifar10.make_loader(cifar10.load_dataset(config, train=False, log=log),
                                             config.replace(workers=min(config.workers, 2)), device, train=False)


def make_scaler(config: Config, device: torch.device):
    """The fp16 GradScaler (CUDA with amp fp16 only; bf16 and fp32 need none); saved with every checkpoint."""
    return torch.amp.GradScaler(device.type) if config.amp == "fp16" and device.type == "cuda" else None


class Trainer:
    """What a run trains with: model (and its compiled form), optimizer, loaders, precision, on the resolved
    run's device and threads. `config` is the resolved configuration: the one the records carry."""

    def __init__(self, resolved: Resolved, log=None):
        log = log or (lambda msg: print(msg, file=sys.stderr))
        self.config = config = resolved.config
        self.device, self.dist = resolved.device, resolved.dist
        if resolved.threads != torch.get_num_threads():
            torch.set_num_threads(resolved.threads)
        apply_speed_settings(config, self.device)
        torch.manual_seed(config.seed)
        self.model = resnet18(batch_norm=config.batch_norm).to(self.device)
        if config.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(config.optimizer, self.model.parameters(), config.lr, config.momentum,
                                         config.weight_decay)
        self.train_loader, self.test_loader = build_loaders(config, self.device, log)
        # DDP all-reduces the gradients during backward (rank 0's weights are broadcast at construction)
        self.ddp = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.dist.distributed else None)
        model = self.ddp or self.model
        self.step_model = model if config.compile == "off" else torch.compile(
            model, mode=None if config.compile == "default" else config.compile, dynamic=False)
        self.precision = Precision(config.channels_last, AMP_DTYPES[config.amp], make_scaler(config, self.device))
        self.step = Step(self.step_model, self.optimizer, self.device, self.precision)

    def measure_comm(self, batches: int, probes: int = 5) -> dict:
        """An epoch's exposed gradient communication: forward + backward on a fixed batch timed with DDP's
        all-reduce and without it (`no_sync`), in alternating order, `probes` pairs; the weights are restored.
        comm_raw_s: the median pair difference x `batches` (kept when negative: within noise), comm_s: max(0, it),
        comm_low_s/comm_high_s: the smallest/largest pair difference x `batches`."""
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        n = self.config.batch_size
        fmt = torch.channels_last if self.config.channels_last else torch.contiguous_format
        x = torch.randn(n, 3, 32, 32, device=self.device).to(memory_format=fmt)
        y = torch.randint(0, 10, (n,), device=self.device)
        diffs = []
        for order in abba(("sync", "local"), probes):
            took = {}
            for mode in order:
                start = now(self.device)
                with self.ddp.no_sync() if mode == "local" else nullcontext():
                    with torch.autocast(self.device.type, dtype=self.precision.amp_dtype,
                                        enabled=self.precision.amp_dtype is not None):
                        loss = nn.functional.cross_entropy(self.ddp(x), y)
                    loss.backward()
                took[mode] = now(self.device) - start
                self.optimizer.zero_grad(set_to_none=True)
            diffs.append(took["sync"] - took["local"])
        self.model.load_state_dict(state)
        raw = statistics.median(diffs) * batches
        return {"comm_s": max(0.0, raw), "comm_raw_s": raw, "comm_low_s": min(diffs) * batches,
                "comm_high_s": max(diffs) * batches}

    def train_epoch(self, epoch: int, progress=False, max_batches=None, on_step=None, run_id: str = "") -> dict:
        """One epoch; each step is reported to lab.engine.progress (by rank 0), to a tqdm bar on stderr when
        `progress`, and then to `on_step()` (a profiler's step)."""
        seed_epoch(self.config, epoch, self.train_loader)
        apply_speed_settings(self.config, self.device)
        c, cap = self.config, max_batches or self.config.max_batches
        n = len(self.train_loader) if cap is None else min(len(self.train_loader), cap)
        bar = tqdm(total=n, desc=f"epoch {epoch}/{c.epochs}", disable=not progress, file=sys.stderr, leave=False)
        seen = {"loss": 0.0, "images": 0}

        def step(batch: dict) -> None:
            if self.dist.main:
                progress_step(run_id, c.experiment, c.tag, epoch, c.epochs, batch["batch"], n)
            bar.update(1)
            if batch["loss"] is not None:
                seen["loss"] += batch["loss"] * batch["images"]
                seen["images"] += batch["images"]
                bar.set_postfix(loss=f"{seen['loss'] / seen['images']:.3f}")
            if on_step is not None:
                on_step()

        with bar:
            return train_one_epoch(self.step, self.train_loader, n, c.timers, step)


def run(config: Config, results_dir=None, progress=False, log=None, reached: RunState | None = None,
        save_model=None):
    """Train `config.epochs` epochs and yield one record per epoch (appended, with the per-batch records, to
    `results_dir`'s records.jsonl and batches.jsonl when given). `reached` is kept up to date for the message
    when a signal interrupts the run. `save_model`: a file for the trained weights (not a checkpoint).

    Under torchrun rank 0 gathers every rank's record after each epoch and writes them all and the checkpoint.
    An epoch's record is written before its checkpoint; a resumed run keeps its run id and first drops any
    record of the epochs it trains again, so an interruption between the two never leaves a duplicate."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    reached = reached if reached is not None else RunState()
    resolved = resolve(config, log)
    config, ctx = resolved.config, resolved.dist
    if ctx.main:
        for folder in ([results_dir] if results_dir is not None else []) + (
                [Path(config.checkpoint).parent] if config.checkpoint else []):
            files.check_writable(Path(folder))  # before any work, not after the first epoch
    state = load_checkpoint(config.checkpoint, config, ctx.world_size) if config.resume else None
    if state is not None and state["epoch"] >= config.epochs:
        log(f"nothing to do: the checkpoint {config.checkpoint} is already at epoch {state['epoch']} "
            f"(--epoch {config.epochs})")
        return
    if state is not None:
        reached.saved = state["epoch"]
    trainer = Trainer(resolved, log)
    fingerprint = cifar10.fingerprint(config) if config.checkpoint else None  # the data exists now
    start, run_id = 1, dist.broadcast(records.new_run_id(config))
    if state is not None:
        check_same_data(state, fingerprint, config.checkpoint)
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        restore_scaler(trainer.precision.scaler, state)
        start, run_id = state["epoch"] + 1, state.get("run_id") or run_id
        log(f"resumed from {config.checkpoint} after epoch {state['epoch']}")
        if results_dir is not None and ctx.main:
            records.drop_epochs(results_dir, run_id, start)
    prov = records.provenance(config, trainer.device)
    where = {"rank": ctx.rank, "world_size": ctx.world_size, "global_batch_size": config.batch_size * ctx.world_size,
             "backend": ctx.backend or None, "threads": torch.get_num_threads(),
             "interop_threads": torch.get_num_interop_threads(), "cpus_available": records.cpus_available()}
    for epoch in range(start, config.epochs + 1):
        reached.epoch = epoch
        stats = trainer.train_epoch(epoch, progress=progress and ctx.main, run_id=run_id)
        batches = stats["batches"]
        metrics = {**stats, **where, **speed_settings(trainer.device), "epoch": epoch, "warmup": epoch == start,
                   "status": "diverged" if stats["diverged"] else "ok"}
        if ctx.world_size > 1 and not stats["diverged"] and epoch == config.epochs:  # once a run: probes cost steps
            metrics.update(trainer.measure_comm(len(batches), probes=min(5, max(2, len(batches)))))
        if trainer.test_loader is not None and not stats["diverged"] and ctx.main:
            metrics.update(evaluate(trainer.model, trainer.test_loader, trainer.device, config.max_batches))
        record = records.make_record(config, metrics, prov, run_id)
        ranks = dist.gather((record, batches))
        slowest = max(r["total_s"] for r, _ in ranks)
        for r, _ in ranks:
            r["slowest_total_s"] = slowest
        diverged = any(r["status"] == "diverged" for r, _ in ranks)
        if results_dir is not None and ctx.main:
            records.write_epoch(results_dir, ranks)
        if config.checkpoint and not diverged and ctx.main:
            save_checkpoint(config.checkpoint, trainer.model, trainer.optimizer, epoch, config, run_id, ctx.world_size,
                            fingerprint, trainer.precision.scaler)
        if not diverged:
            reached.epoch, reached.saved = None, epoch
        yield ranks[ctx.rank][0]
        if diverged:
            log(f"loss became {stats['loss']} in epoch {epoch}: the run diverged and stops here "
                f"(lr={config.lr}, optimizer={config.optimizer})")
            return
    if save_model is not None and ctx.main:
        save_weights(trainer.model, save_model)


def save_weights(model: torch.nn.Module, path) -> None:
    """The model's plain state_dict (under DDP's `module` and torch.compile's `_orig_mod`), written atomically."""
    plain = getattr(model, "module", model)
    plain = getattr(plain, "_orig_mod", plain)
    with files.atomic_write(path, "wb") as f:
        torch.save(plain.state_dict(), f)
