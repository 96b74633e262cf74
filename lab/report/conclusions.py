"""What a profile can conclude, from the comparison rule itself: per part that compares speed, the smallest p its
family of claims can give at the profile's sizes; above ALPHA no sentence names a winner ("too few measurements").
README's table is `table("quick")` (tests/test_validation.py keeps the two equal)."""
from __future__ import annotations

import json
from pathlib import Path

from .. import parts
from ..core import stats
from ..parts.base import Report
from .runner import NOTEBOOK_DIR, declared_parameters, load_profile, notebook_defaults, notebook_parameters

NOWHERE = Path("/nonexistent/lab-report")  # a report folder with nothing in it: the plan before anything runs
# The CPU the account is for (the settings a part compares can depend on it): bf16 instructions (bf16 autocast runs,
# not emulated), and a --fast probe that took channels_last + bf16 autocast without compiling.
CPU = {"choice": {"channels_last": True, "amp": "bf16", "compile": "off"},
       "step_s": {json.dumps({"channels_last": False, "amp": a}): s for a, s in (("off", 1.0), ("bf16", 0.5))}}


def rows(profile_name: str, device: str = "cpu") -> list[dict]:
    """One row per part that compares speed, on `device` (the claims differ on a CUDA node: C5 has two
    devices there, C8 more settings), for the CPU that `CPU` describes."""
    profile = load_profile(profile_name)
    report, out = Report(NOWHERE, fast_probe=CPU), []
    for part in parts.PARTS:
        if part.speed_family is None:
            continue
        declared = declared_parameters(NOTEBOOK_DIR / f"{part.id}.ipynb")
        fixed = {"results_dir": str(NOWHERE), "data": "data", "dataset": "synthetic", "device": device}
        params = {**notebook_defaults(part.id), **notebook_parameters(profile, part.id, declared, fixed)}
        params = parts.with_workers(part.id, params)
        config = parts.config_for(part.id, params)
        shape = part.speed_family(config, params, report)  # None: nothing to compare on this node
        steady, claims = shape or ({}, [])
        decides, smallest, needed = stats.decidable(steady, claims) if shape else (False, None, None)
        out.append({"part": part.id, "settings": len(steady), "steady": min(steady.values(), default=0),
                    "claims": len(claims), "p": smallest, "decides": decides, "needed": needed})
    return out


def table(profile_name: str, device: str = "cpu") -> str:
    lines = ["| part | settings compared | steady epochs each | claims | smallest p at these sizes | can it name a "
             "faster setting? |", "|---|---|---|---|---|---|"]
    for r in rows(profile_name, device):
        if not r["settings"]:
            lines.append(f"| {r['part']} | — | — | — | — | nothing to compare on this node |")
            continue
        verdict = ("yes, where the measurements differ" if r["decides"] else
                   f"no: {stats.too_few(r['steady'], r['needed'])}")
        lines.append(f"| {r['part']} | {r['settings']} | {r['steady']} | {r['claims']} | {r['p']:.3g} | {verdict} |")
    return "\n".join(lines)
