"""One configuration object for a training run.

It is built from CLI flags or from papermill parameters, validated once, and copied into
every record the run writes, so each number in a report says exactly how it was made.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

OPTIMIZERS = ("sgd", "sgd-nesterov", "adagrad", "adadelta", "adam")
DEVICES = ("auto", "cpu", "cuda")
DATASETS = ("cifar10", "synthetic")
LOADERS = ("torch", "tensor")
AMP = ("off", "bf16", "fp16")
COMPILE = ("off", "default", "reduce-overhead", "max-autotune")
TIMERS = ("auto", "phase", "epoch")  # auto: epoch with --fast, else phase


_TYPES = {"float": (int, float), "int": (int,), "bool": (bool,), "str": (str,), "dict": (dict,),
          "int | None": (int, type(None)), "str | None": (str, type(None))}


class LabError(Exception):
    """An error the user can fix; the CLI prints its message on one line and exits with `exit_code`."""

    exit_code = 1


class ConfigError(LabError):
    """A bad value in the configuration (a usage error)."""

    exit_code = 2


@dataclass
class Config:
    # the lab's own flags
    lr: float = 0.1
    workers: int = 2
    epochs: int = 5
    data: str = "data"
    resume: bool = False
    device: str = "auto"
    batch_norm: bool = True
    optimizer: str = "sgd"
    # beyond the lab
    dataset: str = "cifar10"
    batch_size: int = 128
    max_batches: int | None = None
    seed: int = 0
    weight_decay: float = 5e-4
    momentum: float = 0.9
    loader: str = "torch"            # torch: the lab's DataLoader; tensor: lab.tensor_loader on the device
    channels_last: bool = False
    amp: str = "off"                 # autocast dtype
    compile: str = "off"             # torch.compile mode
    fast: bool = False               # lab.train.resolve_fast picks loader, precision and compile mode
    timers: str = "auto"             # phase: load/train clocks every batch; epoch: one clock per epoch
    augment: bool = True             # the lab's RandomCrop + RandomHorizontalFlip (off: equivalence checks)
    threads: int | None = None       # torch threads per process; None: the default (shared among ranks)
    sync_bn: bool = False            # SyncBatchNorm across ranks (CUDA only, as in PyTorch)
    evaluate: bool = False
    checkpoint: str | None = "checkpoints/ckpt.pt"
    synthetic_train: int = 50_000
    synthetic_test: int = 10_000
    experiment: str = "train"
    tag: str = ""
    extra: dict = field(default_factory=dict)

    def validate(self) -> "Config":
        """Check every field's type and range; raise ConfigError naming the first problem."""
        for f in fields(self):
            value = getattr(self, f.name)
            allowed = _TYPES[f.type]
            if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
                raise ConfigError(f"{f.name} must be {f.type.replace(' | None', ' or None')}, "
                                  f"got {value!r} ({type(value).__name__})")
        for name, choices in (("optimizer", OPTIMIZERS), ("device", DEVICES),
                              ("dataset", DATASETS), ("loader", LOADERS),
                              ("amp", AMP), ("compile", COMPILE), ("timers", TIMERS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
        for name, low in (("lr", 0), ("epochs", 1), ("batch_size", 1), ("max_batches", 1),
                          ("workers", 0), ("weight_decay", 0), ("momentum", 0), ("threads", 1),
                          ("synthetic_train", 1), ("synthetic_test", 1)):
            value = getattr(self, name)
            if value is None:
                continue
            if name == "lr" and value <= 0:
                raise ConfigError(f"lr must be > 0, got {value}")
            if value < low:
                raise ConfigError(f"{name} must be >= {low}, got {value}")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """Build from papermill parameters or a record; unknown names are a clear error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown configuration field(s): {', '.join(unknown)}")
        return cls(**values).validate()

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes).validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
