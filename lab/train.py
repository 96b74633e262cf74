"""Training: optimizers, one timed epoch, evaluation, checkpoints, and `run(config)`.

Timed phases per epoch (see lab.timing): `load` is the wait on the loader (its `iter()` and every
`next()`), `train` is the move to the device + forward + backward + step (+ reading the batch's loss),
ending with a device sync, `total` is the whole epoch. Evaluation is never inside an epoch's timers.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from . import data, dist, files, results
from .config import Config, ConfigError, LabError
from .model import resnet18
from .tensor_loader import TensorLoader
from .progress import step as progress_step
from .timing import PhaseTimer, now

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# Fields a checkpoint must share with the run that resumes it: anything else would train another model
# (the optimizer's lr, momentum and weight decay come back from its saved state) or see other batches.
RESUME_MUST_MATCH = ("batch_norm", "optimizer", "lr", "momentum", "weight_decay", "dataset", "batch_size",
                     "max_batches", "seed", "loader", "amp", "channels_last", "fast", "augment", "sync_bn",
                     "synthetic_train", "synthetic_test")


def resolve_device(name: str) -> torch.device:
    """cpu or cuda; under torchrun, the GPU of this process's local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise LabError(f"CUDA was requested (--gpu / --device cuda) but torch {torch.__version__} sees no "
                       "CUDA device; run with --device cpu (or --device auto)")
    if name == "cuda" and dist.current().distributed:
        return torch.device("cuda", dist.current().local_rank)
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


@dataclass
class Precision:
    """How the step computes: memory format, autocast dtype, and the fp16 GradScaler."""

    channels_last: bool = False
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None


STARVED_FRACTION = 0.1  # a batch is starved when its wait exceeds this share of the epoch's median step


