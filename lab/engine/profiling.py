"""torch.profiler over a few training steps: the top operators by self time, and a trace file that
Chrome (chrome://tracing) or Perfetto (ui.perfetto.dev) opens."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile, schedule

from ..core.config import Config
from ..core.timing import now, synchronize
from .interleave import abba
from .loop import Step
from .model import resnet18
from .resolve import device_type, resolve
from .train import Trainer

# Kineto's start/stop lines and, without a GPU, an "ERROR ... gpuGetDeviceCount failed" that is no error
os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # set KINETO_LOG_LEVEL to see them
LAUNCH_OPS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")


def activities(device: torch.device) -> list:
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def profile_training(config: Config, out, name: str, active: int = 3, top: int = 15) -> pd.DataFrame:
    """Profile `active` training steps after one skipped and one discarded; write `out/trace_<name>.json` and
    `out/ops_<name>.csv`; return the top operators by self CPU time. The DataLoader's `next()` is an operator of
    its own (`enumerate(DataLoader)#...__next__`): the table shows the wait for data beside the compute."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    quiet = lambda msg: None  # noqa: E731
    setup = Trainer(resolve(config.replace(max_batches=2 + active, checkpoint=None), quiet), quiet)
    trace = out / f"trace_{name}.json"
    with profile(activities=activities(setup.device), schedule=schedule(wait=1, warmup=1, active=active),
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


def step_profile(config: Config, out, name: str, steps: int = 5) -> dict:
    """Where one setting's step goes: wall ms per step (the profiler's step spans), device-busy ms per step (the
    kernels' self time; CUDA only) and kernel launches per step; its operator table and trace are written in
    `out` (profile_training)."""
    ops = profile_training(config, out, name, active=steps, top=10_000)
    launches = sum(ops.loc[ops.index.isin(LAUNCH_OPS), "calls"]) / steps
    steps_rows = ops[ops.index.str.startswith("ProfilerStep")]
    wall = steps_rows["CPU total ms/step"].sum() if len(steps_rows) else float("nan")
    busy = ops["self CUDA ms/step"].sum() if "self CUDA ms/step" in ops else None
    return {"setting": name, "device_type": "cuda" if busy is not None else "cpu", "steps": steps,
            "wall_ms_per_step": wall, "device_busy_ms_per_step": busy, "launches_per_step": launches}


def ops_per_step(config: Config, model, device, batch, steps: int = 2) -> dict:
    """Operators (aten::*), compiled graphs and generated kernels per training step, on CUDA the kernel launches,
    and the share of the operators' self time spent in convolutions."""
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    step = Step(model, optimizer, device)
    with profile(activities=activities(device)) as prof:
        for _ in range(steps):
            step(*batch)
        synchronize(device)
    events = prof.key_averages()
    aten = sum(e.count for e in events if e.key.startswith("aten::")) / steps
    kernels = sum(e.count for e in events if e.key.startswith(("cpp_fused", "triton_"))) / steps
    graphs = sum(e.count for e in events if e.key.startswith("## Call CompiledFxGraph")) / steps
    launches = sum(e.count for e in events if e.key in LAUNCH_OPS) / steps
    conv = sum(e.self_cpu_time_total for e in events if "conv" in e.key.lower())
    return {"aten_ops": aten, "compiled_graphs": graphs, "generated_kernels": kernels, "launches": launches,
            "conv_share": conv / (sum(e.self_cpu_time_total for e in events) or 1.0)}


def measure_compile(config: Config, samples: int = 4, backend: str = "inductor") -> dict:
    """What torch.compile does to the training step (Q5): torch._dynamo.explain's graphs and graph breaks of the
    forward; ops_per_step before and after; eager and compiled steps interleaved, `samples` each; and what the
    first compiled step paid for compilation (its time less a steady compiled step's mean)."""
    device = torch.device(device_type(config.device))
    torch.manual_seed(config.seed)
    eager, compiled_model = resnet18().to(device), resnet18().to(device)
    compiled_model.load_state_dict(eager.state_dict())
    batch = (torch.randn(config.batch_size, 3, 32, 32, device=device),
             torch.randint(0, 10, (config.batch_size,), device=device))
    explained = torch._dynamo.explain(compiled_model)(batch[0])
    torch._dynamo.reset()
    compiled = torch.compile(compiled_model, backend=backend, dynamic=False)
    steps = {"eager": Step(eager, torch.optim.SGD(eager.parameters(), lr=config.lr), device),
             "compiled": Step(compiled, torch.optim.SGD(compiled_model.parameters(), lr=config.lr), device)}
    start = now(device)
    steps["compiled"](*batch)
    first = now(device) - start
    steps["eager"](*batch)  # the eager step's own warm-up
    times = {"eager": [], "compiled": []}
    for order in abba(("eager", "compiled"), samples):
        for name in order:
            start = now(device)
            steps[name](*batch)
            times[name].append(now(device) - start)
    return {"device_type": device.type, "batch_size": config.batch_size, "backend": backend,
            "graphs": explained.graph_count, "graph_breaks": explained.graph_break_count,
            "break_reasons": [str(r.reason) for r in explained.break_reasons][:5],
            "forward_ops_captured": explained.op_count, "before": ops_per_step(config, eager, device, batch),
            "after": ops_per_step(config, compiled, device, batch), "step_s": times, "first_compiled_step_s": first,
            "compile_s": max(0.0, first - sum(times["compiled"]) / samples)}
