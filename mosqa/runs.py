"""What every training job shares: config resolution, run directories, checkpoints, metrics,
device and distributed set-up, early stopping.

A run directory holds everything needed to reload a model (`config.yaml` + `best.pt`), so
models are passed around as directories. Checkpoints hold only tensors and plain Python values
and are loaded with `weights_only=True`: loading one never runs pickled code.
"""

import contextlib
import csv
import datetime
import fcntl
import io
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from rich.console import Console
from rich.table import Table

from mosqa.audio import atomic_csv, atomic_path
from mosqa.checks import check_counts, output_dir, run_folder
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


# Flags that may change when resuming: they do not alter the trajectory (epochs only extends it).
RESUMABLE = ("epochs", "device", "threads", "num_workers", "patience", "tensorboard")
TENSORBOARD_MISSING = ("--tensorboard needs the optional tensorboard package: "
                       "pip install 'mosqa[tensorboard]' (curves.png is written without it)")


def warn(message: str, console: Console | None = None) -> None:
    (console or Console(stderr=True)).print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def renamed_keys(data: dict, renamed: dict, where, console=None) -> dict:
    """Old option names -> new ones, each with a warning (old names are accepted for one release)."""
    out = {}
    for key, value in data.items():
        if key in renamed:
            warn(f"{where}: {key!r} is deprecated, use {renamed[key]!r} (the old name goes in the next "
                 "release)", console)
            if value is None or out.get(renamed[key]) is not None:
                continue
            key = renamed[key]
        out[key] = value
    return out


def check_kind(data: dict, kind: str, where) -> dict:
    """Drop `kind` (written by the trainer into config.yaml), refusing another command's config."""
    found = data.get("kind", kind)
    if found != kind:
        raise MosqaError(f"{where}: this is a train-{found} config; train-{kind} needs a train-{kind} one")
    return {k: v for k, v in data.items() if k != "kind"}


def resolve_config(defaults: dict, config_file=None, overrides: dict | None = None, kind: str = "qa",
                   renamed: dict | None = None, console=None) -> tuple[dict, set]:
    """defaults < YAML file < explicit command-line values (None means 'not given').

    Returns the config and the keys the user set. Unknown keys in the file are refused so a typo
    never silently falls back to a default; `renamed` old keys are accepted with a warning.
    """
    cfg, explicit = dict(defaults), set()
    if config_file:
        data = {k.replace("-", "_"): v for k, v in load_yaml(config_file).items()}
        data = renamed_keys(check_kind(data, kind, config_file), renamed or {}, config_file, console)
        unknown = sorted(set(data) - set(defaults))
        if unknown:
            raise MosqaError(f"{config_file}: unknown option(s) {', '.join(unknown)}")
        cfg.update(data)
        explicit |= set(data)
    given = renamed_keys({k: v for k, v in (overrides or {}).items() if v is not None}, renamed or {},
                         "options", console)
    cfg.update(given)
    return cfg, explicit | set(given)


def as_floats(cfg: dict, keys, where) -> None:
    """Read options as floats even when YAML gives them as text or integers (PyYAML reads `1e-3` as text)."""
    for key in keys:
        if isinstance(cfg[key], str | int) and not isinstance(cfg[key], bool):
            try:
                cfg[key] = float(cfg[key])
            except ValueError:
                raise MosqaError(f"{where or 'options'}: {key} must be a number, got {cfg[key]!r}") from None


def check_choice(cfg: dict, key: str, choices) -> None:
    if cfg[key] not in choices:
        raise MosqaError(f"{_flag(key)} must be one of {', '.join(choices)}, got {cfg[key]!r}")


def refuse_unused(explicit: set, options, uses, owner: str) -> None:
    """An option `owner` does not use, set by the user, is an error rather than silently ignored."""
    unused = sorted((explicit & set(options)) - set(uses))
    if unused:
        raise MosqaError(f"{', '.join(_flag(k) for k in unused)}: no effect on {owner} "
                         f"(it uses: {', '.join(_flag(k) for k in uses) or 'none of these options'})")


