"""The one comparison rule (a permutation test per section, the family-wise max-T), the C3 rule and the
steady-state rule, on constructed samples."""
import math

import jinja2
import pandas as pd
import pytest

from lab.core import stats, words
from lab.parts import c3_workers


def test_four_and_four_separated_samples_decide_three_and_three_are_too_few():
    c = stats.compare([1.00, 1.02, 1.01, 0.99], [1.10, 1.12, 1.11, 1.13], "a", "b")
    assert c.verdict == "faster" and c.decided and c.p == pytest.approx(2 / 70)  # 2 of the C(8, 4) labelings
    assert c.ratio == pytest.approx(4.46 / 4.02) and c.low == pytest.approx(1.10 / 1.02)
    assert c.sentence("step").startswith("a is faster than b (step): ×1.11 (single epochs ×1.08–×1.14; p = 0.0286")
    assert "confidence" not in c.sentence()
    few = stats.compare([1.00, 1.02, 1.01], [1.10, 1.12, 1.11], "a", "b")  # best attainable p: 2/20 = 10 %
    assert few.verdict == stats.TOO_FEW and not few.decided
    assert few.sentence() == ("a vs b: too few measurements: 3 steady epochs per setting, 4 needed; at this run's "
                              "noise (±0.9 % per steady epoch) no difference is named in 80 % of runs with 3 steady "
                              "epochs per setting; 4 would see 10 %.")
    assert stats.compare([1.10, 1.12, 1.11, 1.13], [1.00, 1.02, 1.01, 0.99]).verdict == "slower"
    mixed = stats.compare([1.0, 1.3, 1.1, 1.2], [1.05, 1.25, 1.15, 1.35], "a", "b")
    assert mixed.verdict == stats.NO_DIFFERENCE and mixed.sentence().startswith(
        "a vs b: no measurable difference after 4 rounds; at this run's noise (±11.1 % per steady epoch) it would "
        "have seen 3")


def test_the_rules_sentences_are_its_templates(monkeypatch):
    """Each kind of sentence is a template of stats.SENTENCES: an edit there is what the reader gets."""
    monkeypatch.setitem(stats.SENTENCES, "decided", "{{ c.a }} beats {{ c.b }} by {{ c.ratio | factor }}")
    c = stats.compare([1.00, 1.02, 1.01, 0.99], [1.10, 1.12, 1.11, 1.13], "a", "b")
    assert c.sentence() == "a beats b by ×1.11"
    assert words.say("{{ x | factor }}; {{ y | percent }}; {{ z | sig }}", x=0.8, y=0.047, z=3319.4) == (
        "×0.80, i.e. 25 % slower; 4.7 %; 3,319")
    with pytest.raises(jinja2.UndefinedError):  # a template naming a value nobody gives fails, never says nothing
        words.say("{{ missing }}")


def test_non_measurements_are_left_out():
    # one sample each, however far apart, is not a comparison; nor are NaN, inf or None samples
    assert stats.compare([1.0], [9.0]).verdict == stats.TOO_FEW
    assert stats.compare([1.0, math.nan], [9.0, 9.5]).verdict == stats.TOO_FEW
    c = stats.compare([1.0, None, math.inf, 1.1, 1.05, 0.98], [9.0, 9.5, 9.2, 9.3])
    assert c.verdict == "faster" and c.n == 4


def ranked(groups: dict) -> str:
    """The sentence `rank` words from the claim `extremes` decides (a part stores it between the two)."""
    return stats.rank(stats.extremes(groups), len(groups))


def test_rank_names_the_extremes_only_where_the_family_decides():
    clear = {"sgd": [5.0, 5.1, 5.05], "adam": [6.0, 6.2, 6.1], "adagrad": [5.5, 5.9, 5.7]}
    assert ranked(clear).startswith("sgd is faster than adam: ×1.21")
    # the review's case: the same configuration ranged 4.0-5.6 s across runs
    noisy = {"sgd": [4.0, 5.6, 4.5, 5.0], "adagrad": [4.7, 4.8, 4.9, 4.6]}
    text = ranked(noisy)
    assert "no measurable difference" in text and "faster" not in text
    two = ranked({k: v[:2] for k, v in clear.items()})  # 2 epochs each: nothing can be named
    assert "too few measurements: 2 steady epochs per setting, 3 needed" in two and " is faster" not in two
    assert ranked({"sgd": [5.0]}).startswith("Only one setting")


