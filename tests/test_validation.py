"""Every input is validated through one path (lab.config's specs), found systematically with hypothesis:
generated Configs, `train` command lines and report profiles each end in a usable value or a one-line usage
error (ConfigError / SystemExit 2), never a traceback and never a silently accepted invalid value.

The bounds asserted here are docs/troubleshooting.md's ("Valid values"), written out again on purpose: the specs are
checked against the documentation, not against themselves."""
import contextlib
import io
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.cli import build_parser, check_train_args, main
from lab.core import config as cfg
from lab.core.config import PARAMETERS, Config, ConfigError
from lab.data.cifar10 import DataError
from lab.parts import c2_timing, c3_workers
from lab.report.runner import (
    NOTEBOOK_DIR,
    NOTEBOOKS,
    _plan_report,
    declared_parameters,
    load_profile,
)

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


# --- what "usable" means (the docs' ranges table) -----------------------------------------------------------

def number(v, low, high, below=False):
    return (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(float(v)) and low <= v <= high
            and not (below and v >= high))


def integer(v, low, high):
    return type(v) is int and low <= v <= high


def path(v):
    return isinstance(v, str) and 0 < len(v) <= 4096 and not any(ord(c) < 32 or ord(c) == 127 or 0x80 <= ord(c) < 0xa0
                                                                for c in v)


def text(v, empty=True):
    return isinstance(v, str) and len(v) <= 200 and v.isprintable() and (empty or v != "")


def distinct_list(v, ok):
    return isinstance(v, list) and 0 < len(v) <= 64 and all(ok(x) for x in v) and len(set(v)) == len(v)


def assert_usable(c: Config):
    assert number(c.lr, 1e-12, 1e12), c.lr
    assert number(c.momentum, 0, 1, below=True) and number(c.weight_decay, 0, 1)
    assert integer(c.epochs, 1, 10_000) and integer(c.batch_size, 1, 8192) and integer(c.workers, 0, 128)
    assert c.max_batches is None or integer(c.max_batches, 1, 1_000_000)
    assert c.threads is None or integer(c.threads, 1, 1024)
    assert integer(c.synthetic_train, 1, 250_000) and integer(c.synthetic_test, 1, 50_000)
    assert integer(c.seed, 0, 2**31 - 1)
    torch.Generator().manual_seed(c.seed * 100_003 + c.epochs)  # the per-epoch seed torch must accept
    for name, choices in (("optimizer", cfg.OPTIMIZERS), ("device", cfg.DEVICES), ("dataset", cfg.DATASETS),
                          ("loader", cfg.LOADERS), ("amp", cfg.AMP), ("compile", cfg.COMPILE), ("timers", cfg.TIMERS)):
        assert getattr(c, name) in choices
    for name in ("resume", "batch_norm", "channels_last", "fast", "augment", "sync_bn", "evaluate"):
        assert type(getattr(c, name)) is bool
    assert path(c.data) and (c.checkpoint is None or path(c.checkpoint))
    assert not (c.resume and c.checkpoint is None)  # nothing to resume from
    assert text(c.experiment, empty=False) and text(c.tag) and isinstance(c.extra, dict)


USABLE_PARAMETER = {
    "dataset": lambda v: v in ("auto", "cifar10", "synthetic"),
    "device": lambda v: v in ("auto", "cpu", "cuda"),
    "batch_size": lambda v: integer(v, 1, 8192),
    "epochs": lambda v: integer(v, 1, 10_000),
    "max_batches": lambda v: v is None or integer(v, 1, 1_000_000),
    "cpu_max_batches": lambda v: v is None or integer(v, 1, 1_000_000),
    "lr": lambda v: number(v, 1e-12, 1e12),
    "seed": lambda v: integer(v, 0, 2**31 - 1),
    "workers": lambda v: v is None or integer(v, 0, 128),
    "evaluate": lambda v: type(v) is bool,
    "max_autotune": lambda v: type(v) is bool,
    "worker_step": lambda v: integer(v, 1, 128),
    "worker_cap": lambda v: integer(v, 0, 128),
    "worker_counts": lambda v: v is None or distinct_list(v, lambda x: integer(x, 0, 128)),
    "profile_steps": lambda v: integer(v, 1, 1000),
    "devices": lambda v: distinct_list(v, lambda x: x in ("cuda", "cpu")),
    "optimizers": lambda v: distinct_list(v, lambda x: x in cfg.OPTIMIZERS),
    "process_counts": lambda v: distinct_list(v, lambda x: integer(x, 1, 1024)),
    "modes": lambda v: distinct_list(v, lambda x: x in ("strong", "weak")),
    "results_dir": path, "data": path, "figures_dir": path,
    "profile": lambda v: text(v, empty=False),
}


