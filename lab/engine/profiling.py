"""torch.profiler over a few training steps: the top operators by self time, and a trace file that
Chrome (chrome://tracing) or Perfetto (ui.perfetto.dev) opens."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from torch.profiler import ProfilerActivity, profile, schedule

from ..core.config import Config
from ..core.files import save_json
from .resolve import resolve
from .train import Trainer

# Kineto prints a start/stop line per profile, and on machines without a GPU an "ERROR ... gpuGetDeviceCount
# failed" that is no error; level 6 keeps stderr for real problems (set KINETO_LOG_LEVEL to see them).
os.environ.setdefault("KINETO_LOG_LEVEL", "6")


def profile_training(config: Config, out, name: str, wait: int = 1, warmup: int = 1, active: int = 3,
                     top: int = 15) -> pd.DataFrame:
    """Profile `active` training steps after `wait` skipped and `warmup` discarded ones. Writes
    `out/trace_<name>.json` and `out/ops_<name>.csv`; returns the top operators by self CPU time.

    The DataLoader's `next()` appears as its own operator (`enumerate(DataLoader)#...__next__`), so the
    table shows the wait for data beside the compute."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    quiet = lambda msg: None  # noqa: E731
    setup = Trainer(resolve(config.replace(max_batches=wait + warmup + active, checkpoint=None), quiet), quiet)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if setup.device.type == "cuda" else [])
    trace = out / f"trace_{name}.json"
    with profile(activities=activities, schedule=schedule(wait=wait, warmup=warmup, active=active),
                 on_trace_ready=lambda prof: prof.export_chrome_trace(str(trace))) as prof:
        setup.train_epoch(1, on_step=prof.step)
    ops = operator_table(prof, setup.device.type == "cuda", active).head(top)
    ops.to_csv(out / f"ops_{name}.csv")
    return ops


def operator_table(prof, cuda: bool, steps: int) -> pd.DataFrame:
    rows = []
    for event in prof.key_averages():
        row = {"operator": event.key, "calls": event.count,
               "self CPU ms/step": event.self_cpu_time_total / 1e3 / steps,
               "CPU total ms/step": event.cpu_time_total / 1e3 / steps}
        if cuda:
            row["self CUDA ms/step"] = getattr(event, "self_device_time_total", 0.0) / 1e3 / steps
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("self CPU ms/step", ascending=False).set_index("operator")
    table["self CPU %"] = 100 * table["self CPU ms/step"] / table["self CPU ms/step"].sum()
    return table


LAUNCH_OPS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")


def step_profile(config: Config, out, name: str, steps: int = 5) -> dict:
    """Where one setting's step goes, from torch.profiler: wall ms per step (the profiler's step spans),
    device-busy ms per step (the kernels' self time; CUDA only) and kernel launches per step. Saved as
    `out/step_<name>.json` beside the operator table and trace."""
    ops = profile_training(config, out, name, active=steps, top=10_000)
    launches = sum(ops.loc[ops.index.isin(LAUNCH_OPS), "calls"]) / steps
    steps_rows = ops[ops.index.str.startswith("ProfilerStep")]
    wall = steps_rows["CPU total ms/step"].sum() if len(steps_rows) else float("nan")
    busy = ops["self CUDA ms/step"].sum() if "self CUDA ms/step" in ops else None
    result = {"setting": name, "device_type": "cuda" if busy is not None else "cpu", "steps": steps,
              "wall_ms_per_step": wall, "device_busy_ms_per_step": busy, "launches_per_step": launches}
    save_json(Path(out) / f"step_{name}.json", result)
    return result
