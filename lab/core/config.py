"""One configuration object for a training run.

It is built from CLI flags or from papermill parameters, validated once, and copied into
every record the run writes, so each number in a report says exactly how it was made.

Every input has its valid values declared here, once: `FIELDS` (the Config's fields), `PARAMETERS` (notebook
parameters, the profile entries that feed them), `OPTIONS` (CLI flags that are not fields) and `PROFILE` (a
profile's own settings). `Config.validate`, the CLI, the report runner's plan and the notebooks
(`check_parameters`) all check through these specs; docs/troubleshooting.md's ranges table is `ranges_table()`.

`train`'s flags are generated from `FIELDS` (`add_config_flags`), and `to_argv` writes any Config as those
flags (C9's launched processes get their Config that way): one mapping, both directions.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import unicodedata
from dataclasses import dataclass, field, fields

from .errors import ConfigError

OPTIMIZERS = ("sgd", "sgd-nesterov", "adagrad", "adadelta", "adam")
DEVICES = ("auto", "cpu", "cuda")
DATASETS = ("cifar10", "synthetic")
LOADERS = ("torch", "tensor")
AMP = ("off", "bf16", "fp16")
COMPILE = ("off", "default", "reduce-overhead", "max-autotune")
TIMERS = ("auto", "phase", "epoch")  # auto: epoch with --fast, else phase

# Upper bounds (docs/troubleshooting.md, "Valid values"): what a machine can hold, and seeds torch accepts.
SEED_MAX = 2**31 - 1          # per-epoch seed = seed * 100_003 + epoch < 2**48, inside torch.manual_seed's range
EPOCHS_MAX = 10_000
BATCH_MAX = 8192              # ResNet-18 keeps ~18 MiB of activations per image in fp32: 8192 images ~ 140 GiB
MAX_BATCHES_MAX = 1_000_000
WORKERS_MAX = 128
THREADS_MAX = 1024
PROCESSES_MAX = 1024
SYNTHETIC_FILE_MAX = 50_000   # images per synthetic batch file (generated at once, ~3 GB of float32 work)
PATH_MAX = 4096
LABEL_MAX = 200
LIST_MAX = 64


def show(value) -> str:
    """A value as it appears in a one-line message: its repr (control characters escaped), shortened."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        text = f"<an int of {value.bit_length()} bits>"
    return text if len(text) <= 80 else text[:77] + "..."


def _num(x) -> str:
    return f"{x:g}".replace("e+", "e") if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Spec:
    """The valid values of one input. kind: int, float (finite), bool, choice, path, text or dict; `low`..`high`
    inclusive (`below`: `high` excluded); `none`: None is allowed; `many`: a non-empty list of at most LIST_MAX
    distinct such values; `why`: the reason for the bounds (docs/troubleshooting.md)."""

    kind: str
    low: float | None = None
    high: float | None = None
    below: bool = False
    choices: tuple = ()
    none: bool = False
    many: bool = False
    empty: bool = True            # text: "" allowed
    why: str = ""

    def describe(self) -> str:
        if self.kind == "int":
            what = f"int in [{_num(self.low)}, {_num(self.high)}]"
        elif self.kind == "float":
            what = f"finite float in [{_num(self.low)}, {_num(self.high)}{')' if self.below else ']'}"
        elif self.kind == "choice":
            what = ("one of " if not self.many else "") + ", ".join(self.choices)
        elif self.kind == "path":
            what = f"a path (non-empty, at most {PATH_MAX} characters, no control characters)"
        elif self.kind == "text":
            what = f"{'' if self.empty else 'non-empty '}text (at most {LABEL_MAX} printable characters)"
        else:
            what = self.kind
        if self.many:
            what = f"a non-empty list of distinct values from {what}" if self.kind == "choice" else \
                f"a non-empty list of distinct {what}"
        return what + (" or None" if self.none else "")

    def ok(self, value) -> bool:
        if value is None and self.none:
            return True
        if self.many:
            if not isinstance(value, (list, tuple)) or not 0 < len(value) <= LIST_MAX:
                return False
            if not all(self._one(v) for v in value):
                return False
            return len({(type(v), v) for v in value}) == len(value)
        return self._one(value)

    def _one(self, value) -> bool:
        kind = self.kind
        if kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int,) if kind == "int" else (int, float)):
                return False
            try:
                number = float(value)
            except OverflowError:
                return False
            if not math.isfinite(number) or value < self.low or value > self.high:
                return False
            return not (self.below and value >= self.high)
        if kind == "bool":
            return isinstance(value, bool)
        if kind == "choice":
            return isinstance(value, str) and value in self.choices
        if kind == "path":
            return (isinstance(value, str) and 0 < len(value) <= PATH_MAX
                    and not any(unicodedata.category(c) == "Cc" for c in value))
        if kind == "text":
            return (isinstance(value, str) and len(value) <= LABEL_MAX and value.isprintable()
                    and (self.empty or value != ""))
        if kind == "dict":
            return isinstance(value, dict)
        raise AssertionError(f"unknown kind {kind}")

    def check(self, name: str, value, verb: str = "must be") -> None:
        """ConfigError, one line naming `name` and the value, unless `value` is valid."""
        if not self.ok(value):
            raise ConfigError(f"{name} {verb} {self.describe()}, got {show(value)}")