def one_line(message: str) -> str:
    assert message and "\n" not in message and "\r" not in message, repr(message)
    return message


def report_count(name, counts, minimum):
    print(f"{name}: {sum(counts.values())} hypothesis cases tried: {dict(counts)}")
    assert sum(counts.values()) >= minimum, counts


# --- generated values ------------------------------------------------------------------------------------

CHOICE_WORDS = sorted(set(cfg.OPTIMIZERS + cfg.DEVICES + cfg.DATASETS + cfg.LOADERS + cfg.AMP + cfg.COMPILE
                          + cfg.TIMERS + ("strong", "weak", "auto")))
EDGES = [0, 1, -1, 2, 127, 128, 129, 8192, 8193, 10_000, 10_001, 50_000, 50_001, 250_000, 250_001, 1_000_000,
         1_000_001, 2**31 - 1, 2**31, 2**63, -(2**63), 0.0, -0.0, 1e-12, 1e-13, 1e12, 1.1e12, 0.9, 0.999999, 1.0,
         5e-324, 1.7e308, float("nan"), float("inf"), float("-inf")]
safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24)
any_value = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EDGES), st.integers(), st.integers(-(2**200), 2**200),
    st.floats(), st.floats(min_value=-10, max_value=10), safe_text, st.sampled_from(CHOICE_WORDS),
    st.lists(st.one_of(st.integers(-3, 200), st.sampled_from(CHOICE_WORDS)), max_size=4),
    st.dictionaries(safe_text, st.integers(), max_size=2))
DEFAULTS = Config().to_dict()


@st.composite
def config_values(draw):
    """A valid Config's values with some fields replaced by anything, and sometimes a name that is no field."""
    values = {k: v for k, v in DEFAULTS.items() if draw(st.booleans())}
    for name in draw(st.lists(st.sampled_from(sorted(DEFAULTS)), max_size=3)):
        values[name] = draw(any_value)
    if draw(st.integers(0, 9)) == 0:
        values[draw(safe_text)] = draw(any_value)
    return values


def test_generated_configs_are_usable_or_one_line_errors():
    counts = Counter()

    @settings(max_examples=1500, **SETTINGS)
    @given(config_values())
    def check(values):
        try:
            config = Config.from_dict(values)
        except ConfigError as exc:
            one_line(str(exc))
            counts["refused"] += 1
            return
        assert_usable(config)
        assert_usable(config.replace())  # and stays so
        counts["valid"] += 1

    check()
    report_count("Config", counts, 1000)
    assert counts["valid"] >= 50 and counts["refused"] >= 50


# --- the command line, up to where training would start ------------------------------------------------

def around(low, high):
    """Integers at and beyond both bounds, and inside near them."""
    return st.one_of(st.sampled_from([low - 1, low, high, high + 1]), st.integers(low - 3, low + 300),
                     st.integers(high - 300, high + 3))


INT_BOUNDS = {"--workers": (0, 128), "--epoch": (1, 10_000), "--batch-size": (1, 8192),
              "--max-batches": (1, 1_000_000), "--seed": (0, 2**31 - 1), "--threads": (1, 1024),
              "--nproc-per-node": (1, 1024), "--synthetic-train": (1, 250_000), "--synthetic-test": (1, 50_000)}
printable = st.text(alphabet=st.characters(whitelist_categories=("L", "N", "P", "S")), max_size=20)
GARBAGE_INT = st.one_of(st.integers().map(str), st.sampled_from(
    ["0x10", "1_000", " 7", "1.0", "", "\u0663", "nan", "-", "99999999999999999999999"]))
FLOAT_TEXT = st.one_of(st.floats().map(repr), st.sampled_from(
    ["nan", "inf", "-inf", "1e400", "-1e400", "1e-400", "0", "-0", "1e-12", "9.9e-13", "1e12", "1.0000001e12",
     "0x1p3", "", "NaN", "Infinity"]))