def resume_config(run_dir, kind: str, overrides: dict, renamed: dict | None = None, console=None) -> dict:
    """A run's own config for --resume; only RESUMABLE flags may change it."""
    run_dir = Path(run_dir)
    if not (run_dir / "last.pt").is_file():
        raise MosqaError(f"{run_dir}: no last.pt to resume from (not a train-{kind} run directory?)")
    cfg = check_kind(load_run_config(run_dir), kind, run_dir / "config.yaml")
    cfg = renamed_keys(cfg, renamed or {}, run_dir / "config.yaml", console)
    given = {k: v for k, v in overrides.items() if v is not None}
    fixed = sorted(set(given) - set(RESUMABLE))
    if fixed:
        raise MosqaError(
            f"--resume continues {run_dir}'s own config; only {', '.join(map(_flag, RESUMABLE))} may "
            f"change, not {', '.join(map(_flag, fixed))}"
        )
    check_counts(cfg | given, ("epochs",))
    return cfg | given


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


def reserve_run_dir(exp_dir, name: str) -> tuple[Path, Path]:
    """(final, partial): `<exp_dir>/<name><YYYYmmdd_HHMMSS>/`, the log's naming, and the hidden folder
    the run lives in until its first checkpoint. A suffix avoids same-second clashes."""
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        final = exp_dir / (f"{name}{stamp}" + (f"_{n}" if n else ""))
        partial = exp_dir / f".{final.name}.partial"
        if not final.exists():
            try:
                partial.mkdir()
                return final, partial
            except FileExistsError:
                pass
        n += 1


def find_checkpoint(path, prefer: str = "best.pt") -> tuple[Path, Path]:
    """Accept a run directory or a checkpoint file; return (run_dir, checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise MosqaError(f"{path}: no such run directory or checkpoint")
    run_dir = run_folder(path)
    if path.is_file():
        return run_dir, path
    for name in (prefer, "best.pt", "last.pt"):
        if (path / name).is_file():
            return path, path / name
    raise MosqaError(f"{path}: run directory holds no best.pt or last.pt")


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
        with atomic_csv(self.path, fields) as w:
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

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


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


def set_threads(threads: int, dist: Distributed) -> None:
    """`threads` torch CPU threads; 0 = torch's choice, split between DDP processes on CPU."""
    if threads:
        torch.set_num_threads(threads)
    elif dist.enabled and dist.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world_size))