def count_starved(batches: list[dict]) -> int | None:
    """Batches (the first, which always waits for the pipeline to fill, left out) whose wait on the loader
    exceeded STARVED_FRACTION of the epoch's median training step. None without per-batch clocks."""
    steps = sorted(b["train_s"] for b in batches if b.get("train_s") is not None)
    if not steps:
        return None
    threshold = STARVED_FRACTION * steps[len(steps) // 2]
    return sum(1 for b in batches[1:] if b["load_s"] > threshold)


@dataclass
class Step:
    """One training step's compute: the model (compiled or not), its optimizer, the device and the
    precision. `__call__` moves a batch to the device (non_blocking and pinned only on CUDA; channels_last
    where asked) and runs forward, loss, backward and the optimizer step (through the fp16 GradScaler)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    precision: Precision = field(default_factory=Precision)

    def __call__(self, x, y):
        cuda = self.device.type == "cuda"
        x = x.to(self.device, non_blocking=cuda,
                 memory_format=torch.channels_last if self.precision.channels_last else torch.preserve_format)
        y = y.to(self.device, non_blocking=cuda)
        self.optimizer.zero_grad(set_to_none=True)
        dtype = self.precision.amp_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            out = self.model(x)
            loss = nn.functional.cross_entropy(out, y)
        scaler = self.precision.scaler
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(self.optimizer)
            scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return out, loss, y


def train_one_epoch(step: Step, loader, batches: int | None = None, timers: str = "phase", on_step=None,
                    timer: PhaseTimer | None = None) -> dict:
    """Train `step` over one epoch of `loader` (or its first `batches` batches); its timings and metrics.

    timers="phase": the clock is read (after a device sync) around every wait on the loader and every
    step, so load_s, train_s, other_s and the per-batch split are measured; `loader_start_s` is the part
    of load_s spent in `iter()` (worker start-up), `starved_batches` counts batches the step waited for.
    timers="epoch": one clock around the whole epoch and no host sync per step: loss and accuracy stay on
    the device until the epoch ends, so load_s/train_s/other_s are None (not measured, not 0).

    loss and top1 are sample-weighted means over all images of the epoch, not the best batch. `diverged`
    is set when the loss stops being finite (per step with phase timers, at the epoch's end otherwise).
    `on_step(batch)` is called after each batch with its record (loss None until the epoch ends with epoch
    timers): a progress bar's or a profiler's step."""
    n = len(loader) if batches is None else min(len(loader), batches)
    step.model.train()
    on_step = on_step or (lambda batch: None)
    if timers == "epoch":
        return _epoch_timed(step, loader, n, on_step)
    return _phase_timed(step, loader, n, on_step, timer or PhaseTimer(step.device))


def _phase_timed(step: Step, loader, n_batches: int, on_step, timer: PhaseTimer) -> dict:
    loss_sum, correct, images, batches, diverged = 0.0, 0, 0, [], False
    with timer.phase("total"):
        with timer.phase("load"):
            it = iter(loader)
        loader_start = timer.seconds["load"]
        for index in range(n_batches):
            before = dict(timer.seconds)
            with timer.phase("load"):
                x, y = next(it)
            with timer.phase("train"):
                out, loss, y = step(x, y)
                batch_loss = loss.item()
                batch_correct = int((out.argmax(1) == y).sum().item())
            n = y.size(0)
            loss_sum += batch_loss * n
            correct += batch_correct
            images += n
            batches.append({"batch": index + 1, "loss": batch_loss, "top1": batch_correct / n, "images": n,
                            "load_s": timer.seconds["load"] - before.get("load", 0.0),
                            "train_s": timer.seconds["train"] - before.get("train", 0.0)})
            on_step(batches[-1])
            if not math.isfinite(batch_loss):
                diverged = True
                break
        del it  # worker shutdown belongs to this epoch ("other")
    return {**timer.split(), "loader_start_s": loader_start, "starved_batches": count_starved(batches),
            "timers": "phase", "loss": loss_sum / max(images, 1), "top1": correct / max(images, 1),
            "images": images, "batches": batches, "diverged": diverged}


def _epoch_timed(step: Step, loader, n_batches: int, on_step) -> dict:
    device = step.device
    losses = torch.zeros(n_batches).to(device)
    corrects = torch.zeros(n_batches, dtype=torch.int64).to(device)
    sizes = []
    start = now(device)
    it = iter(loader)
    for index in range(n_batches):
        x, y = next(it)
        out, loss, y = step(x, y)
        losses[index] = loss.detach()            # copied on the device: no host sync
        corrects[index] = (out.argmax(1) == y).sum()
        sizes.append(y.size(0))                  # shape metadata, known on the host
        on_step({"batch": index + 1, "loss": None, "images": sizes[-1]})
    del it
    total = now(device) - start                  # now() synchronizes: the epoch's work is all done
    loss_list, correct_list = losses.tolist(), corrects.tolist()
    images = sum(sizes)
    batches = [{"batch": i + 1, "loss": l, "top1": c / n, "images": n, "load_s": None, "train_s": None}
               for i, (l, c, n) in enumerate(zip(loss_list, correct_list, sizes))]
    loss = sum(l * n for l, n in zip(loss_list, sizes)) / max(images, 1)
    return {"load_s": None, "train_s": None, "other_s": None, "total_s": total, "loader_start_s": None,
            "starved_batches": None, "timers": "epoch", "loss": loss, "top1": sum(correct_list) / max(images, 1),
            "images": images, "batches": batches, "diverged": not math.isfinite(loss)}


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
    return {"test_loss": loss_sum / max(images, 1), "test_top1": correct / max(images, 1), "test_images": images}


# --- checkpoints --------------------------------------------------------------------------------

def save_checkpoint(path, model, optimizer, epoch: int, config: Config, run_id: str = "", world_size: int = 1,
                    data_fingerprint: dict | None = None, scaler=None) -> None:
    """Everything needed to continue: weights, optimizer state, epoch, RNG states, config, run id, the
    fingerprint of the data it trained on (lab.data.fingerprint) and the fp16 GradScaler's state (its loss
    scale and growth tracker; None without one). Written to a temporary file, flushed to disk and renamed,
    so a crash never leaves half a checkpoint."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "run_id": run_id,
        "world_size": world_size,
        "config": config.to_dict(),
        "data": data_fingerprint,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    with files.atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path, config: Config, world_size: int = 1) -> dict:
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
    if state.get("world_size", 1) != world_size:  # each rank's shard, and so every batch, would differ
        differ.append(f"world_size={state.get('world_size', 1)} (now {world_size})")
    if differ:
        raise ConfigError(f"--resume: checkpoint {path} was made with a different configuration: "
                          f"{', '.join(differ)}")
    return state