CHOICE_FLAGS = {"--optimizer": cfg.OPTIMIZERS, "--device": cfg.DEVICES, "--dataset": cfg.DATASETS,
                "--loader": cfg.LOADERS, "--timers": cfg.TIMERS}
VALID_FLAG = {**{f: st.integers(*b).map(str) for f, b in INT_BOUNDS.items()},
              "--lr": st.floats(1e-12, 1e12).map(repr),
              **{f: st.sampled_from(["data", "/tmp/a b", "\u00fcn\u00ef/\u00e7\u00f8d\u00e9"])
                 for f in ("--data", "--checkpoint", "--results")},
              "--experiment": printable.filter(bool), "--tag": printable,
              **{f: st.sampled_from(c) for f, c in CHOICE_FLAGS.items()}}
BAD_FLAG = {**{f: st.one_of(around(*b).map(str), GARBAGE_INT) for f, b in INT_BOUNDS.items()},
            "--lr": FLOAT_TEXT,
            **{f: st.one_of(safe_text, st.just("x" * 4097)) for f in ("--data", "--checkpoint", "--results")},
            **{f: st.one_of(safe_text, st.just("x" * 201)) for f in ("--experiment", "--tag")},
            **{f: st.sampled_from(CHOICE_WORDS) for f in CHOICE_FLAGS}}
SWITCHES = ["--resume", "-r", "--gpu", "--disable_batch_norm", "--fast", "--sync-bn", "--no-augment", "--evaluate",
            "--json", "--no-progress", "--debug"]
UNKNOWN = ["--lrr", "--epochs", "-x", "--", "--batch_size", "extra"]


@st.composite
def train_argv(draw):
    """Valid flags, then 0-2 flags with a value at or beyond a bound or of the wrong kind, a few switches, and
    sometimes an unknown word."""
    argv = ["train"]

    def add(flag, value):
        nonlocal argv
        argv += [flag, value] if draw(st.integers(0, 9)) else [f"{flag}={value}"]

    for flag in draw(st.lists(st.sampled_from(sorted(VALID_FLAG)), max_size=6, unique=True)):
        add(flag, draw(VALID_FLAG[flag]))
    for flag in draw(st.lists(st.sampled_from(sorted(BAD_FLAG)), max_size=2)):
        add(flag, draw(BAD_FLAG[flag]))
    argv += draw(st.lists(st.sampled_from(SWITCHES), max_size=3))
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(1, len(argv))), draw(st.sampled_from(UNKNOWN)))
    return argv


def test_generated_command_lines_are_usable_or_one_line_errors():
    counts = Counter()

    @settings(max_examples=1000, **SETTINGS)
    @given(train_argv())
    def check(argv):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                args = build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse: a bad int/float, an unknown flag, a missing value
            assert exc.code == 2, (argv, err.getvalue())
            one_line(err.getvalue().strip())
            counts["argparse"] += 1
            return
        args.argv = argv
        try:
            config = check_train_args(args)  # what cmd_train checks before anything is written or trained
        except ConfigError as exc:
            one_line(str(exc))
            counts["refused"] += 1
            return
        assert_usable(config)
        assert args.nproc_per_node is None or integer(args.nproc_per_node, 1, 1024)
        assert args.results is None or path(args.results)
        counts["valid"] += 1

    check()
    report_count("train command line", counts, 600)
    assert counts["valid"] >= 30 and counts["refused"] >= 30 and counts["argparse"] >= 30


# --- a report profile's plan (nothing runs) ---------------------------------------------------------------

PARAMETER_BOUNDS = {"batch_size": (1, 8192), "epochs": (1, 10_000), "max_batches": (1, 1_000_000),
                    "cpu_max_batches": (1, 1_000_000), "seed": (0, 2**31 - 1), "workers": (0, 128),
                    "worker_step": (1, 128), "worker_cap": (0, 128), "profile_steps": (1, 1000)}
