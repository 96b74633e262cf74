"""Every line of the code is at most 120 columns (issue 35's bound): the printed code and its diffs are read at 120
columns, where a longer line wraps or is cut."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 120


def checked_files():
    for folder in ("lab", "tests", "scripts"):
        yield from sorted((ROOT / folder).rglob("*.py"))
    yield from sorted(p for p in (ROOT / "lab" / "report" / "templates").rglob("*") if p.is_file())


def test_every_line_is_at_most_120_columns():
    long = [f"{path.relative_to(ROOT)}:{n} ({len(line)})"
            for path in checked_files()
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if len(line) > WIDTH]
    assert not long, f"lines over {WIDTH} columns:\n" + "\n".join(long)