def _int(low, high, why="", none=False, many=False):
    return Spec("int", low, high, none=none, many=many, why=why)


PATH, BOOL = Spec("path"), Spec("bool")

FIELDS: dict[str, Spec] = {
    "lr": Spec("float", 1e-12, 1e12, why="smaller leaves float32 weights unchanged; larger only diverges"),
    "workers": _int(0, WORKERS_MAX, "DataLoader worker processes; beyond the cores they only wait"),
    "epochs": _int(1, EPOCHS_MAX, "`--epoch`; keeps the per-epoch seed far inside torch's range"),
    "data": PATH,
    "resume": BOOL,
    "device": Spec("choice", choices=DEVICES),
    "batch_norm": BOOL,
    "optimizer": Spec("choice", choices=OPTIMIZERS),
    "dataset": Spec("choice", choices=DATASETS),
    "batch_size": _int(1, BATCH_MAX, "per process; ResNet-18 keeps ~18 MiB of fp32 activations per image: "
                                     "8,192 images ~ 140 GiB, the largest GPU's memory"),
    "max_batches": _int(1, MAX_BATCHES_MAX, "a cap per epoch (CIFAR-10 at batch 1 has 50,000 batches)", none=True),
    "seed": _int(0, SEED_MAX, "each epoch seeds torch with seed x 100,003 + epoch (< 2^48; torch.manual_seed "
                              "takes < 2^64), and so does the DistributedSampler"),
    "weight_decay": Spec("float", 0.0, 1.0, why="L2 penalty per step"),
    "momentum": Spec("float", 0.0, 1.0, below=True, why="SGD momentum; 1 or more never forgets a gradient"),
    "loader": Spec("choice", choices=LOADERS),
    "channels_last": BOOL,
    "amp": Spec("choice", choices=AMP),
    "compile": Spec("choice", choices=COMPILE),
    "fast": BOOL,
    "timers": Spec("choice", choices=TIMERS),
    "augment": BOOL,
    "threads": _int(1, THREADS_MAX, "torch threads per process", none=True),
    "sync_bn": BOOL,
    "cudnn_benchmark": BOOL,
    "deterministic": BOOL,
    "evaluate": BOOL,
    "checkpoint": Spec("path", none=True),
    "synthetic_train": _int(1, 5 * SYNTHETIC_FILE_MAX, "five batch files of at most 50,000 images, each "
                                                       "generated at once (~3 GB of work)"),
    "synthetic_test": _int(1, SYNTHETIC_FILE_MAX, "one batch file"),
    "experiment": Spec("text", empty=False),
    "tag": Spec("text"),
    "extra": Spec("dict"),
}

# Notebook parameters (and so profile entries): the Config's own where they share a name, and the rest.
PARAMETERS: dict[str, Spec] = {
    "results_dir": PATH,
    "data": PATH,
    "figures_dir": PATH,
    "profile": Spec("text", empty=False),
    "dataset": Spec("choice", choices=("auto",) + DATASETS),
    **{name: FIELDS[name] for name in ("device", "batch_size", "epochs", "max_batches", "lr", "seed", "evaluate")},
    "workers": dataclasses.replace(FIELDS["workers"], none=True, why="C4-C9: None takes the best count C3 found"),
    "worker_step": _int(1, WORKERS_MAX, "C3's sweep: 0, step, 2 x step, ... up to worker_cap"),
    "worker_cap": _int(0, WORKERS_MAX, "C3's sweep"),
    "worker_counts": _int(0, WORKERS_MAX, "C3: an explicit list instead of the sweep", none=True, many=True),
    "profile_steps": _int(1, 1000, "steps under torch.profiler (C4, C8)"),
    "devices": Spec("choice", choices=("cuda", "cpu"), many=True),
    "cpu_max_batches": dataclasses.replace(FIELDS["max_batches"], why="C5: cap on the CPU run's batches"),
    "optimizers": Spec("choice", choices=OPTIMIZERS, many=True),
    "max_autotune": BOOL,
    "compile_settings": BOOL,
    "explain_compile": BOOL,
    "process_counts": _int(1, PROCESSES_MAX, "C9: processes per launch", many=True),
    "modes": Spec("choice", choices=("strong", "weak"), many=True),
}