LISTS = {"worker_counts": (0, 128), "process_counts": (1, 1024)}
CHOICE_LISTS = {"devices": ("cuda", "cpu"), "optimizers": cfg.OPTIMIZERS, "modes": ("strong", "weak")}
VALID_PARAMETER = {
    **{k: st.integers(*b) for k, b in PARAMETER_BOUNDS.items()},
    **{k: st.lists(st.integers(*b), min_size=1, max_size=4, unique=True) for k, b in LISTS.items()},
    **{k: st.lists(st.sampled_from(c), min_size=1, unique=True) for k, c in CHOICE_LISTS.items()},
    "dataset": st.sampled_from(["auto", "synthetic"]), "device": st.sampled_from(cfg.DEVICES),
    "lr": st.floats(1e-12, 1e12), "evaluate": st.booleans(), "max_autotune": st.booleans(),
}
BAD_PARAMETER = {
    **{k: around(*b) for k, b in PARAMETER_BOUNDS.items()},
    **{k: st.one_of(st.tuples(st.lists(st.integers(*b), max_size=3, unique=True),
                              st.sampled_from([b[0] - 1, b[1] + 1, -5])).map(lambda t: t[0] + [t[1]]),
                    st.just([]), st.integers(*b).map(lambda v: [v, v]), st.lists(around(*b), max_size=4))
       for k, b in LISTS.items()},
    **{k: st.lists(st.sampled_from(c + ("tpu", "mild", "rmsprop")), max_size=4) for k, c in CHOICE_LISTS.items()},
    "dataset": st.sampled_from(["cifar100", "Synthetic", ""]), "device": st.sampled_from(["gpu", "mps", ""]),
    "lr": st.sampled_from([0.0, -0.1, 1e-13, 1.0000001e12, float("nan"), float("inf"), 10**400 // 10**380]),
}


@st.composite
def profile_files(draw):
    """A profile of valid settings and parameters (each notebook's own), then 0-3 changes: a value at or beyond
    a bound or of any kind, an unknown setting, notebook or parameter, a runner-set parameter."""
    def valid_params(names):
        chosen = draw(st.lists(st.sampled_from(sorted(names)), max_size=4, unique=True)) if names else []
        return {k: draw(VALID_PARAMETER[k]) for k in chosen}

    profile = {"common": valid_params(set(VALID_PARAMETER) & {"dataset", "device", "batch_size", "epochs",
                                                               "max_batches", "lr", "seed"}), "notebooks": {}}
    for name in draw(st.lists(st.sampled_from(NOTEBOOKS), max_size=4, unique=True)):
        profile["notebooks"][name] = valid_params(set(VALID_PARAMETER) & set(declared_parameters(
            NOTEBOOK_DIR / f"{name}.ipynb")))
    if draw(st.booleans()):
        profile["cell_timeout"] = draw(st.integers(1, 7 * 24 * 3600))
    if draw(st.booleans()):
        profile["description"] = draw(printable)
    for change in sorted(draw(st.lists(st.integers(0, 9), max_size=3))):  # a whole setting (7) replaced last
        if not (isinstance(profile.get("common"), dict) and isinstance(profile.get("notebooks"), dict)):
            break  # replaced by a change of kind 9
        if change <= 4:  # a bad value, mostly where the parameter is declared (else it is refused for that)
            key = draw(st.sampled_from(sorted(BAD_PARAMETER)))
            owners = [n for n in NOTEBOOKS if key in declared_parameters(NOTEBOOK_DIR / f"{n}.ipynb")]
            name = draw(st.sampled_from(owners + ["common"] if draw(st.integers(0, 4)) else NOTEBOOKS))
            section = (profile["common"] if name == "common" else profile["notebooks"].setdefault(name, {}))
            if isinstance(section, dict):
                section[key] = draw(BAD_PARAMETER[key])
            continue
        section = (profile["common"] if draw(st.booleans()) else
                   profile["notebooks"].setdefault(draw(st.sampled_from(NOTEBOOKS)), {}))
        if not isinstance(section, dict):
            continue
        if False:
            pass
        elif change <= 6:
            section[draw(st.sampled_from(sorted(PARAMETERS) + ["wrokers", "settings"]))] = draw(any_value)
        elif change == 7:
            profile["notebooks"][draw(st.sampled_from(["summary", "C1_nothing", "c2_timing"]))] = {}
        elif change == 8:
            profile["notebooks"][draw(st.sampled_from(NOTEBOOKS))] = draw(any_value)
        else:
            profile[draw(st.sampled_from(["cell_timeout", "description", "common", "notebooks", "base", "comon",
                                          "name"]))] = draw(st.one_of(any_value, around(1, 7 * 24 * 3600)))
    return profile


@st.composite
def one_parameter_profiles(draw):
    """A profile that sets one parameter, where a notebook has it, to a valid, bad or arbitrary value."""
    key = draw(st.sampled_from(sorted(BAD_PARAMETER)))
    owners = [n for n in NOTEBOOKS if key in declared_parameters(NOTEBOOK_DIR / f"{n}.ipynb")]
    where = draw(st.sampled_from(owners + ["common"]))
    value = draw(st.one_of(VALID_PARAMETER[key], BAD_PARAMETER[key], any_value))
    return {"common": {key: value}} if where == "common" else {"notebooks": {where: {key: value}}}


@pytest.fixture(scope="module")
def plan_dirs(tmp_path_factory):
    for name in NOTEBOOKS:  # papermill's inspection, once (cached by the runner for the whole process)
        declared_parameters(NOTEBOOK_DIR / f"{name}.ipynb")
    root = tmp_path_factory.mktemp("plans")
    return root / "profile.yaml", root / "report", str(root / "data")  # no CIFAR-10 in data (offline in tests)


def test_generated_profiles_plan_or_fail_with_one_line(plan_dirs):
    profile_file, out, data = plan_dirs
    counts = Counter()

    @settings(max_examples=800, **SETTINGS)
    @given(st.one_of(one_parameter_profiles(), profile_files()))
    def check(profile):
        profile_file.write_text(yaml.safe_dump(profile, allow_unicode=True))
        try:
            loaded = load_profile(str(profile_file))
            dataset = (loaded.get("common") or {}).get("dataset", "auto")
            with contextlib.redirect_stderr(io.StringIO()):  # "CIFAR-10 ... cannot be downloaded here: SYNTHETIC"
                meta = _plan_report(loaded, out, data)
        except ConfigError as exc:
            one_line(str(exc))
            counts["refused"] += 1
            return
        except DataError as exc:  # CIFAR-10 asked for and absent: one line, exit 1 (a runtime failure)
            assert dataset == "cifar10", exc
            one_line(str(exc))
            counts["no CIFAR-10"] += 1
            return
        assert not out.exists()  # the plan writes nothing
        assert integer(meta["cell_timeout"], 1, 7 * 24 * 3600) or meta["cell_timeout"] is None
        for name, params in meta["parameters"].items():
            for key, value in params.items():
                assert USABLE_PARAMETER[key](value), (name, key, value)
        counts["planned"] += 1

    check()
    report_count("profile plan", counts, 600)
    assert counts["planned"] >= 20 and counts["refused"] >= 50


# --- the specs themselves ------------------------------------------------------------------------------------

def test_every_notebook_parameter_has_a_spec_and_valid_defaults():
    import ast

    for name in NOTEBOOKS + ("summary",):
        for key, spec in declared_parameters(NOTEBOOK_DIR / f"{name}.ipynb").items():
            assert key in PARAMETERS, f"{name}: parameter {key} has no spec in lab.config.PARAMETERS"
            PARAMETERS[key].check(f"{name} default {key}", ast.literal_eval(spec["default"]))


def test_every_notebook_parameter_is_declared_by_its_part_and_means_what_its_spec_says():
    from lab import parts

    for name in NOTEBOOKS:
        declared = declared_parameters(NOTEBOOK_DIR / f"{name}.ipynb")
        meaning = parts.parameters(parts.BY_ID[name])
        assert set(declared) == set(meaning), name  # the common ones and the part's own, nothing else
        for key, help in meaning.items():  # the notebook's comment is the Spec's help, word for word
            assert help and declared[key]["help"] == help, (name, key)


def test_the_shipped_profiles_are_valid():
    for name in ("quick", "full", "full-synthetic", str(ROOT / "tests" / "tiny.yaml")):
        load_profile(name)


def test_the_docs_state_every_range():
    assert cfg.ranges_table() in (ROOT / "docs" / "troubleshooting.md").read_text()


def test_readme_says_what_quick_can_conclude_as_the_rule_computes_it():
    from lab.report.conclusions import table

    readme = (ROOT / "README.md").read_text()
    between = readme.split("<!-- quick-conclusions -->\n")[1].split("\n<!-- /quick-conclusions -->")[0]
    assert between == table("quick")


def test_check_namespace_checks_only_parameters():
    namespace = {"worker_cap": 8, "pd": object(), "results": object(), "lr": 0.1, "workers": None}
    assert cfg.check_namespace(namespace) == {"worker_cap": 8, "lr": 0.1, "workers": None}
    with pytest.raises(ConfigError, match=r"^worker_cap must be int in \[0, 128\], got 1000$"):
        cfg.check_namespace({"worker_cap": 1000})
    with pytest.raises(ConfigError, match="unknown parameter 'wrokers'"):
        cfg.check_parameters({"wrokers": 2})


@pytest.mark.parametrize("flags, line", [
    (["--lr", "nan"], "error: lr must be finite float in [1e-12, 1e12], got nan"),
    (["--lr", "1e400"], "error: lr must be finite float in [1e-12, 1e12], got inf"),
    (["--seed", str(2**31)], "error: seed must be int in [0, 2147483647], got 2147483648"),
    (["--batch-size", "100000"], "error: batch_size must be int in [1, 8192], got 100000"),
    (["--workers", "-1"], "error: workers must be int in [0, 128], got -1"),
    (["--tag", "a\nb"], "error: tag must be text (at most 200 printable characters), got 'a\\nb'"),
    (["--data", ""], "error: data must be a path (non-empty, at most 4096 characters, no control characters), got ''"),
    (["--nproc-per-node", "5000"], "error: --nproc-per-node must be int in [1, 1024] or None, got 5000"),
])
def test_bad_flags_are_one_line_exit_2_before_anything_is_written(flags, line, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--dataset", "synthetic", "--data", str(tmp_path / "d"), "--results", str(tmp_path / "r"),
                 *flags])
    assert code == 2 and capsys.readouterr().err.strip() == line
    assert list(tmp_path.iterdir()) == []  # no data generated, no records, no checkpoint


PROFILE_TEXT = """cell_timeout: 600
common:
  dataset: synthetic
  device: cpu
  batch_size: 16
  max_batches: 2
notebooks:
  C2_timing: {workers: 0}
  C3_workers: {worker_counts: [0, 2]}
"""


@pytest.mark.parametrize("old, new, line", [
    (f"{c3_workers.ID}: {{worker_counts: [0, 2]}}", f"{c3_workers.ID}: {{worker_cap: 1000}}",
     f"profile p: notebook {c3_workers.ID} parameter worker_cap should be int in [0, 128], got 1000"),
    (f"{c3_workers.ID}: {{worker_counts: [0, 2]}}", f"{c3_workers.ID}: {{worker_counts: [0, 0]}}",
     f"profile p: notebook {c3_workers.ID} parameter worker_counts should be a non-empty list of distinct int in "
     "[0, 128] or None, got [0, 0]"),
    (f"{c2_timing.ID}: {{workers: 0}}", f"{c2_timing.ID}: {{lr: .nan}}",
     f"profile p: notebook {c2_timing.ID} parameter lr should be finite float in [1e-12, 1e12], got nan"),
    (f"{c2_timing.ID}: {{workers: 0}}", "C2_timng: {workers: 0}",
     "profile p: unknown notebook 'C2_timng' (notebooks: "),
    ("max_batches: 2", "max_batches: 2\n  wrokers: 3", "profile p: common has no parameter 'wrokers'"),
    ("max_batches: 2", "max_batches: 2\n  results_dir: /tmp/x", "profile p: common: results_dir is set by the "
     "report runner"),
    ("cell_timeout: 600", "cell_timeout: -1", "profile p: cell_timeout should be int in [1, 604800] or None, got -1"),
])
def test_bad_profile_values_are_refused_before_any_notebook_runs(old, new, line, tmp_path, capsys):
    assert old in PROFILE_TEXT
    (tmp_path / "p.yaml").write_text(PROFILE_TEXT.replace(old, new))
    code = main(["report", "--profile", str(tmp_path / "p.yaml"), "--results", str(tmp_path / "results"),
                 "--data", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: " + line), err
    assert not any((tmp_path / "results").glob("*/report.json"))  # nothing planned was written
