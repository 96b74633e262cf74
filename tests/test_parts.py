"""The part interface (lab.parts.base.Part): every registered part declares itself through it and passes its
check, an incomplete declaration fails it, no code outside a part's module and the registry's list names a part,
and docs/architecture.md's worked example, executed verbatim, runs through the registry like any other part."""
import ast
import contextlib
import re
import types
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from lab import parts  # noqa: E402
from lab.parts import base, display  # noqa: E402
from lab.parts.base import Part, Report, check  # noqa: E402
from lab.report import summary  # noqa: E402
from test_goldens import Capture  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("part", parts.PARTS, ids=parts.IDS)
def test_every_registered_part_passes_the_interface_check(part):
    assert check(part) == []
    assert all(q in parts.ORDER for q, _ in part.questions)  # the lab's questions, as LAB.md numbers them
    assert Path(ROOT / "notebooks" / f"{part.id}.ipynb").exists()


def test_what_a_part_needs_one_part_provides():
    """Every need has exactly one provider, running before the parts that need it; one part calibrates."""
    for need in {n for p in parts.PARTS for n in p.needs}:
        providers = [i for i, p in enumerate(parts.PARTS) if need in p.provides]
        assert len(providers) == 1, need
        assert all(providers[0] < i for i, p in enumerate(parts.PARTS) if need in p.needs), need
    assert len([p for p in parts.PARTS if "calibration" in p.provides]) == 1


def _complete(**changes) -> Part:
    c2 = parts.BY_ID["C2_timing"]
    return Part(**{**{f: getattr(c2, f) for f in c2.__dataclass_fields__}, **changes})


@pytest.mark.parametrize("change, problem", [
    ({"findings": lambda records: []}, "findings should take 2 arguments"),
    ({"section": None}, "section should be callable"),
    ({"runs": lambda config, params: None}, "runs should take 3 arguments"),
    ({"measure": lambda config, params, out: None}, "measure should take 4 arguments"),
    ({"questions": ()}, "questions should be a non-empty tuple"),
    ({"questions": ("C2.1", "Data loading")}, "questions should be a non-empty tuple"),
    ({"parameters": {"workers": "DataLoader workers"}}, "parameters should be a tuple"),
    ({"parameters": ("wrokers",)}, "parameter 'wrokers' has no Spec"),
    ({"needs": ("best_worker",)}, "needs 'best_worker': the runner resolves only"),
    ({"provides": "model_file"}, "provides should be tuple"),
    ({"id": "C2 timing"}, "should be a notebook name"),
])
def test_an_incomplete_or_wrong_declaration_fails_the_check(change, problem):
    assert check(_complete()) == []
    problems = check(_complete(**change))
    assert any(problem in p for p in problems), problems


def test_a_module_without_a_declaration_fails_the_check():
    module = types.SimpleNamespace(ID="X", runs=lambda c, p, r: None, section=lambda d, r, f: None)
    assert check(module) and "is not a lab.parts.base.Part" in check(module)[0]


def test_no_part_is_named_outside_its_module_and_the_registry_list():
    names = {p.id for p in parts.PARTS} | {p.runs.__module__.rsplit(".", 1)[1] for p in parts.PARTS}
    assert len(names) == 2 * len(parts.PARTS)  # ids and module names
    registry = (ROOT / "lab" / "parts" / "__init__.py").read_text()
    start = registry.index("PARTS: tuple")
    outside_list = registry[:start] + registry[registry.index("\n\n", start):]
    sources = {p: p.read_text() for p in (ROOT / "lab" / "report").glob("*.py")}
    sources[Path("lab/parts/__init__.py (outside PARTS)")] = outside_list
    found = [(str(path), name) for path, text in sources.items() for name in names
             if re.search(rf"\b{re.escape(name)}\b", text)]
    assert found == []


# --- the worked example, executed verbatim from the docs -------------------------------------------------------

def worked_example() -> str:
    """The first Python block under docs/architecture.md's "Adding a part: a worked example"."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc[doc.index("### Adding a part: a worked example"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def example_part(monkeypatch):
    """The docs' example module, executed as written, registered in a copy of the registry."""
    module = types.ModuleType("lab.parts.example_from_the_docs")
    exec(compile(worked_example(), "docs/architecture.md", "exec"), module.__dict__)  # noqa: S102
    part = module.PART
    monkeypatch.setattr(parts, "PARTS", parts.PARTS + (part,))
    monkeypatch.setattr(parts, "IDS", parts.IDS + (part.id,))
    monkeypatch.setattr(parts, "BY_ID", {**parts.BY_ID, part.id: part})
    return part


def test_the_docs_worked_example_runs_through_the_registry(example_part, synthetic_data, tmp_path, monkeypatch,
                                                           one_thread):
    part = example_part
    assert check(part) == []
    results = tmp_path / "report"
    params = {"results_dir": str(results), "data": synthetic_data.data, "dataset": "synthetic", "device": "cpu",
              "batch_size": 8, "epochs": 2, "max_batches": 1, "lr": 0.1, "seed": 0, "workers": 0, "evaluate": False}
    work = parts.plan(part.id, params, Report(results))
    assert work.runs == 2 and work.steps == pytest.approx(2 * 2 * 8 / 8)  # two settings x 2 epochs x 1 batch

    config = synthetic_data.replace(device="cpu", workers=0, batch_size=8, max_batches=1, epochs=2, checkpoint=None,
                                    experiment=part.id)
    records = part.make(config, params, parts.output_dir(results, part.id), Report(results))
    assert sorted({r["tag"] for r in records}) == sorted(c.tag for c in part.runs(config, params, None).block)
    assert len({r["extra"]["block"] for r in records}) == 1  # one interleaved block
    assert [r["tag"] for r in records][:2] == [r["tag"] for r in records][:-3:-1]  # order reversed in epoch 2

    rows = [r for r in parts.findings(results) if r.part == part.id]
    assert [r.question for r in rows] == [q for q, _ in part.questions]
    assert "training time" in rows[0].answer

    capture = Capture()
    monkeypatch.setattr(display, "show", capture.show)
    monkeypatch.setattr(display, "figure", capture.figure)
    with contextlib.redirect_stdout(capture):
        summary.show_parts(results)
    text = capture.text()
    assert part.title in text and "Speed:" in text  # its section, drawn from its records
    assert "C2_timing did not run in this report." in text  # the registered parts, none of which ran here


def test_the_docs_name_every_file_a_new_part_touches():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc[doc.index("### Adding a part: a worked example"):]
    for path in ("lab/parts/x1_momentum.py", "lab/parts/__init__.py", "notebooks/X1_momentum.ipynb",
                 "tests/fixtures/report", "tests/goldens/X1_momentum.txt"):
        assert path in section, path
    assert base.COMMON  # the common parameters the example's notebook also declares


def test_no_part_imports_another_part():
    """A part reads rows and records, never another part's module, directly or through the registry: each
    part module's imports, read from its source."""
    modules = {p.runs.__module__.rsplit(".", 1)[-1]: p.id for p in parts.PARTS}
    for name in modules:
        tree = ast.parse((ROOT / "lab" / "parts" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module or ''}.{a.name}".strip(".") for a in node.names]
                hits = [n for n in names if n.split(".")[-1] in modules or n.split(".")[-1] in ("parts", "BY_ID")]
                assert not hits, f"lab/parts/{name}.py imports {hits[0]} (line {node.lineno})"
            elif isinstance(node, ast.Import):
                hits = [a.name for a in node.names if a.name.split(".")[-1] in modules]
                assert not hits, f"lab/parts/{name}.py imports {hits[0]} (line {node.lineno})"