def check_same_data(state: dict, fingerprint: dict, path) -> None:
    """A resumed run must train on the data its checkpoint trained on: the same data set kind and batch files
    of the same contents (sha256; wherever the folder now is)."""
    saved = state.get("data")
    if not isinstance(saved, dict) or not isinstance(saved.get("sha256"), dict):
        raise ConfigError(f"--resume: checkpoint {path} does not record which data it was trained on (it predates "
                          "data fingerprints), so resuming could mix data sets; start again without --resume")
    if (saved.get("dataset"), saved["sha256"]) == (fingerprint["dataset"], fingerprint["sha256"]):
        return  # the folder may differ: moved identical data is the same data
    if saved.get("dataset") != fingerprint["dataset"]:
        differ = f"it was trained on {saved.get('dataset')} data, this run uses {fingerprint['dataset']}"
    else:
        names = sorted(set(saved["sha256"]) | set(fingerprint["sha256"]))
        changed = [n for n in names if saved["sha256"].get(n) != fingerprint["sha256"].get(n)]
        differ = (f"the contents of {', '.join(changed)} in {fingerprint['folder']} differ from the "
                  f"{saved.get('dataset')} files it was trained on")
    raise ConfigError(f"--resume: checkpoint {path} was trained on other data: {differ}; resume with that data "
                      "or start again without --resume")


def restore_scaler(scaler, state: dict) -> None:
    """Put the fp16 GradScaler's saved loss scale and growth tracker back (nothing to do without either)."""
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])


def seed_epoch(config: Config, epoch: int, loader) -> None:
    """Each epoch's randomness (shuffle, augmentation, worker seeds) derives from (seed, epoch) alone, so
    an interrupted and resumed run sees exactly the batches an uninterrupted one would."""
    seed = config.seed * 100_003 + epoch
    torch.manual_seed(seed)
    random.seed(seed)
    if getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(seed)
    if hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(epoch)


# --- fast mode --------------------------------------------------------------------------------------

def c_compiler() -> str | None:
    """torch.compile's inductor backend builds C++ (CPU) or Triton (CUDA) kernels with the host compiler."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


CUDA_FAST = {"loader": "tensor", "channels_last": True, "amp": "bf16", "compile": "reduce-overhead"}
CPU_CANDIDATES = [{"channels_last": cl, "amp": amp} for cl in (False, True) for amp in ("off", "bf16")]


def resolve_fast(config: Config, device: torch.device, log=print) -> Config:
    """The concrete configuration of a run: `timers` auto becomes epoch under --fast and phase otherwise;
    --fast becomes the on-device loader, channels_last, bf16 autocast and CUDA graphs (torch.compile
    reduce-overhead) on CUDA, and on a CPU the combination that measured fastest on this machine
    (choose_cpu_fast). Idempotent: a resolved configuration comes back unchanged."""
    timers = config.timers if config.timers != "auto" else ("epoch" if config.fast else "phase")
    if not config.fast:
        return config.replace(timers=timers)
    choice = CUDA_FAST if device.type == "cuda" else {"loader": "tensor", **choose_cpu_fast(config, log)}
    return config.replace(timers=timers, **choice)


def _cache_file() -> Path:
    return files.cache_dir() / "fast-choice.json"


def fast_cache_key(probe_batch: int, threads: int | None = None) -> str:
    threads = threads or torch.get_num_threads()
    return f"{results.cpu_name()} | torch {torch.__version__} | {threads} threads | batch {probe_batch}"


def time_steps(setting: dict, batch_size: int, steps: int = 3, warmup: int = 1) -> float:
    """Median seconds of a ResNet-18 training step on the CPU for one setting, on random images."""
    model = resnet18().train()
    fmt = torch.channels_last if setting.get("channels_last") else torch.contiguous_format
    model = model.to(memory_format=fmt)
    step_model = model if setting.get("compile", "off") == "off" else torch.compile(model, dynamic=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = Step(step_model, optimizer, torch.device("cpu"),
                Precision(setting.get("channels_last", False), AMP_DTYPES[setting.get("amp", "off")]))
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


def choose_cpu_fast(config: Config, log=print) -> dict:
    """--fast's settings on this CPU (see cpu_fast_probe)."""
    return cpu_fast_probe(config, log)["choice"]


