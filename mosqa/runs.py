"""What every training job shares: config resolution, run directories, checkpoints, metrics,
device and distributed set-up, early stopping.

A run directory holds everything needed to reload a model (`config.yaml` + `best.pt`), so
models are passed around as directories. Checkpoints hold only tensors and plain Python values
and are loaded with `weights_only=True`: loading one never runs pickled code.
"""

import csv
import datetime
import io
import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from rich.console import Console

from mosqa.audio import atomic_path
from mosqa.errors import MosqaError

# ---------------------------------------------------------------- config


def load_yaml(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MosqaError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise MosqaError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise MosqaError(f"{path}: config must be a mapping of option: value")
    return data


def resolve_config(defaults: dict, config_file=None, overrides: dict | None = None) -> dict:
    """defaults < YAML file < explicit command-line values (None means 'not given').

    Unknown keys in the file are refused so a typo never silently falls back to a default.
    """
    cfg = dict(defaults)
    if config_file:
        data = load_yaml(config_file)
        unknown = sorted(set(data) - set(defaults))
        if unknown:
            raise MosqaError(f"{config_file}: unknown option(s) {', '.join(unknown)}")
        cfg.update({k.replace("-", "_"): v for k, v in data.items()})
    for key, value in (overrides or {}).items():
        if value is not None:
            cfg[key] = value
    return cfg


def save_yaml(path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(_plain(data), sort_keys=False))


def _plain(value):
    """YAML-safe copy: Paths -> str, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------- run directories


def new_run_dir(exp_dir, name: str) -> Path:
    """`<exp_dir>/<name><YYYYmmdd_HHMMSS>/`, the log's naming; a suffix avoids same-second clashes."""
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    base = Path(exp_dir) / f"{name}{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        run_dir = base.with_name(f"{base.name}_{n}")
        n += 1
    run_dir.mkdir(parents=True)
    return run_dir


def find_checkpoint(path, prefer: str = "best.pt") -> tuple[Path, Path]:
    """Accept a run directory or a checkpoint file; return (run_dir, checkpoint)."""
    path = Path(path)
    if path.is_dir():
        for name in (prefer, "best.pt", "last.pt"):
            if (path / name).is_file():
                return path, path / name
        raise MosqaError(f"{path}: run directory holds no best.pt or last.pt")
    if path.is_file():
        return path.parent, path
    raise MosqaError(f"{path}: no such run directory or checkpoint")


def load_run_config(run_dir) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise MosqaError(f"{run_dir}: no config.yaml beside the checkpoint")
    return load_yaml(run_dir / "config.yaml")


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(path, state: dict) -> None:
    """Atomic: a crash mid-write leaves the previous checkpoint intact."""
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_checkpoint(path, map_location="cpu") -> dict:
    try:
        return torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise MosqaError(f"{path}: no such checkpoint") from None
    except Exception:  # torch's own text advises weights_only=False, which would run pickled code
        raise MosqaError(f"{path}: not a readable mosqa checkpoint (corrupt, truncated, or not saved by "
                         "mosqa)") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- metrics log


class MetricsLog:
    """`metrics.csv`, one row per epoch; rewritten atomically so a crash never truncates it."""

    def __init__(self, path):
        self.path = Path(path)
        self.rows: list[dict] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]

    def append(self, row: dict) -> None:
        self.rows.append({k: _fmt(v) for k, v in row.items()})
        self._write()

    def truncate(self, epochs: int) -> None:
        """Keep the first `epochs` rows (resume from a checkpoint older than the log)."""
        self.rows = self.rows[:epochs]
        self._write()

    def _write(self) -> None:
        fields: list[str] = []
        for r in self.rows:
            fields += [k for k in r if k not in fields]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(self.rows)


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


class RunLog:
    """Console + train.log lines (main process only)."""

    def __init__(self, path, enabled: bool, console=None):
        self.path, self.enabled = Path(path), enabled
        self.console = console or Console(stderr=True)

    def __call__(self, msg: str) -> None:
        if self.enabled:
            self.console.print(msg, highlight=False, soft_wrap=True)
            with open(self.path, "a") as f:
                f.write(msg + "\n")


# ---------------------------------------------------------------- early stopping


class EarlyStopping:
    """Tracks the best value of one valid metric; `mode` is 'min' (mse, loss) or 'max' (lcc, pesq)."""

    def __init__(self, metric: str, mode: str, patience: int, best=None, bad_epochs: int = 0):
        if mode not in ("min", "max"):
            raise MosqaError(f"early stopping mode must be min or max, got {mode!r}")
        self.metric, self.mode, self.patience = metric, mode, patience
        self.best, self.bad_epochs = best, bad_epochs

    def update(self, value: float) -> bool:
        """Record an epoch's value; True when it is the best so far."""
        improved = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}


# ---------------------------------------------------------------- device and distributed


def pick_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise MosqaError("--device cuda asked for, but no CUDA device is available")
    if spec not in ("cpu",) and not spec.startswith("cuda"):
        raise MosqaError(f"--device must be auto, cpu or cuda[:N], got {spec!r}")
    return torch.device(spec)


class Distributed:
    """Single process, or one process of a `torchrun` job (read from its environment variables)."""

    def __init__(self, device_spec: str = "auto"):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1
        device = pick_device(device_spec)
        if self.enabled and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def all_mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def autocast(device: torch.device, enabled: bool):
    """Mixed precision on CUDA only (bf16 where supported); a no-op context on CPU."""
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled and device.type == "cuda")