def grad_scaler(amp: bool, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for float16 autocast; bfloat16 (where CUDA has it) and CPU need none."""
    fp16 = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler(device.type, enabled=fp16)


# ---------------------------------------------------------------- one writer per run


class RunLock:
    """One writer per run directory: an advisory `flock` on `<run>/.lock`, which holds the writer's pid.

    Two trainers writing one run (two `--resume RUN` at once, or a resume of a run still training)
    would interleave last.pt, metrics.csv and train.log. Only the main process takes the lock (the other
    DDP ranks write nothing to the run); every rank learns whether it got it, so a refused job stops
    whole. The kernel drops the lock with the process, so the file a killed run leaves blocks nothing.
    """

    NAME = ".lock"

    def __init__(self, run_dir, dist: "Distributed"):
        self.file = None
        refused = dist.broadcast_object(self._take(Path(run_dir)) if dist.is_main else None)
        if refused:
            raise MosqaError(refused)

    def _take(self, run_dir: Path) -> str | None:
        """None once held, else why not."""
        handle = open(run_dir / self.NAME, "a+")  # not "w": the holder's pid must survive until read
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            return (f"{run_dir}: another process (pid {holder}) is training this run; wait for it to "
                    "finish or stop it, then resume")
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.file = handle
        return None

    def release(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------- one optimisation step


def stop_if_not_finite(loss: torch.Tensor, dist: Distributed, run_dir, epoch: int) -> None:
    """Every rank stops together, before the bad step is applied; last.pt stays the last good state."""
    bad = float(not torch.isfinite(loss).item())
    if dist.all_mean(bad) > 0:
        raise MosqaError(
            f"{run_dir}: loss became NaN/inf at epoch {epoch + 1}; stopped, the last "
            f"good checkpoint is {Path(run_dir) / 'last.pt'} (try a lower --lr)"
        )


class ClosedFormLR(torch.optim.lr_scheduler.LambdaLR):
    """A LambdaLR whose restore also re-applies its learning rate to the optimiser.

    Its state is only the step count, so a run resumed with more epochs re-plans the rest of the curve;
    the optimiser's saved learning rate (restored first: holders load in the order they are named)
    belongs to the old curve and is overwritten here.
    """

    def load_state_dict(self, state_dict: dict) -> None:
        # Runs saved before this class held a CosineAnnealingLR: same step count, no lambda entry.
        state_dict = {"lr_lambdas": [None] * len(self.base_lrs)} | state_dict
        super().load_state_dict(state_dict)
        groups = self.optimizer.param_groups
        for group, base, factor in zip(groups, self.base_lrs, self.lr_lambdas, strict=True):
            group["lr"] = base * factor(self.last_epoch)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def cosine_schedule(optimizer, total_steps: int) -> ClosedFormLR:
    """Cosine decay to 0 over `total_steps` scheduler steps, then held at 0."""
    total = max(1, total_steps)
    return ClosedFormLR(optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))


def optimiser_step(loss: torch.Tensor, scaler, steps, grad_clip: float) -> None:
    """Backpropagate `loss`, then per (optimizer, parameters) in `steps`: clip the gradient norm to
    `grad_clip` (0 = off) and step; one scaler update for all."""
    for opt, _ in steps:
        opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    for opt, params in steps:
        if grad_clip > 0:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(opt)
    scaler.update()


# ---------------------------------------------------------------- the run skeleton


class Run:
    """One training run: directory, config.yaml, train.log, metrics.csv, early stopping and the named
    state holders (model, optimizer, scheduler, scaler ...) that last.pt and best.pt save as one.

    A new run lives in a hidden `.<name>.partial` folder until its first checkpoint, then takes its
    name; a run that fails before that leaves nothing behind (a killed one, only the hidden folder).
    Both trainers open it with `with Run(...) as run:` and drive it through `fit`; they bring only
    their batches, losses and validation.
    """

    def __init__(self, kind: str, cfg: dict, stored: dict, dist: Distributed, mode: str, resume=None,
                 console=None):
        self.kind, self.cfg, self.dist = kind, cfg, dist
        self.console = console or Console(stderr=True)
        self.lock = None  # a resumed run is locked by `start`, before its data are loaded
        if resume is None:
            made = [str(p) for p in reserve_run_dir(cfg["exp_dir"], cfg["name"])] if dist.is_main else None
            self.final, self.path = (Path(p) for p in dist.broadcast_object(made))
            self.lock = RunLock(self.path, dist)  # moves with the folder when it takes its final name
        else:
            self.final = self.path = Path(resume)
        if dist.is_main:  # on resume this records changed flags (e.g. a longer --epochs) with the run
            save_yaml(self.path / "config.yaml", {"kind": kind} | stored)
        self.log = RunLog(self.path / "train.log", dist.is_main, self.console)
        self.metrics = MetricsLog(self.path / "metrics.csv")
        self.stopper = EarlyStopping(cfg["early_stop_metric"], mode, cfg["patience"])
        self.holders: dict = {}
        self.start = 0
        self.best_epoch: int | None = None
        self._board = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._board is not None:
            self._board.close()
        if exc_type is not None and self.dist.is_main and not self.started:
            shutil.rmtree(self.path, ignore_errors=True)
        if self.lock is not None:
            self.lock.release()

    @property
    def started(self) -> bool:
        """True once the run directory has its final name (after the first checkpoint)."""
        return self.path == self.final

    def hold(self, **holders) -> int:
        """Name the objects whose state is the run's state (None = not in this run); on resume,
        restore them from last.pt. Returns the number of epochs already done."""
        self.holders = {k: v for k, v in holders.items() if v is not None} | {"early_stop": self.stopper}
        if not (self.started and (self.path / "last.pt").is_file()):
            return 0
        last = self.path / "last.pt"
        state = load_checkpoint(last, map_location=self.dist.device)
        state.setdefault("early_stop", state.get("early"))  # older train-se checkpoints
        for name, holder in self.holders.items():
            if state.get(name) is not None:
                holder.load_state_dict(state[name])
            elif holder.state_dict():  # e.g. a disabled scaler has nothing to restore
                raise MosqaError(f"{last}: holds no {name} state to resume from")
        self.start = int(state["epoch"])
        best = self.path / "best.pt"
        self.best_epoch = int(load_checkpoint(best)["epoch"]) if best.is_file() else None
        if self.dist.is_main:
            self.metrics.truncate(self.start)
        self.log(f"resumed from {last} after epoch {self.start}")
        return self.start

    def end_epoch(self, epoch: int, row: dict, value: float) -> bool:
        """Early stopping, checkpoints (best.pt when `value` improved), metrics and log line."""
        improved = self.stopper.update(value)
        if improved:
            self.best_epoch = epoch + 1
        if self.dist.is_main:
            state = {name: h.state_dict() for name, h in self.holders.items()}
            state |= {"epoch": epoch + 1, "metrics": {k: float(v) for k, v in row.items()}}
            if improved:
                save_checkpoint(self.path / "best.pt", state)
            save_checkpoint(self.path / "last.pt", state)
            every = self.cfg.get("keep_every")
            if every and (epoch + 1) % every == 0:  # train-se --keep-every: a ladder of earlier enhancers
                save_checkpoint(self.path / f"epoch_{epoch + 1:03d}.pt", {"model": state["model"],
                                                                          "epoch": epoch + 1})
            if not self.started:
                os.rename(self.path, self.final)
        self.path = self.final
        self.log.path, self.metrics.path = self.path / "train.log", self.path / "metrics.csv"
        if self.dist.is_main:
            self.metrics.append(row)
        self.log(
            f"epoch {epoch + 1}/{self.cfg['epochs']}: "
            + "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "seconds"))
            + f"  {row['seconds']:.1f}s" + ("  *best" if improved else "")
        )
        self.dist.barrier()
        return improved

    def draw(self, losses) -> None:
        """curves.png beside metrics.csv, redrawn from all its rows (main process)."""
        from mosqa.plots import curves_png

        curves_png(self.path / "curves.png", self.metrics.rows, losses, f"valid_{self.stopper.metric}",
                   self.best_epoch)

    @property
    def board(self):
        """The run's TensorBoard writer (`<run>/tensorboard/`) with --tensorboard on the main process, else
        None. Made after the first checkpoint, when the folder has its final name; on resume it drops
        the events of epochs that are being trained again."""
        if self._board is None and self.cfg.get("tensorboard") and self.dist.is_main and self.started:
            self._board = tensorboard_writer(self.path / "tensorboard", purge_step=self.start + 1)
        return self._board

    def summary(self, columns) -> Table:
        """metrics.csv as a table, the epoch best.pt holds marked."""
        best = self.best_epoch
        table = Table(title=f"{self.path.name}  (* = best.pt)")
        cols = ["epoch", *(c for c in columns if any(c in r for r in self.metrics.rows))]
        for c in cols:
            table.add_column(c, justify="right")
        for r in self.metrics.rows:
            mark = " *" if best is not None and int(r["epoch"]) == best else ""
            table.add_row(f"{r['epoch']}{mark}", *(f"{float(r[c]):.4g}" for c in cols[1:]))
        return table


def fit(run: Run, train_epoch, validate, after_validation=None, columns=(), losses=("train_loss",),
        to_board=None) -> Path:
    """The epoch loop both trainers share.

    `train_epoch(epoch)` -> {"train_loss", "lr", ...}; `validate(epoch)` -> {"valid_<metric>", ...} on
    every rank; `after_validation(value)` (e.g. a plateau scheduler) sees the early-stopping value.
    After each epoch the main process redraws curves.png (`losses` are the columns of its loss panel)
    and, with --tensorboard, writes the row's scalars and whatever `to_board(epoch, writer)` adds.
    The global RNG is re-seeded from seed and epoch at each epoch start, so dropout draws depend on the
    epoch alone and a resumed run continues exactly where the interrupted one stopped.
    """
    for epoch in range(run.start, run.cfg["epochs"]):
        if run.stopper.should_stop:
            break
        t0 = time.time()
        torch.manual_seed(run.cfg["seed"] * 1_000_003 + epoch)
        row = {"epoch": epoch + 1, **train_epoch(epoch), **validate(epoch)}
        value = row[f"valid_{run.stopper.metric}"]
        if not math.isfinite(value):  # a diverged epoch is never the best
            value = -math.inf if run.stopper.mode == "max" else math.inf
        if after_validation is not None:
            after_validation(value)
        row |= {"seconds": time.time() - t0}
        run.end_epoch(epoch, row, value)
        if run.dist.is_main:
            run.draw(losses)
        if run.board is not None:
            for name, v in row.items():
                if name != "epoch":
                    run.board.add_scalar(name, v, epoch + 1)
            if to_board is not None:
                to_board(epoch, run.board)
            run.board.flush()
    if run.stopper.should_stop:
        run.log(f"early stop: {run.stopper.metric} did not improve for {run.stopper.bad_epochs} epochs")
    if run.dist.is_main:
        run.console.print(run.summary(columns))
    return run.path


def require_tensorboard() -> None:
    """Before any work: --tensorboard without its optional package is one clear line, not an ImportError."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise MosqaError(TENSORBOARD_MISSING)


def tensorboard_writer(log_dir, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MosqaError(TENSORBOARD_MISSING) from None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def start(kind: str, cfg: dict | None, resume, overrides: dict | None, body, renamed=None,
          console=None) -> Path:
    """Take a new run's `cfg`, or the config of the run directory `resume` (with the RESUMABLE
    `overrides`), set up devices and processes, and return what `body(cfg, dist)` returns.

    A resumed run is checked writable and locked (RunLock) before its data are loaded; one that has
    already done its --epochs is left as it is."""
    if resume is not None:
        cfg = resume_config(resume, kind, overrides or {}, renamed, console)
        output_dir(resume, "--resume")
    if cfg.get("tensorboard"):
        require_tensorboard()
    dist = Distributed(cfg["device"])
    say = warn if dist.is_main else (lambda *_: None)
    try:
        with RunLock(resume, dist) if resume is not None else contextlib.nullcontext():
            done = int(load_checkpoint(Path(resume) / "last.pt")["epoch"]) if resume is not None else 0
            if done >= cfg["epochs"]:  # rewriting config.yaml with the smaller --epochs would be a lie
                say(f"{resume}: nothing trained: it has done {done} epoch(s) and --epochs is "
                    f"{cfg['epochs']}; give a larger --epochs to continue it", console)
                return Path(resume)
            if resume is None and cfg["amp"] and dist.device.type != "cuda":
                say(f"--amp: mixed precision needs CUDA; training on {dist.device.type} in full precision "
                    "(config.yaml records amp: false)", console)
                cfg = cfg | {"amp": False}
            set_threads(cfg["threads"], dist)
            seed_everything(cfg["seed"])
            return body(cfg, dist)
    finally:
        dist.close()