def cpu_fast_probe(config: Config, log=print, measure: bool = True) -> dict | None:
    """The measurement behind --fast on a CPU: eager steps with and without channels_last and bf16 autocast, then the
    fastest of those under torch.compile (where a C compiler exists), and keep the fastest. The choice
    depends on the CPU (bf16 halves the step on a CPU with AMX and doubles it on one without), so it is
    measured, once per CPU, torch version, thread count and probe batch, and cached in
    $LAB_CACHE/fast-choice.json (default ~/.cache/resnet-perf-lab). measure=False: the cached result or None."""
    probe_batch = min(config.batch_size, 32)
    key = fast_cache_key(probe_batch)
    cache = _cache_file()
    try:
        cached = json.loads(cache.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached or not measure:
        return cached.get(key)
    log(f"--fast on this CPU: measuring which settings make the step fastest (batch {probe_batch}, once; "
        f"cached in {cache})")
    step_s = {json.dumps(c): time_steps(c, probe_batch) for c in CPU_CANDIDATES}
    best = min(CPU_CANDIDATES, key=lambda c: step_s[json.dumps(c)])
    choice = {**best, "compile": "off"}
    if c_compiler() is not None:
        compiled = {**best, "compile": "default"}
        step_s[json.dumps(compiled)] = time_steps(compiled, probe_batch, warmup=2)
        if step_s[json.dumps(compiled)] < step_s[json.dumps(best)]:
            choice = compiled
    log("--fast on this CPU: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in step_s.items())
        + f" -> {json.dumps(choice)}")
    cached[key] = {"choice": choice, "step_s": step_s}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with files.atomic_write(cache) as f:
            f.write(json.dumps(cached, indent=1))
    except OSError as exc:  # a read-only home only costs the measurement next time
        log(f"could not cache the --fast choice in {cache}: {exc}")
    return cached[key]


# --- a whole run ----------------------------------------------------------------------------------

def check_distributed(config: Config, device: torch.device, ctx: dist.Context) -> None:
    """What several processes cannot do, refused with one line before any work."""
    if config.sync_bn and device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs only on CUDA devices")
    if ctx.world_size > 1 and config.fast:
        raise ConfigError("--fast with several processes is not supported: its CUDA graphs and on-device metrics "
                          "are built for one process; drop --fast or use --nproc-per-node 1")


def build_loaders(config: Config, device: torch.device, log=print):
    train_set = data.load_dataset(config, train=True, log=log)
    shard = {"rank": dist.current().rank, "world_size": dist.current().world_size}
    if config.loader == "tensor":
        train_loader = TensorLoader.from_dataset(train_set, config.batch_size, device, train=True, seed=config.seed,
                                                 augment=config.augment, **shard)
    else:
        train_loader = data.make_loader(train_set, config, device, train=True, **shard)
    test_loader = None
    if config.evaluate:
        test_loader = data.make_loader(data.load_dataset(config, train=False, log=log),
                                       config.replace(workers=min(config.workers, 2)), device, train=False)
    return train_loader, test_loader


def make_scaler(config: Config, device: torch.device):
    """The fp16 GradScaler (CUDA with amp fp16 only; bf16 and fp32 need none); saved with every checkpoint."""
    return torch.amp.GradScaler(device.type) if config.amp == "fp16" and device.type == "cuda" else None


class Trainer:
    """What a run trains with: device, model (and its compiled form), optimizer, loaders, precision.
    `config` is the resolved configuration (see resolve_fast): the one the records carry."""

    def __init__(self, config: Config, log=None):
        log = log or (lambda msg: print(msg, file=sys.stderr))
        self.device = resolve_device(config.device)
        self.config = config = resolve_fast(config.validate(), self.device, log)
        self.dist = dist.current()
        check_distributed(config, self.device, self.dist)
        if config.threads or self.dist.distributed:
            torch.set_num_threads(dist.threads_per_rank(config.threads))
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
        """The exposed gradient communication of an epoch (run() measures it after a run's last epoch, with
        as many probe pairs as the epoch has batches, 2 to 5: the probes cost steps), measured: the same step (forward + backward, no
        optimizer step) on a fixed batch timed with DDP's all-reduce and without it (`no_sync`), in
        alternating order, `probes` pairs; weights, buffers and gradients are restored afterwards.
        comm_raw_s = the median pair difference x `batches` (kept even when negative: within noise),
        comm_s = max(0, comm_raw_s), comm_low_s/comm_high_s = the smallest/largest pair difference x batches."""
        from contextlib import nullcontext

        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        n = self.config.batch_size
        fmt = torch.channels_last if self.config.channels_last else torch.contiguous_format
        x = torch.randn(n, 3, 32, 32, device=self.device).to(memory_format=fmt)
        y = torch.randint(0, 10, (n,), device=self.device)
        criterion = nn.CrossEntropyLoss()
        diffs = []
        for i in range(probes):
            took = {}
            for mode in (("sync", "local") if i % 2 == 0 else ("local", "sync")):
                start = now(self.device)
                with self.ddp.no_sync() if mode == "local" else nullcontext():
                    with torch.autocast(self.device.type, dtype=self.precision.amp_dtype,
                                        enabled=self.precision.amp_dtype is not None):
                        loss = criterion(self.ddp(x), y)
                    loss.backward()
                took[mode] = now(self.device) - start
                self.optimizer.zero_grad(set_to_none=True)
            diffs.append(took["sync"] - took["local"])
        self.model.load_state_dict(state)
        raw = statistics.median(diffs) * batches
        return {"comm_s": max(0.0, raw), "comm_raw_s": raw, "comm_low_s": min(diffs) * batches,
                "comm_high_s": max(diffs) * batches}

    def batches(self, max_batches=None) -> int:
        cap = max_batches or self.config.max_batches
        return len(self.train_loader) if cap is None else min(len(self.train_loader), cap)

    def train_epoch(self, epoch: int, progress=False, max_batches=None, on_step=None, run_id: str = "") -> dict:
        """One epoch; each step is reported to lab.progress (by rank 0), to a tqdm bar on stderr when
        `progress`, and then to `on_step()` (a profiler's step)."""
        seed_epoch(self.config, epoch, self.train_loader)
        c, n = self.config, self.batches(max_batches)
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

        try:
            return train_one_epoch(self.step, self.train_loader, n, c.timers, step)
        finally:
            bar.close()


@dataclass
class Progress:
    """How far a run got, for the line an interruption prints: `epoch` is the epoch being trained (None
    between epochs), `saved` the last epoch whose record and checkpoint are written (0: none; from the
    checkpoint when resumed; without a checkpoint, the last epoch whose record is written)."""

    epoch: int | None = None
    saved: int = 0


def interruption_message(signum: int, track: Progress, config: Config, results_dir=None) -> str:
    """One line: which signal, where it hit, what is kept and how to go on."""
    name = signal.Signals(signum).name
    where = (f"during epoch {track.epoch}" if track.epoch else f"after epoch {track.saved}" if track.saved
             else "before the first epoch")
    done = "epoch 1" if track.saved == 1 else f"epochs 1-{track.saved}"
    if not track.saved:
        tail = "no epoch finished, nothing to resume; run the command again to start over"
    elif config.checkpoint:
        what = "records and checkpoint" if results_dir is not None else "checkpoint"
        tail = (f"{done} {'is' if track.saved == 1 else 'are'} saved ({what}); run the same command with --resume "
                "to continue")
    elif results_dir is not None:
        tail = (f"the records of {done} are in {Path(results_dir) / 'records.jsonl'}; without a checkpoint "
                "(--checkpoint '') the run cannot be resumed")
    else:
        tail = f"{done} finished but nothing was saved (no --checkpoint, no --results)"
    return f"interrupted by {name} {where}: {tail}"


def run(config: Config, results_dir=None, progress=False, log=None, track: Progress | None = None):
    """Train `config.epochs` epochs and yield one record per epoch (and append them, with the per-batch
    records, to `results_dir/records.jsonl` and `results_dir/batches.jsonl` when given). `track` (a
    Progress) is kept up to date for the caller's message when a signal interrupts the run.

    Under torchrun every rank trains its shard; after each epoch rank 0 gathers every rank's record and
    writes them all (one per rank, each with the slowest rank's epoch time) and the checkpoint: no two
    processes write the same file. The record of an epoch is written before its checkpoint; a resumed run
    keeps its run id and first drops any record of the epochs it is about to train again, so an
    interruption between the two never leaves a duplicate. A checkpoint records the data's fingerprint and the
    fp16 GradScaler's state; resuming on other data is refused, the scaler's state is restored."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    track = track if track is not None else Progress()
    config.validate()
    ctx = dist.init(resolve_device(config.device).type)
    device = resolve_device(config.device)
    config = resolve_fast(config, device, log)
    check_distributed(config, device, ctx)
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
        track.saved = state["epoch"]
    trainer = Trainer(config, log)
    fingerprint = data.fingerprint(config) if config.checkpoint else None  # the data exists once the Trainer is built
    start, run_id = 1, dist.broadcast(results.new_run_id(config))
    if state is not None:
        check_same_data(state, fingerprint, config.checkpoint)
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        restore_scaler(trainer.precision.scaler, state)
        start, run_id = state["epoch"] + 1, state.get("run_id") or run_id
        log(f"resumed from {config.checkpoint} after epoch {state['epoch']}")
        if results_dir is not None and ctx.main:
            results.drop_epochs(results_dir, run_id, start)
    prov = results.provenance(config, trainer.device)
    where = {"rank": ctx.rank, "world_size": ctx.world_size, "global_batch_size": config.batch_size * ctx.world_size,
             "backend": ctx.backend or None, "threads": torch.get_num_threads()}
    for epoch in range(start, config.epochs + 1):
        track.epoch = epoch
        stats = trainer.train_epoch(epoch, progress=progress and ctx.main, run_id=run_id)
        batches = stats["batches"]
        metrics = {**stats, **where, "epoch": epoch, "warmup": epoch == start,
                   "status": "diverged" if stats["diverged"] else "ok"}
        if ctx.world_size > 1 and not stats["diverged"] and epoch == config.epochs:  # once a run: probes cost steps
            metrics.update(trainer.measure_comm(len(batches), probes=min(5, max(2, len(batches)))))
        if trainer.test_loader is not None and not stats["diverged"] and ctx.main:
            metrics.update(evaluate(trainer.model, trainer.test_loader, trainer.device, config.max_batches))
        record = results.make_record(config, metrics, prov, run_id)
        ranks = dist.gather((record, batches))
        slowest = max(r["total_s"] for r, _ in ranks)
        for r, _ in ranks:
            r["slowest_total_s"] = slowest
        diverged = any(r["status"] == "diverged" for r, _ in ranks)
        if results_dir is not None and ctx.main:
            results.write_epoch(results_dir, ranks)
        if config.checkpoint and not diverged and ctx.main:
            save_checkpoint(config.checkpoint, trainer.model, trainer.optimizer, epoch, config, run_id, ctx.world_size,
                            fingerprint, trainer.precision.scaler)
        if not diverged:
            track.epoch, track.saved = None, epoch
        yield ranks[ctx.rank][0]
        if diverged:
            log(f"loss became {stats['loss']} in epoch {epoch}: the run diverged and stops here "
                f"(lr={config.lr}, optimizer={config.optimizer})")
            return
