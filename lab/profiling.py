"""torch.profiler over a few training steps: the top operators by self time, and a trace file that
Chrome (chrome://tracing) or Perfetto (ui.perfetto.dev) opens."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from torch.profiler import ProfilerActivity, profile, schedule

from .config import Config
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
    setup = Trainer(config.replace(max_batches=wait + warmup + active, checkpoint=None), log=lambda msg: None)
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
    from .files import save_json

    save_json(Path(out) / f"step_{name}.json", result)
    return result


def bound_sentence(profile: dict, bf16) -> str:
    """Launch-bound or compute-bound, from a step_profile, and why bf16 autocast does or does not help
    (`bf16`: a lab.stats.Comparison of the bf16 step against eager fp32, a sentence, or None)."""
    verdict = ("not measured." if bf16 is None else bf16 + "." if isinstance(bf16, str)
               else bf16.sentence("training step"))
    if profile.get("device_type") != "cuda":
        return ("On the CPU, operators run one after another on the host's threads: there are no kernel launches "
                "to hide, so the step is **compute-bound**. bf16 autocast helps only where the CPU has bf16 matrix "
                f"units (AMX, AVX512-BF16), and costs conversions elsewhere. Measured here: {verdict}")
    wall, busy, launches = profile["wall_ms_per_step"], profile["device_busy_ms_per_step"], profile["launches_per_step"]
    share = busy / wall if wall else float("nan")
    if share < 0.5:
        return (f"The GPU was busy {busy:.1f} ms of each {wall:.1f} ms eager step ({share:.0%}), with "
                f"{launches:.0f} kernel launches per step: the step is **launch-bound** — the GPU waits for the host "
                "to launch small kernels. bf16 shortens kernels that are not the bottleneck, so it cannot help much "
                f"({verdict}); CUDA graphs (compile reduce-overhead, `fast`) replay the whole step's kernels with one "
                "launch and remove that wait.")
    return (f"The GPU was busy {busy:.1f} ms of each {wall:.1f} ms eager step ({share:.0%}; {launches:.0f} kernel "
            "launches per step): the step is **compute-bound**, so bf16 (half the bytes, tensor cores) can shorten "
            f"it: {verdict}")