def test_speedup_range_spans_the_worst_and_best_pairings():
    mean, low, high = stats.speedup_range([2.0, 2.2], [1.0, 1.1])
    assert mean == pytest.approx(2.1 / 1.05) and low == pytest.approx(2.0 / 1.1) and high == pytest.approx(2.2)


def test_the_worker_rule_stops_where_a_step_is_not_decidedly_faster():
    waits = {0: [13.0, 14.0, 13.5, 13.8], 4: [0.30, 0.40, 0.35, 0.33], 8: [0.28, 0.45, 0.36, 0.31],
             12: [0.29, 0.41, 0.3, 0.33]}
    rule = c3_workers.worker_sweep_rule(waits)
    assert rule["stop"] == 8 and rule["best"] == 4 and rule["significant"]
    assert "no measurable difference" in rule["reason"]


def test_the_worker_rule_goes_to_the_end_of_a_steadily_falling_series():
    rule = c3_workers.worker_sweep_rule({0: [9.0, 9.5, 9.2, 9.3], 4: [4.0, 4.5, 4.2, 4.1], 8: [2.0, 2.2, 2.1, 2.05]})
    assert rule["stop"] == 8 and rule["best"] == 8 and rule["significant"] and "end of the list" in rule["reason"]
    assert c3_workers.worker_sweep_rule({0: [math.nan]})["best"] is None


def test_where_the_sweep_cannot_tell_the_best_is_the_lowest_mean_and_says_so():
    rule = c3_workers.worker_sweep_rule({0: [3.0, 3.2], 4: [1.0, 1.1]})  # 2 epochs each: too few
    assert rule["best"] == 4 and not rule["significant"] and rule["stop"] == 4
    assert "not significant" in rule["reason"] and "too few measurements: 2 steady epochs per setting" in rule["reason"]


def test_steady_leaves_out_each_runs_warm_up_only_where_it_has_later_epochs():
    df = pd.DataFrame([
        {"run_id": "a", "epoch": 1, "warmup": True, "status": "ok"},
        {"run_id": "a", "epoch": 2, "warmup": False, "status": "ok"},
        {"run_id": "a", "epoch": 3, "warmup": False, "status": "diverged"},
        {"run_id": "b", "epoch": 1, "warmup": True, "status": "ok"},   # a one-epoch run keeps its only epoch
    ])
    assert list(zip(stats.steady(df)["run_id"], stats.steady(df)["epoch"])) == [("a", 2), ("b", 1)]


def test_accuracy_winner_needs_clear_intervals():
    assert "Highest test top-1: **a**" in stats.accuracy_sentence({"a": 0.80, "b": 0.60}, 10_000)
    close = stats.accuracy_sentence({"a": 0.80, "b": 0.79}, 512)
    assert "no measurable difference" in close and "b" in close
    low, high = stats.wilson(0.5, 100)
    assert low == pytest.approx(0.404, abs=1e-3) and high == pytest.approx(0.596, abs=1e-3)


def test_a_goal_is_met_missed_or_cannot_be_told():
    assert stats.goal([0.95, 0.96, 0.97, 0.95, 0.96], "<=", 1.02)[0] == stats.MET  # every repeat under: 1/32
    assert stats.goal([1.05, 1.06, 1.07, 1.05, 1.06], "<=", 1.02)[0] == stats.MISSED
    assert stats.goal([12.0, 11.0, 13.0, 12.5, 11.5], ">=", 10.0)[0] == stats.MET
    verdict, p, needed = stats.goal([1.038, 0.906, 1.092], "<=", 1.02)  # straddles: bench P2's old "NO"
    assert verdict == stats.CANNOT_TELL and needed == 5
    assert stats.goal([0.30, 0.31, 0.29], "<=", 0.40)[0] == stats.CANNOT_TELL  # 3 repeats cannot reach 5 %
    assert stats.goal([0.9, 1.1, 0.95, 1.05, 0.92, 1.08, 1.0], "<=", 1.0)[0] == stats.CANNOT_TELL
