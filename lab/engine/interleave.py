"""The order compared settings run in, written once: interleaved so that slow drift (clocks, temperature, other
load) hits them all alike instead of favouring those that run first."""
from itertools import count


def abba(names, rounds: int | None = None):
    """Each round's order: `names`, reversed, `names` ... (A B C, C B A, A B C); endless where rounds is None."""
    names = list(names)
    for r in count() if rounds is None else range(rounds):
        yield names if r % 2 == 0 else names[::-1]
