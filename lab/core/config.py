"""One configuration object for a training run, built from CLI flags or papermill parameters, validated once and
copied into every record the run writes.

Every input is declared once, as a `Spec` (valid values, meaning, flag): the Config's fields (`FIELDS`),
`PARAMETERS` (notebook parameters and the profile entries that feed them), `OPTIONS` (CLI flags that are not
fields) and `PROFILE` (a profile's own settings). Validation, `train`'s flags (`add_config_flags`; `to_argv` writes
a Config back as them), the notebooks' `check_parameters` and docs/troubleshooting.md's `ranges_table()` all use them.
"""
from __future__ import annotations

import argparse
import dataclasses
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

# Upper bounds used more than once (each Spec's `why` says the reason; docs/troubleshooting.md lists them).
BATCH_MAX = 8192
WORKERS_MAX = 128
PROCESSES_MAX = 1024
SYNTHETIC_FILE_MAX = 50_000
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
    """One input, declared once: its valid values, what it means and its flag. kind: int, float (finite), bool,
    choice, path, text or dict; `low`..`high` inclusive (`below`: `high` excluded); `none`: None is allowed;
    `many`: a non-empty list of at most LIST_MAX distinct such values; `why`: the reason for the bounds
    (docs/troubleshooting.md); `help`: its meaning (the flag's help, the notebook parameter's description)."""

    kind: str
    low: float | None = None
    high: float | None = None
    below: bool = False
    choices: tuple = ()
    none: bool = False
    many: bool = False
    empty: bool = True            # text: "" allowed
    why: str = ""
    help: str = ""                # what the input means (a `train` flag's help, a notebook parameter's comment)
    flags: tuple = ()             # `train`'s flag names where not `--` + the name with dashes; ("",): no flag

    def describe(self) -> str:
        what = {"int": f"int in [{_num(self.low)}, {_num(self.high)}]",
                "float": f"finite float in [{_num(self.low)}, {_num(self.high)}{')' if self.below else ']'}",
                "choice": ("" if self.many else "one of ") + ", ".join(self.choices),
                "path": f"a path (non-empty, at most {PATH_MAX} characters, no control characters)",
                "text": f"{'' if self.empty else 'non-empty '}text (at most {LABEL_MAX} printable characters)",
                }.get(self.kind, self.kind)
        if self.many:
            what = f"a non-empty list of distinct {'values from ' if self.kind == 'choice' else ''}{what}"
        return what + (" or None" if self.none else "")

    def ok(self, value) -> bool:
        if value is None and self.none:
            return True
        if self.many:
            return (isinstance(value, (list, tuple)) and 0 < len(value) <= LIST_MAX
                    and all(self._one(v) for v in value) and len({(type(v), v) for v in value}) == len(value))
        return self._one(value)

    def _one(self, value) -> bool:
        kind = self.kind
        if kind in ("int", "float"):  # exact comparisons: no overflow for a huge int; NaN and inf fall outside
            number = int if kind == "int" else (int, float)
            return (isinstance(value, number) and not isinstance(value, bool) and self.low <= value <= self.high
                    and not (self.below and value >= self.high))
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


def _int(low, high, why="", none=False, many=False, help="", flags=()):
    return Spec("int", low, high, none=none, many=many, why=why, help=help, flags=flags)


def _path(help="", none=False):
    return Spec("path", none=none, help=help)


def _bool(help="", flags=()):
    return Spec("bool", help=help, flags=flags)


def _choice(choices, help="", many=False):
    return Spec("choice", choices=choices, many=many, help=help)


def setting(default, spec: Spec):
    """A Config field: its default and its Spec (valid values, help, flag), in one place."""
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


