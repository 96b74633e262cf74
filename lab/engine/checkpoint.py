"""Checkpoints: everything a run needs to continue where it stopped, written atomically, checked on resume
against the configuration and the data it was trained on."""
from __future__ import annotations

import random
from pathlib import Path

import torch

from ..core import files
from ..core.config import Config
from ..core.errors import BadFile, ConfigError, LabError

# Fields a checkpoint must share with the run that resumes it: anything else would train another model
# (the optimizer's lr, momentum and weight decay come back from its saved state) or see other batches.
RESUME_MUST_MATCH = ("batch_norm", "optimizer", "lr", "momentum", "weight_decay", "dataset", "batch_size",
                     "max_batches", "seed", "loader", "amp", "channels_last", "fast", "augment", "sync_bn",
                     "synthetic_train", "synthetic_test")


def save_checkpoint(path, model, optimizer, epoch: int, config: Config, run_id: str = "", world_size: int = 1,
                    data_fingerprint: dict | None = None, scaler=None) -> None:
    """Everything needed to continue: weights, optimizer state, epoch, RNG states, config, run id, the data's
    fingerprint (lab.data.cifar10.fingerprint) and the fp16 GradScaler's state; written atomically."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "run_id": run_id,
             "world_size": world_size, "config": config.to_dict(), "data": data_fingerprint,
             "scaler": scaler.state_dict() if scaler is not None else None,
             "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                     "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}}
    with files.atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path, config: Config, world_size: int = 1) -> dict:
    """Load with weights_only=True (no pickled code runs) and check it belongs to this configuration."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--resume: no checkpoint at {path}; run without --resume to start from scratch")
    way_out = "delete it and start again without --resume"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["config"]
        state["model"], state["optimizer"], state["epoch"]
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise LabError(f"--resume: checkpoint {path} is unreadable ({type(exc).__name__}); {way_out}") from exc
    if not isinstance(saved, dict):
        raise BadFile(path, f"is {type(saved).__name__}, not the run's settings", "config", way_out)
    if isinstance(state["epoch"], bool) or not isinstance(state["epoch"], int) or state["epoch"] < 0:
        raise BadFile(path, f"is {state['epoch']!r}, not an epoch number", "epoch", way_out)
    differ = [f"{k}={saved.get(k)!r} (now {getattr(config, k)!r})" for k in RESUME_MUST_MATCH
              if saved.get(k) != getattr(config, k)]
    if state.get("world_size", 1) != world_size:  # each rank's shard, and so every batch, would differ
        differ.append(f"world_size={state.get('world_size', 1)} (now {world_size})")
    if differ:
        raise ConfigError(f"--resume: checkpoint {path} was made with a different configuration: "
                          f"{', '.join(differ)}")
    return state


def check_same_data(state: dict, fingerprint: dict, path) -> None:
    """A resumed run must train on its checkpoint's data: the same kind and batch files of the same contents."""
    saved = state.get("data")
    if not isinstance(saved, dict) or not isinstance(saved.get("sha256"), dict):
        raise ConfigError(f"--resume: checkpoint {path} does not record which data it was trained on (it predates "
                          "data fingerprints), so resuming could mix data sets; start again without --resume")
    if (saved.get("dataset"), saved["sha256"]) == (fingerprint["dataset"], fingerprint["sha256"]):
        return  # the folder may differ: moved identical data is the same data
    if saved.get("dataset") != fingerprint["dataset"]:
        differ = f"it was trained on {saved.get('dataset')} data, this run uses {fingerprint['dataset']}"
    else:
        names = sorted(set(saved["sha256"]) | set(fingerprint["sha256"]))
        changed = [n for n in names if saved["sha256"].get(n) != fingerprint["sha256"].get(n)]
        differ = (f"the contents of {', '.join(changed)} in {fingerprint['folder']} differ from the "
                  f"{saved.get('dataset')} files it was trained on")
    raise ConfigError(f"--resume: checkpoint {path} was trained on other data: {differ}; resume with that data "
                      "or start again without --resume")


def restore_scaler(scaler, state: dict) -> None:
    """Put the fp16 GradScaler's saved loss scale and growth tracker back (nothing to do without either)."""
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])

