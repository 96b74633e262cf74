"""The report runner: execute every notebook with papermill under a profile, into its own folder under
results/, then the summary, then report.html (nbconvert, code hidden) and report.pdf (headless Chromium)."""
from __future__ import annotations

import ast
import contextlib
import datetime as dt
import fcntl
import functools
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import torch
import yaml

from .. import parts
from ..core import results
from ..core.config import PARAMETERS, PROFILE, Config, show
from ..core.errors import ConfigError, LabError
from ..core.extras import need
from ..core.files import BadFile, check_writable, load_json, save_json
from ..data.cifar10 import ensure_synthetic, load_dataset, resolve_dataset
from ..engine import environment, progress, roofline
from ..engine.records import git_commit
from ..engine.resolve import device_type
from ..parts import tables
from . import summary
from .estimate import ReportTiming, Watcher, clock
from .publish import log, write_html, write_pdf

ROOT = Path(__file__).resolve().parent.parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
NOTEBOOKS = parts.IDS  # in run order: C3 finds the best worker count that C4-C9 use
SUMMARY = "summary"


# Parameters the report runner sets itself (--results, --data, its own summary): not a profile's to set.
RUNNER_SET = ("results_dir", "data", "figures_dir", "profile")


def load_profile(name: str, _chain: tuple = ()) -> dict:
    """A profile by name (quick, full, auto) or a path to a YAML file of the same shape. Every setting and
    parameter value is checked here (lab.core.config's PROFILE and PARAMETERS specs) before anything runs."""
    if name == "auto":
        name = "full" if torch.cuda.is_available() else "quick"
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown profile {show(name)}: choose one of {known}, auto, or a path to a .yaml file")
    if path.resolve() in _chain:
        raise ConfigError(f"profile {path}: its base profiles form a loop ({' -> '.join(p.stem for p in _chain)} "
                          f"-> {path.stem})")
    try:
        profile = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"profile {path} is not UTF-8 text: {exc}".splitlines()[0]) from exc
    except OSError as exc:
        raise ConfigError(f"profile {path} cannot be read: {exc.strerror or exc}") from exc
    if not isinstance(profile, dict):
        raise ConfigError(f"profile {path} must be a mapping of settings, got {type(profile).__name__}")
    check_profile(profile, path.stem)
    if profile.get("base"):
        base = load_profile(str(profile.pop("base")), _chain + (path.resolve(),))
        notebooks = dict(base.get("notebooks") or {})
        for name, own in (profile.get("notebooks") or {}).items():
            notebooks[name] = {**(notebooks.get(name) or {}), **(own or {})}
        profile = {**base, **profile, "common": {**(base.get("common") or {}), **(profile.get("common") or {})},
                   "notebooks": notebooks}
    profile["name"] = path.stem
    return profile


def check_profile(profile: dict, name: str) -> None:
    """A profile's settings, notebooks and parameter values checked: a one-line ConfigError naming the first bad."""
    for key, value in profile.items():
        if key not in PROFILE:
            raise ConfigError(f"profile {name}: unknown setting {show(key)} (settings: {', '.join(PROFILE)})")
        PROFILE[key].check(f"profile {name}: {key}", value, "should be")
    sections = [("common", profile.get("common") or {})]
    for notebook, own in (profile.get("notebooks") or {}).items():
        if notebook not in NOTEBOOKS:
            raise ConfigError(f"profile {name}: unknown notebook {show(notebook)} (notebooks: {', '.join(NOTEBOOKS)})")
        if own is not None and not isinstance(own, dict):
            raise ConfigError(f"profile {name}: notebook {notebook} should have a mapping of parameters, "
                              f"got {show(own)}")
        sections.append((f"notebook {notebook}", own or {}))
    for where, params in sections:
        for key, value in params.items():
            if key not in PARAMETERS:
                raise ConfigError(f"profile {name}: {where} has no parameter {show(key)}")
            if key in RUNNER_SET:
                raise ConfigError(f"profile {name}: {where}: {key} is set by the report runner (--results, --data), "
                                  "not by a profile")
            PARAMETERS[key].check(f"profile {name}: {where} parameter {key}", value, "should be")


PEAK_PROBES = {"full": {}, "tiny": roofline.TINY_PROBE}


def peaks_device(meta: dict) -> str:
    """The device kind the report's parts run on ("auto" resolved on this machine): the one its peaks are of."""
    devices = {p.get("device", "auto") for p in meta["parameters"].values()} - {None}
    return device_type(next(iter(devices), "auto"))