# CLI flags that are not Config fields (argparse turns --nproc-per-node into nproc_per_node).
OPTIONS: dict[str, Spec] = {
    "nproc_per_node": _int(1, PROCESSES_MAX, "processes on this node: one per GPU (NCCL) or core (gloo)", none=True),
    "profile": Spec("path"),                       # `report --profile`: a name or a .yaml path
    "results": Spec("path", none=True),            # also `report --data`
    "out": Spec("path", none=True),
    "steps": _int(1, 100_000, "P2 batches per loop, P3 steps per setting", none=True),
    "repeats": _int(1, 1000, "P1 repeats, P2 pairs, P3 repeats", none=True),
}

# A profile's own settings (lab/profiles/*.yaml); common and notebooks hold PARAMETERS.
PROFILE: dict[str, Spec] = {
    "base": Spec("text", empty=False),
    "description": Spec("text"),
    "cell_timeout": _int(1, 7 * 24 * 3600, "seconds a notebook cell may run (a week at most)", none=True),
    "common": Spec("dict", none=True),
    "notebooks": Spec("dict", none=True),
}


def check_parameters(values: dict) -> dict:
    """Check notebook parameters against PARAMETERS: a ConfigError (one line naming the parameter and its value)
    for an unknown name or an invalid value; returns `values`."""
    for name, value in values.items():
        if name not in PARAMETERS:
            raise ConfigError(f"unknown parameter {show(name)}")
        PARAMETERS[name].check(name, value)
    return values


def check_namespace(namespace: dict) -> dict:
    """`check_parameters` over the names of `namespace` that are parameters: a notebook's set-up calls
    `check_namespace(globals())` before it uses them."""
    return check_parameters({k: v for k, v in namespace.items() if k in PARAMETERS})


def ranges_table() -> str:
    """The table of every numeric input's valid values in docs/troubleshooting.md (a test keeps the two equal)."""
    rows = {}
    for group, specs in (("config", FIELDS), ("notebooks", PARAMETERS), ("cli", OPTIONS), ("profile", PROFILE)):
        for name, spec in specs.items():
            if spec.kind not in ("int", "float"):
                continue
            if group == "config":
                where = ["Config", f"`train {flag(name)}`"]
            else:
                where = {"notebooks": ["notebooks, profiles"], "profile": ["profiles"],
                         "cli": [f"`{'bench' if name in ('steps', 'repeats') else 'train'} --"
                                 f"{name.replace('_', '-')}`"]}[group]
            rows.setdefault((name, spec.describe()), [spec, []])[1].extend(where)
    lines = ["| input | where | valid values | why the bounds |", "|---|---|---|---|"]
    for (name, described), (spec, where) in rows.items():
        lines.append(f"| `{name}` | {', '.join(where)} | {described} | {spec.why} |")
    return "\n".join(lines)


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
    loader: str = "torch"            # torch: the lab's DataLoader; tensor: lab.data.tensor_loader
    channels_last: bool = False
    amp: str = "off"                 # autocast dtype
    compile: str = "off"             # torch.compile mode
    fast: bool = False               # lab.engine.fast.resolve_fast picks loader, precision and compile mode
    timers: str = "auto"             # phase: load/train clocks every batch; epoch: one clock per epoch
    augment: bool = True             # the lab's RandomCrop + RandomHorizontalFlip (off: equivalence checks)
    threads: int | None = None       # torch threads per process; None: the default (shared among ranks)
    sync_bn: bool = False            # SyncBatchNorm across ranks (CUDA only, as in PyTorch)
    cudnn_benchmark: bool = True     # cuDNN picks its fastest convolutions for the fixed shapes (CUDA only)
    deterministic: bool = False      # torch.use_deterministic_algorithms (and cuBLAS's workspace on CUDA)
    evaluate: bool = False
    checkpoint: str | None = "checkpoints/ckpt.pt"
    synthetic_train: int = 50_000
    synthetic_test: int = 10_000
    experiment: str = "train"
    tag: str = ""
    extra: dict = field(default_factory=dict)

    def validate(self) -> "Config":
        """Check every field's type and range (FIELDS); raise ConfigError naming the first problem."""
        for f in fields(self):
            FIELDS[f.name].check(f.name, getattr(self, f.name))
        if self.resume and self.checkpoint is None:
            raise ConfigError("resume needs a checkpoint to resume from, got checkpoint None (--checkpoint '')")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """Build from papermill parameters or a record; unknown names are a clear error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names, key=str)
        if unknown:
            raise ConfigError(f"unknown configuration field(s): {', '.join(map(show, unknown))}")
        return cls(**values).validate()

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes).validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


assert set(FIELDS) == {f.name for f in fields(Config)}, "every Config field needs a spec in FIELDS"


# --- the Config as `train` flags ------------------------------------------------------------------------

# The lab's own flag names, kept verbatim where they are not `--` + the field's name with dashes; `extra` has
# no flag. Fields that default to True get a flag that turns them off.
FLAGS = {"epochs": ("--epoch",), "resume": ("--resume", "-r"), "batch_norm": ("--disable_batch_norm",),
         "augment": ("--no-augment",), "cudnn_benchmark": ("--no-cudnn-benchmark",)}
NO_FLAG = ("extra",)
HELP = {
    "lr": "learning rate", "workers": "DataLoader workers",
    "epochs": "total number of epochs; with --resume, training continues up to it",
    "data": "data folder", "resume": "resume from --checkpoint", "device": "where to train (--gpu: the same as "
    "--device cuda)", "batch_norm": "ResNet-18 without batch norm", "optimizer": "the optimizer",
    "dataset": "real CIFAR-10, or synthetic data in the CIFAR-10 file format",
    "batch_size": "images per batch (per process)", "max_batches": "cap on batches per epoch, and on evaluation "
    "batches (tiny runs)", "seed": "seed of every epoch's randomness", "weight_decay": "L2 penalty",
    "momentum": "SGD momentum (both SGD variants)",
    "loader": "torch: the lab's DataLoader; tensor: the on-device batched loader",
    "channels_last": "channels_last memory format (model and batches)", "amp": "autocast dtype",
    "compile": "torch.compile mode (off: eager)",
    "fast": "the fastest honest step: on-device loader, channels_last, bf16 autocast and CUDA graphs on CUDA (on "
            "a CPU, the combination measured fastest there), metrics kept on the device, one clock per epoch",
    "timers": "phase: load/train clocks around every batch; epoch: one clock per epoch, no host sync per step; "
              "auto: epoch with --fast, else phase",
    "augment": "train without RandomCrop/RandomHorizontalFlip (equivalence checks)",
    "threads": "torch threads per process (default: torch's, or the cores shared among the ranks)",
    "sync_bn": "SyncBatchNorm across ranks (CUDA only)",
    "cudnn_benchmark": "turn cudnn.benchmark off (on by default on CUDA: the shapes are fixed, so cuDNN's "
                       "autotuning in the first steps picks the fastest convolutions; it does nothing on a CPU)",
    "deterministic": "deterministic algorithms only (torch.use_deterministic_algorithms; on CUDA also "
                     "cudnn.deterministic and CUBLAS_WORKSPACE_CONFIG=:4096:8)",
    "evaluate": "test loss/top-1 after each epoch (untimed)",
    "checkpoint": "checkpoint file; '' for none", "synthetic_train": "synthetic training images",
    "synthetic_test": "synthetic test images", "experiment": "label of the records",
    "tag": "label of this setting in the records",
}


def flag(name: str) -> str:
    """A field's `train` flag."""
    return FLAGS.get(name, ("--" + name.replace("_", "-"),))[0]


