"""The report's two tables (lab.core.results): rows land as they are written and load in one pandas call, a part
run again replaces only its own rows, writers in two processes lose nothing, another schema is refused, and the
verdicts table holds what the comparison rule decided."""
import multiprocessing

import pandas as pd
import pytest

from lab.core import results, stats


def test_rows_load_in_one_pandas_call_with_their_units(tmp_path):
    rows = results.Rows(tmp_path, "C10_deploy", device="cpu").start()
    rows.add("latency_p50_s", 0.0123, "s", setting="eager fp32", threads=2)
    rows.extend([rows.row("latency_block_median_s", 0.01 + i / 1000, "s", sample=i, setting="eager fp32", threads=2)
                 for i in range(3)])
    rows.add("status", text="ok", setting="TorchScript traced")
    df = pd.read_json(tmp_path / results.MEASUREMENTS, lines=True)
    assert len(df) == 5 and set(df["unit"]) == {"s", ""} and (df["schema"] == results.SCHEMA).all()
    assert list(df.loc[df["metric"] == "latency_block_median_s", "sample"]) == [0, 1, 2]
    read = results.read(tmp_path, part="C10_deploy")
    assert list(read.columns[:len(results.COLUMNS)]) == list(results.COLUMNS)  # every column, in order
    assert results.value(read, "latency_p50_s", setting="eager fp32", threads=2) == pytest.approx(0.0123)
    assert results.value(read, "status", setting="TorchScript traced") == "ok"
    assert results.value(read, "status", setting="nothing like it") is None


def test_a_part_run_again_replaces_only_its_own_rows(tmp_path):
    results.Rows(tmp_path, "C3_workers").add("best_workers", 4, "workers")
    results.Rows(tmp_path, "Q_model").add("conv_layers", 20, "layers", kind="total")
    again = results.Rows(tmp_path, "C3_workers").start()
    assert set(results.read(tmp_path)["part"]) == {"Q_model"}
    again.add("best_workers", 2, "workers")
    assert results.value(results.read(tmp_path, part="C3_workers"), "best_workers") == 2
    assert len(results.read(tmp_path)) == 2


def _write(folder, part, n):
    rows = results.Rows(folder, part)
    for i in range(n):
        rows.add("x", i, "s", sample=i)


def test_two_writers_at_once_lose_no_row(tmp_path):
    """A notebook's kernel and the runner may write at the same time: the lock keeps every row of both."""
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_write, args=(tmp_path, part, 40)) for part in ("A", "B")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    df = results.read(tmp_path)
    assert sorted(df.groupby("part")["sample"].apply(sorted).to_dict().items()) == [
        ("A", list(range(40))), ("B", list(range(40)))]


def test_another_schema_is_refused_in_one_line(tmp_path):
    (tmp_path / results.MEASUREMENTS).write_text('{"schema": 99, "part": "C2_timing", "metric": "x", "value": 1}\n')
    with pytest.raises(results.SchemaError, match=r"schema \['99'\], this lab reads schema 1"):
        results.read(tmp_path)


def test_the_verdicts_table_holds_the_rules_decisions(tmp_path):
    """A clear difference and an identical pair, one family: their verdicts, factors and p as the rule gave them,
    and the smallest difference the run could have seen where it named nothing."""
    fast, slow = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98], [2.0, 2.02, 1.98, 2.0, 2.01, 1.99]
    samples = {"a": [{"s": v} for v in fast], "b": [{"s": v} for v in slow], "c": [{"s": v} for v in fast]}
    family = stats.family(samples, [("a", "b", "s"), ("c", "a", "s")], sample="block")
    results.write_verdicts(tmp_path, "C10_deploy", family)
    v = results.read_verdicts(tmp_path).set_index("claim")
    assert list(v.columns) == [c for c in results.VERDICT_COLUMNS if c != "claim"]
    assert v.loc["a vs b, s", "verdict"] == "faster" and v.loc["a vs b, s", "factor"] == pytest.approx(2.0, rel=0.01)
    assert v.loc["a vs b, s", "p"] <= stats.ALPHA
    assert v.loc["c vs a, s", "verdict"] == stats.NO_DIFFERENCE and v.loc["c vs a, s", "detectable"] > 0
    results.write_verdicts(tmp_path, "C10_deploy", {})  # decided again: its earlier verdicts replaced
    assert not len(results.read_verdicts(tmp_path))


def test_claims_read_back_from_the_verdicts_table_say_what_the_rule_said(tmp_path):
    """A section words its claims from the verdicts table: each rebuilt Comparison gives the same sentence, the same
    short verdict and evidence as the one the rule returned (the undecided one what it could have seen, without
    simulating again), for a decided claim, an undecided one and one with too few samples."""
    fast, slow = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98], [2.0, 2.02, 1.98, 2.0, 2.01, 1.99]
    samples = {"a": [{"s": v} for v in fast], "b": [{"s": v} for v in slow], "c": [{"s": v} for v in fast]}
    family = {**stats.family(samples, [("a", "b", "s"), ("c", "a", "s")], sample="block"),
              **stats.family({"x": [{"s": 1.0}, {"s": 1.1}], "y": [{"s": 1.2}, {"s": 1.0}]}, [("x", "y", "s")])}
    results.write_verdicts(tmp_path, "C10_deploy", family)
    back = results.comparisons(tmp_path, "C10_deploy")
    assert list(back) == list(family)
    assert {c.verdict for c in back.values()} == {"faster", stats.NO_DIFFERENCE, stats.TOO_FEW}
    for key, c in family.items():
        assert back[key].sentence("latency") == c.sentence("latency")
        assert stats.verdict_line(back[key]) == stats.verdict_line(c)
        assert stats.evidence_line(back[key]) == stats.evidence_line(c)
    assert "it would have seen" in back[("c", "a", "s")].sentence()
    assert results.comparisons(tmp_path, "C3_workers") == {}  # none of that part's: its reader decides