def measure_peaks(meta: dict, probe: str) -> dict:
    """This machine's peaks for the report's device (roofline.machine_peaks, cached), for the parts to set their steps
    against; {} where the profile says off."""
    if probe == "off":
        return {}
    kind = peaks_device(meta)
    log(f"this machine's peaks ({kind}): measured, or read from the cache where this machine measured them")
    peaks = roofline.machine_peaks(kind, **PEAK_PROBES[probe])
    conditions = peaks.get("conditions", {})
    log(f"      {'read from the cache' if conditions.get('source') == 'cache' else 'measured now'}"
        f" (measured {conditions.get('date', '?')})" + (f"; {conditions['cache_note']}" if conditions.get("cache_note")
                                                        else ""))
    return {kind: peaks}


def declared_parameters(notebook: Path) -> dict:
    return _declared(str(notebook), notebook.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _declared(notebook: str, mtime_ns: int) -> dict:
    return need("papermill").inspect_notebook(notebook)


def notebook_defaults(name: str) -> dict:
    """A notebook's parameters as its own parameters cell sets them (the literals among them)."""
    values = {}
    for key, spec in declared_parameters(NOTEBOOK_DIR / f"{name}.ipynb").items():
        try:
            values[key] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            pass
    return values


def notebook_parameters(profile: dict, name: str, declared: dict, fixed: dict) -> dict:
    """common (where declared) + the notebook's own entries + `fixed`; an undeclared or ill-typed entry is an error."""
    own = (profile.get("notebooks") or {}).get(name) or {}
    params = {k: v for k, v in (profile.get("common") or {}).items() if k in declared}
    for key, value in own.items():
        if key not in declared:
            raise ConfigError(f"profile {profile['name']}: notebook {name} has no parameter {key!r} "
                              f"(it has: {', '.join(declared)})")
        params[key] = value
    params.update({k: v for k, v in fixed.items() if k in declared})
    for key, value in params.items():  # each has a Spec: check_profile refused any other
        PARAMETERS[key].check(f"profile {profile['name']}: notebook {name} parameter {key}", value, "should be")
    return params


def new_report_dir(profile_name: str, results_root: Path) -> Path:
    """A new folder `results/<date>-<time>-<profile>[-n]`, reserved by creating it (mkdir fails where another
    report took the name, even in the same second: that one gets -2, -3...)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 100):
        out = results_root / (f"{stamp}-{profile_name}" + (f"-{n}" if n > 1 else ""))
        try:
            out.mkdir()
            return out.resolve()
        except FileExistsError:
            continue
    raise LabError(f"cannot find a free report folder name under {results_root}")


def kernel_manager(sockets: str):
    """Kernels on IPC sockets in the folder `sockets`, not loopback TCP or jupyter's default folder: two reports
    running at once cannot reach each other's kernels."""
    class IPCKernelManager(need("jupyter_client.manager").AsyncKernelManager):
        transport = need("traitlets").CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        def _ip_default(self) -> str:
            return os.path.join(sockets, "kernel")

    return IPCKernelManager


def execute(name: str, out: Path, parameters: dict, timeout) -> None:
    papermill = need("papermill")
    source, target = NOTEBOOK_DIR / f"{name}.ipynb", out / f"{name}.ipynb"
    try:
        with tempfile.TemporaryDirectory(prefix="lab-kernel-") as sockets:
            papermill.execute_notebook(str(source), str(target), parameters=parameters, kernel_name="python3",
                                       cwd=str(NOTEBOOK_DIR), progress_bar=False, execution_timeout=timeout,
                                       kernel_manager_class=kernel_manager(sockets))
    except papermill.PapermillExecutionError as exc:
        raise LabError(f"notebook {name} failed in cell {exc.cell_index + 1}: {exc.ename}: "
                       f"{str(exc.evalue).splitlines()[0] if exc.evalue else ''} "
                       f"(executed notebook: {target})") from exc


def run_report(profile_name: str, results_root=None, data=None, out=None, force=False, new=False) -> Path:
    """Run or resume a report (docs/running.md): an unfinished results/latest of the same profile is resumed unless
    `new`; a finished `out` is replaced only with `force`, once the plan is checked and the lock held."""
    profile = load_profile(profile_name)
    results_root = Path(results_root or ROOT / "results")
    check_writable(results_root)
    data = str(Path(data or ROOT / "data").resolve())
    out, meta, replace = _open_report(profile, results_root, Path(out).resolve() if out else None, force, new)
    resumed = meta is not None
    if not resumed:
        reserved = out is None
        out = out or new_report_dir(profile["name"], results_root)
        try:
            meta = _plan_report(profile, out, data)  # every check before anything is written
        except BaseException:
            if reserved:
                with contextlib.suppress(OSError):
                    out.rmdir()  # the name reserved, nothing written in it
            raise
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        if replace:
            for old in out.iterdir():
                if old.name != ".lock":
                    shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
        if resumed:
            kept = [n for n in meta["done"] if (out / f"{n}.ipynb").exists()]
            log(f"resuming report {out.name}: keeping {', '.join(kept) or 'nothing'}")
        else:
            save_json(out / "report.json", meta)
            log(f"report {out.name} ({meta['profile']} profile, {meta['dataset']} data) -> {out}")
        _point_latest(results_root, out)
        meta["environment"] = environment.collect()  # this session's machine (a resumed report: the latest)
        # a resumed report keeps the peaks its parts were set against, where they are of the device it runs on now
        if not (resumed and tables.report_peaks(out, peaks_device(meta))):
            rows = results.Rows(out, "report").start()
            for kind, peaks in measure_peaks(meta, profile.get("peak_probe", "full")).items():
                tables.save_peaks(rows, kind, peaks)
        save_json(out / "report.json", meta)
        started = time.perf_counter()
        if meta["dataset"] == "synthetic":  # made once, before the notebooks: not a cost of C2's run
            ensure_synthetic(Config(dataset="synthetic", data=data), log=log)
        total = len(meta["parameters"]) + 1
        timing = ReportTiming(meta, out, {n: notebook_defaults(n) for n in meta["parameters"]})
        with Watcher(out / "progress.jsonl", timing.plan, timing.estimate) as watcher, \
                mock.patch.dict(os.environ, {progress.ENV: str(out / "progress.jsonl")}):  # the kernels inherit it
            for i, (name, params) in enumerate(meta["parameters"].items(), 1):
                if name in meta["done"] and (out / f"{name}.ipynb").exists():
                    log(f"[{i}/{total}] {name}: finished earlier, kept")
                    watcher.end(name, meta["done"][name])
                    continue
                shutil.rmtree(out / name, ignore_errors=True)  # whatever an interrupted run left behind
                results.Rows(out, name).start()  # and its rows
                log(f"[{i}/{total}] {name} {({k: v for k, v in params.items() if k not in ('results_dir', 'data')})}")
                watcher.begin(name)
                t0 = time.perf_counter()
                execute(name, out, params, meta.get("cell_timeout"))
                meta["done"][name] = round(time.perf_counter() - t0, 1)
                watcher.end(name, meta["done"][name])
                log(f"      done in {meta['done'][name]:.1f} s (estimated {watcher.predicted[name]:.0f} s)")
                timing.finished(name, meta["done"][name], watcher.predicted[name], time.perf_counter() - started,
                                watcher)
                save_json(out / "report.json", meta)
            watcher.begin(SUMMARY)
            log(f"[{total}/{total}] {SUMMARY}")
            html, printed, errors = render(out, meta["profile"], meta.get("cell_timeout"))
        took = time.perf_counter() - started
        # a part that could not be drawn leaves the report unfinished: the same command draws it again
        meta["finished"] = None if errors else dt.datetime.now().astimezone().isoformat(timespec="seconds")
        meta["took_s"] = round(timing.actual(took), 1)
        save_json(out / "report.json", meta)
        timing.save_costs()
    log(f"report written in {clock(took)}: {html}" + (f" and {printed.pdf}" if printed else ""))
    log(timing.verdict(took))
    problem = render_problem(printed, errors)
    if problem:
        raise LabError(problem)
    return out


def render(out: Path, profile: str, timeout=None):
    """The report from its folder's two tables and report.json, measuring nothing: the summary notebook (every
    part it can draw, its tables as CSVs in tables/, its figures in figures/), report.html, and report.pdf with its
    tables fitted to the page. Returns (html, Printed or None, the summary's error lines)."""
    execute(SUMMARY, out, {"results_dir": str(out), "figures_dir": str(out / "figures"), "profile": profile},
            timeout)
    html = write_html(out / f"{SUMMARY}.ipynb", out / "report.html")
    return html, write_pdf(html, out / "report.pdf"), summary.read_errors(out)


def render_again(out) -> Path:
    """`python -m lab render REPORT`: a report made again from what its folder holds (report.json and the two
    tables), through the one path `make report` draws with; what it cannot draw is named in one line, exit 1."""
    out = Path(out).resolve()
    meta = results.report_meta(out)
    with _lock(out):
        started = time.perf_counter()
        html, printed, errors = render(out, meta["profile"], meta.get("cell_timeout"))
    log(f"report rendered again from its tables in {clock(time.perf_counter() - started)}, nothing measured: {html}"
        + (f" and {printed.pdf}" if printed else ""))
    if not meta.get("finished"):
        log(f"report {out.name} is unfinished: {len(meta.get('done', {}))} of {len(meta.get('parameters', {}))} "
            "notebooks ran; the parts that did not run say so")
    problem = render_problem(printed, errors)
    if problem:
        raise LabError(problem)
    return html


def render_problem(printed, errors: list[str]) -> str | None:
    """What keeps a written report from being whole, in one line (None: nothing)."""
    problems = []
    if errors:
        problems.append(f"the report is written without {'; '.join(errors)} (the other parts are drawn; the "
                        "measurements are kept, and the same command draws the report again without measuring)")
    if printed and printed.problem:
        problems.append(printed.problem)
    return "; ".join(problems) or None


def _open_report(profile: dict, results_root: Path, out: Path | None, force: bool, new: bool):
    """(folder, report.json, False): resume it; (folder, None, True): replace it; (folder or None, None, False): new."""
    candidate = out if out is not None else (None if new else results_root / "latest")
    if candidate is None or not (candidate / "report.json").exists():
        return out, None, False
    way_out = ("start a new report with --new, or delete it" if out is None else
               "add --force to replace it, or choose another --out")
    try:
        meta = load_json(candidate / "report.json", way_out=way_out)
        version = results.schema_of(candidate, meta)
        if version == results.SCHEMA:
            results.check_meta(candidate / "report.json", meta, way_out, required=("profile", "parameters", "done"))
    except BadFile:
        if out is not None and force:
            return out, None, True
        raise
    if version != results.SCHEMA:  # another lab version's: never resumed by this one
        if out is None:
            log(f"the latest report {candidate.resolve().name} is of schema {version}, not {results.SCHEMA}: starting "
                "a new report")
            return None, None, False
        if not force:
            raise ConfigError(f"{out} holds a report of schema {version} (this lab writes {results.SCHEMA}); add "
                              "--force to replace it, or choose another --out")
        return out, None, True
    same = meta.get("profile") == profile["name"] and meta.get("profile_settings") == profile
    if not meta.get("finished") and same:
        return candidate.resolve(), meta, False
    if out is None:
        if not meta.get("finished") and meta.get("profile") == profile["name"]:
            log(f"profile {profile['name']} changed since the unfinished report {candidate.resolve().name}: "
                "starting a new report")
        return None, None, False
    if not force:
        state = "finished report" if meta.get("finished") else "report made with other settings"
        raise ConfigError(f"{out} already holds a {state} ({meta.get('profile')} profile); add --force to "
                          "replace it, or choose another --out")
    return out, None, True


def _plan_report(profile: dict, out: Path, data: str) -> dict:
    """A new report's plan: resolve the data set once and check every notebook's parameters. Writes nothing."""
    settings = json.loads(json.dumps(profile))  # as read, before the data set is resolved
    declared = {n: declared_parameters(NOTEBOOK_DIR / f"{n}.ipynb") for n in NOTEBOOKS}
    common = profile["common"] = dict(profile.get("common") or {})
    for key in common:
        if not any(key in d for d in declared.values()):
            raise ConfigError(f"profile {profile['name']}: common has parameter {show(key)} but no notebook has it")
    fixed = {"results_dir": str(out), "data": data}
    for name in NOTEBOOKS:  # every value checked before the data set is resolved (which may download)
        notebook_parameters(profile, name, declared[name], fixed)
    common["dataset"] = resolve_dataset(common.get("dataset", "auto"), data, log)
    if common["dataset"] == "cifar10":
        load_dataset(Config(dataset="cifar10", data=data), train=True, log=log)
    return {"id": out.name, "profile": profile["name"], "profile_settings": settings,
            "description": profile.get("description", ""),
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": git_commit(),
            "dataset": common["dataset"], "cell_timeout": profile.get("cell_timeout"),
            "parameters": {n: notebook_parameters(profile, n, declared[n], fixed) for n in NOTEBOOKS},
            "done": {}, "finished": None, "schema": results.SCHEMA}


@contextmanager
def _lock(out: Path):
    """An exclusive flock on out/.lock, released whenever the process ends (kill -9 too): a killed report can be
    resumed, a running one not entered twice."""
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise LabError(f"report {out} is being written by process {holder}; wait for it or stop it first") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _point_latest(results_root: Path, out: Path) -> None:
    tmp = results_root / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(out, results_root.resolve()))
    tmp.replace(results_root / "latest")