def _none_if_empty(text: str) -> str | None:
    return text or None


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field (FIELDS), with its choices, type and default; `--gpu` as the lab's alias of
    `--device cuda`. Values are checked by Config.validate (config_from_args), through the same specs."""
    defaults = Config()
    for name, spec in FIELDS.items():
        if name in NO_FLAG:
            continue
        default = getattr(defaults, name)
        text = HELP[name] + ("" if spec.kind == "bool" else " (default %(default)s)")
        if spec.kind == "bool":
            action = "store_false" if default else "store_true"
            parser.add_argument(*FLAGS.get(name, (flag(name),)), dest=name, action=action, help=text)
            continue
        kind = {"int": int, "float": float}.get(spec.kind, _none_if_empty if spec.none else str)
        parser.add_argument(flag(name), dest=name, type=kind, default=default, help=text,
                            choices=spec.choices or None)
    parser.add_argument("--gpu", dest="device", action="store_const", const="cuda",
                        help="train on CUDA (the same as --device cuda)")


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config that `add_config_flags`' flags describe, validated (ConfigError: one line)."""
    return Config(**{name: getattr(args, name) for name in FIELDS if name not in NO_FLAG}).validate()


def to_argv(config: Config) -> list[str]:
    """`config` as `train` flags: parsing them gives `config` back (every field but `extra`). Values are
    written `--flag=value`, so that a value starting with '-' stays a value."""
    defaults, argv = Config(), []
    for name, spec in FIELDS.items():
        value = getattr(config, name)
        if name in NO_FLAG or value == getattr(defaults, name) and type(value) is type(getattr(defaults, name)):
            continue
        if spec.kind == "bool":
            argv.append(flag(name))
        elif value is None:
            argv.append(f"{flag(name)}=")  # only `checkpoint` has a default and None: '' means none
        else:
            argv.append(f"{flag(name)}={value!r}" if isinstance(value, float) else f"{flag(name)}={value}")
    return argv
