"""The order compared settings run in, written once: interleaved so that slow drift (clocks, temperature, other
load) hits them all alike instead of favouring those that run first."""
from itertools import count


def abba(names, rounds: int | None = None):
    """Each round's order: `names` in even rounds, reversed in odd ones (A B C, C B A, A B C, ...); without end
    where `rounds` is None (the caller stops)."""
    names = list(names)
    for r in count() if rounds is None else range(rounds):
        yield names if r % 2 == 0 else names[::-1]