@dataclass
class Config:
    """Every setting of a training run, each declared once: its default and its Spec (valid values, the help of
    its `train` flag, the flag's name where the lab's differs). `FIELDS` and the flags are derived from these."""

    # the lab's own flags
    lr: float = setting(0.1, Spec("float", 1e-12, 1e12, help="learning rate",
                                  why="smaller leaves float32 weights unchanged; larger only diverges"))
    workers: int = setting(2, _int(0, WORKERS_MAX, "DataLoader worker processes; beyond the cores they only wait",
                                   help="DataLoader workers"))
    epochs: int = setting(5, _int(1, 10_000, "`--epoch`; keeps the per-epoch seed far inside torch's range",
                                  help="total number of epochs; with --resume, training continues up to it",
                                  flags=("--epoch",)))
    data: str = setting("data", _path("data folder"))
    resume: bool = setting(False, _bool("resume from --checkpoint", flags=("--resume", "-r")))
    device: str = setting("auto", _choice(DEVICES, "where to train (--gpu: the same as --device cuda)"))
    batch_norm: bool = setting(True, _bool("ResNet-18 without batch norm", flags=("--disable_batch_norm",)))
    optimizer: str = setting("sgd", _choice(OPTIMIZERS, "the optimizer"))
    # beyond the lab
    dataset: str = setting("cifar10", _choice(DATASETS, "real CIFAR-10, or synthetic data in the CIFAR-10 file format"))
    batch_size: int = setting(128, _int(1, BATCH_MAX, "per process; ResNet-18 keeps ~18 MiB of fp32 activations per "
                                                      "image: 8,192 images ~ 140 GiB, the largest GPU's memory",
                                        help="images per batch (per process)"))
    max_batches: int | None = setting(None, _int(1, 1_000_000, "a cap per epoch (CIFAR-10 at batch 1 has 50,000 "
                                                 "batches)", none=True, help="cap on batches per epoch, and on "
                                                 "evaluation batches (tiny runs)"))
    seed: int = setting(0, _int(0, 2**31 - 1, "each epoch seeds torch with seed x 100,003 + epoch (< 2^48; "
                                              "torch.manual_seed takes < 2^64), and so does the DistributedSampler",
                                help="seed of every epoch's randomness"))
    weight_decay: float = setting(5e-4, Spec("float", 0.0, 1.0, why="L2 penalty per step", help="L2 penalty"))
    momentum: float = setting(0.9, Spec("float", 0.0, 1.0, below=True, help="SGD momentum (both SGD variants)",
                                        why="SGD momentum; 1 or more never forgets a gradient"))
    loader: str = setting("torch", _choice(LOADERS, "torch: the lab's DataLoader; tensor: the on-device batched "
                                                    "loader"))
    persistent_workers: bool = setting(False, _bool(
        "keep the DataLoader workers alive between epochs (their start-up is paid once per run, not every epoch); "
        "ignored, and recorded as off, with 0 workers or the on-device loader"))
    prefetch_factor: int | None = setting(None, _int(
        1, 64, "batches each DataLoader worker loads ahead; more only holds memory", none=True,
        help="batches each DataLoader worker loads ahead (default: torch's, 2); ignored, and recorded as None, with 0 "
             "workers or the on-device loader"))
    channels_last: bool = setting(False, _bool("channels_last memory format (model and batches)"))
    amp: str = setting("off", _choice(AMP, "autocast dtype"))
    compile: str = setting("off", _choice(COMPILE, "torch.compile mode (off: eager)"))
    fast: bool = setting(False, _bool(
        "the fastest honest step: on-device loader, channels_last, bf16 autocast and CUDA graphs on CUDA (on a CPU, "
        "the combination measured fastest there), metrics kept on the device, one clock per epoch"))
    timers: str = setting("auto", _choice(TIMERS, "phase: load/train clocks around every batch; epoch: one clock per "
                                                  "epoch, no host sync per step; auto: epoch with --fast, else phase"))
    augment: bool = setting(True, _bool("train without RandomCrop/RandomHorizontalFlip (equivalence checks)",
                                        flags=("--no-augment",)))
    threads: int | None = setting(None, _int(1, 1024, "torch threads per process", none=True, help="torch threads "
                                             "per process (default: torch's, or the cores shared among the ranks)"))
    sync_bn: bool = setting(False, _bool("SyncBatchNorm across ranks (CUDA only)"))
    cudnn_benchmark: bool = setting(True, _bool(
        "turn cudnn.benchmark off (on by default on CUDA: the shapes are fixed, so cuDNN's autotuning in the first "
        "steps picks the fastest convolutions; it does nothing on a CPU)", flags=("--no-cudnn-benchmark",)))
    deterministic: bool = setting(False, _bool(
        "deterministic algorithms only (torch.use_deterministic_algorithms; on CUDA also cudnn.deterministic and "
        "CUBLAS_WORKSPACE_CONFIG=:4096:8)"))
    evaluate: bool = setting(False, _bool("test loss/top-1 after each epoch (untimed)"))
    checkpoint: str | None = setting("checkpoints/ckpt.pt", _path("checkpoint file; '' for none", none=True))
    synthetic_train: int = setting(50_000, _int(1, 5 * SYNTHETIC_FILE_MAX, "five batch files of at most 50,000 "
                                                "images, each generated at once (~3 GB of work)",
                                                help="synthetic training images"))
    synthetic_test: int = setting(10_000, _int(1, SYNTHETIC_FILE_MAX, "one batch file", help="synthetic test images"))
    experiment: str = setting("train", Spec("text", empty=False, help="label of the records"))
    tag: str = setting("", Spec("text", help="label of this setting in the records"))
    extra: dict = setting({}, Spec("dict", flags=("",)))  # provenance a part adds (C3's best count, the block)

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
        unknown = sorted(set(values) - set(FIELDS), key=str)
        if unknown:
            raise ConfigError(f"unknown configuration field(s): {', '.join(map(show, unknown))}")
        return cls(**values).validate()

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes).validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS: dict[str, Spec] = {f.name: f.metadata["spec"] for f in fields(Config)}  # every field's Spec, in order


