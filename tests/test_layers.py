"""The tree shows the layers: each module imports only from its own layer and those below it, the optional
extras (the notebook stack) are never imported at a module's top, and `python -m lab train` runs without them.
Config <-> `train` flags is one mapping: every Config comes back from its own flags."""
import ast
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.cli import build_parser
from lab.core import config as cfg
from lab.core.config import Config, config_from_args, to_argv

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "lab"
LAYERS = {"core": 0, "data": 1, "engine": 2, "parts": 3, "report": 4}  # lab/*.py (cli, bench, ...): 5
EXTRAS = ("papermill", "nbconvert", "nbformat", "IPython", "ipykernel", "jupyter_client", "traitlets", "matplotlib",
          "seaborn", "ipywidgets")


def layer(module: str) -> int:
    """lab.core.files -> 0, ..., lab.report.runner -> 4; lab.cli, lab.bench and the package itself -> 5."""
    names = module.split(".")
    return LAYERS.get(names[1], 5) if len(names) > 1 else 5


def lab_imports(path: Path):
    """(imported lab module, line) for every import of the lab in `path`, relative imports resolved."""
    package = list(path.relative_to(ROOT).with_suffix("").parts)
    package = package if path.name == "__init__.py" else package[:-1]
    package = package[:-1] if package[-1] == "__init__" else package
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module or ""
            if base == "lab":
                yield from ((f"lab.{a.name}", node.lineno) for a in node.names)
            elif base.startswith("lab."):
                yield base, node.lineno
        elif isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names if a.name.startswith("lab"))


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in sorted(LAB.rglob("*.py")):
        me = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for imported, line in lab_imports(path):
            if layer(imported) > layer(me):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert upward == []
    assert {p.name for p in LAB.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS)


def test_the_extras_are_never_imported_at_a_modules_top():
    found = []
    for path in sorted(LAB.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:  # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in EXTRAS]
    assert found == []


def test_train_runs_without_the_notebook_extras(synthetic_data, tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        f"BLOCKED = {EXTRAS!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is hidden by the test')\n"
        "sys.meta_path.insert(0, Block())\n")
    env = {**os.environ, "PYTHONPATH": f"{hide}:{ROOT}"}
    cmd = [sys.executable, "-m", "lab", "train", "--dataset", "synthetic", "--data", synthetic_data.data,
           "--synthetic-train", "640", "--synthetic-test", "128", "--device", "cpu", "--workers", "0",
           "--batch-size", "16", "--max-batches", "1", "--epoch", "1", "--checkpoint", "", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Avg" in done.stdout and "1 (warm-up)" in done.stdout
    probe = subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0 and "hidden by the test" in probe.stderr  # the extras were really absent


# --- Config -> argv -> parse -> Config, for every field -----------------------------------------------------

def values_of(spec: cfg.Spec):
    if spec.kind == "int":
        values = st.integers(int(spec.low), int(spec.high))
    elif spec.kind == "float":
        values = st.floats(spec.low, spec.high, allow_nan=False, allow_infinity=False, exclude_max=spec.below)
    elif spec.kind == "bool":
        values = st.booleans()
    elif spec.kind == "choice":
        values = st.sampled_from(spec.choices)
    elif spec.kind == "path":
        values = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
    else:  # text: printable
        values = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs", "Cf", "Co", "Cn"))
                         | st.just(" "), min_size=0 if spec.empty else 1, max_size=30).filter(str.isprintable)
    return st.one_of(st.none(), values) if spec.none else values


@st.composite
def configs(draw):
    values = {name: draw(values_of(spec)) for name, spec in cfg.FIELDS.items() if name not in cfg.NO_FLAG}
    if values["resume"] and values["checkpoint"] is None:
        values["resume"] = False  # resume needs a checkpoint (refused with one line otherwise)
    return Config(**values).validate()


def test_every_config_comes_back_from_its_own_train_flags():
    parser = build_parser()

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(configs())
    def round_trip(config):
        args = parser.parse_args(["train", *to_argv(config)])
        assert config_from_args(args) == config

    round_trip()
    assert to_argv(Config()) == []  # the defaults need no flag
    lab_flags = ["--epoch=3", "--disable_batch_norm", "-r", "--gpu", "--checkpoint="]
    args = build_parser().parse_args(["train", *lab_flags])
    assert (args.epochs, args.batch_norm, args.resume, args.device, args.checkpoint) == (3, False, True, "cuda", None)