def _like(name: str, **changes) -> Spec:
    """A Config field's Spec with another help (a notebook parameter's meaning) or bounds."""
    return dataclasses.replace(FIELDS[name], **changes)


# Notebook parameters (and so profile entries): the Config's own where they share a name, and the rest. The
# help is the parameter's meaning in every notebook that has it (a part's `parameters` name the ones it has).
PARAMETERS: dict[str, Spec] = {
    "results_dir": _path("the report folder the records go to (a report run passes its own)"),
    "data": _path("the CIFAR-10 root; synthetic data goes under data/synthetic"),
    "figures_dir": _path("PNG and SVG copies of every figure"),
    "profile": Spec("text", empty=False, help="the profile's name, shown in the header"),
    "dataset": _choice(("auto",) + DATASETS, "auto: CIFAR-10 if present or downloadable, else synthetic (said "
                                             "loudly); cifar10; synthetic"),
    "device": _like("device", help="auto: cuda where available, else cpu"),
    "batch_size": _like("batch_size", help="images per batch"),
    "epochs": _like("epochs", help="epochs per run (the first is the warm-up; 4 steady epochs let the rule compare "
                                   "two settings)"),
    "max_batches": _like("max_batches", help="batches per epoch (None: whole epochs)"),
    "lr": FIELDS["lr"], "seed": FIELDS["seed"],
    "evaluate": _like("evaluate", help="test loss/top-1 after each epoch (untimed): what convergence is judged on"),
    "workers": _like("workers", none=True, why="C4-C9: None takes the best count C3 found",
                     help="DataLoader workers (None: C3's best count, where the part trains with it)"),
    "worker_step": _int(1, WORKERS_MAX, "C3's sweep: 0, step, 2 x step, ... up to worker_cap",
                        help="the sweep's step: 0, step, 2 x step, ... up to worker_cap"),
    "worker_cap": _int(0, WORKERS_MAX, "C3's sweep", help="the sweep's last count"),
    "worker_counts": _int(0, WORKERS_MAX, "C3: an explicit list instead of the sweep", none=True, many=True,
                          help="an explicit list of counts instead of the sweep (e.g. [0, 1, 2, 4])"),
    "extra_rounds_s": _int(0, 7 * 24 * 3600, "seconds: 0 never looks again",
                           help="seconds a part may spend on further interleaved rounds where a claim is still open "
                                "(0: none; docs/measuring.md)"),
    "extra_rounds_target": Spec("float", 0.0, 10.0, why="a fraction: 0.2 is 20 %",
                                help="further rounds only while a claim could not have seen a difference this large"),
    "profile_steps": _int(1, 1000, "steps under torch.profiler (C4, C8)",
                          help="active steps under torch.profiler (after 1 wait + 1 warm-up step)"),
    "devices": _choice(("cuda", "cpu"), "the devices compared", many=True),
    "cpu_max_batches": _like("max_batches", why="C5: cap on the CPU run's batches", help="cap on the CPU run's "
                             "batches per epoch (a whole CPU epoch takes 15-20 min)"),
    "optimizers": _choice(OPTIMIZERS, "the optimizers compared", many=True),
    "max_autotune": _bool("add torch.compile max-autotune on CUDA (its autotuning takes minutes)"),
    "compile_settings": _bool("the compiled settings (torch.compile; C8's fast where it compiles; C10's AOTInductor): "
                              "a minute or more each"),
    "inductor_settings": _bool("C10's settings inductor compiles at batch 1 (Inductor frozen fp32 and bf16, int8): "
                               "seconds each"),
    "test_images": _int(1, 10_000, "C10: CIFAR-10's test set has 10,000 images", none=True,
                        help="test images each converted model is evaluated on (None: all)"),
    "latency_blocks": _int(2, 10_000, "C10: blocks per setting", help="blocks of batch-1 calls per setting, "
                           "interleaved; a block's median is one sample of the comparison rule"),
    "latency_calls": _int(1, 100_000, "C10: calls per block", help="timed batch-1 calls per block (after 5 warm-up "
                          "calls)"),
    "throughput_batches": _int(1, BATCH_MAX, "C10: batch sizes", many=True,
                               help="batch sizes of the throughput and peak-memory table"),
    "explain_compile": _bool("Q5: one step compiled apart, explained and timed against eager (a minute or more)"),
    "process_counts": _int(1, PROCESSES_MAX, "C9: processes per launch", many=True,
                           help="data-parallel processes per launch (more than the node has: shown as not "
                                "available)"),
    "modes": _choice(("strong", "weak"), "strong: the same global batch; weak: the same per-process batch",
                     many=True),
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
    "peak_probe": Spec("choice", choices=("full", "tiny", "off"), help="the machine's peaks at the report's start: "
                       "full (about 20 s on a CPU, cached per machine), tiny (the test suite's sizes) or off"),
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
    """`check_parameters` over the names of `namespace` that are parameters (a notebook's `globals()`)."""
    return check_parameters({k: v for k, v in namespace.items() if k in PARAMETERS})


def ranges_table() -> str:
    """The table of every numeric input's valid values in docs/troubleshooting.md (a test keeps the two equal)."""
    rows = {}
    for group, specs in (("config", FIELDS), ("notebooks, profiles", PARAMETERS), ("cli", OPTIONS),
                         ("profiles", PROFILE)):
        for name, spec in specs.items():
            if spec.kind not in ("int", "float"):
                continue
            if group == "config":
                where = ["Config", f"`train {flag(name)}`"]
            elif group == "cli":
                where = [f"`{'bench' if name in ('steps', 'repeats') else 'train'} --{name.replace('_', '-')}`"]
            else:
                where = [group]
            rows.setdefault((name, spec.describe()), [spec, []])[1].extend(where)
    return "\n".join(["| input | where | valid values | why the bounds |", "|---|---|---|---|"]
                     + [f"| `{name}` | {', '.join(where)} | {described} | {spec.why} |"
                        for (name, described), (spec, where) in rows.items()])


# --- the Config as `train` flags ------------------------------------------------------------------------

# A field's flags are `--` + its name with dashes unless its Spec names the lab's own (`--epoch`, `-r`); a bool
# that defaults to True gets a flag that turns it off; `extra` has no flag.
NO_FLAG = tuple(name for name, spec in FIELDS.items() if spec.flags == ("",))


def flag(name: str) -> str:
    """A field's `train` flag."""
    return (FIELDS[name].flags or ("--" + name.replace("_", "-"),))[0]


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
        text = spec.help + ("" if spec.kind == "bool" else " (default %(default)s)")
        if spec.kind == "bool":
            parser.add_argument(*(spec.flags or (flag(name),)), dest=name,
                                action="store_false" if default else "store_true", help=text)
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
