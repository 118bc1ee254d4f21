"""`mosqa train-qa`: train a non-intrusive quality model on cached features.

Config: defaults < YAML (--config) < flags. The resolved config saved in the run directory is flat
(front end, model options, loss options, training settings, list paths) and holds only options that
apply to the architecture, so it both reloads the model and works again as a --config file.

Exact resume: the batch order comes from a generator keyed by seed and epoch, and the global RNG
(dropout) is re-seeded from seed and epoch at every epoch start, so restoring model, optimiser,
scheduler and early-stopping state from last.pt continues exactly where the run stopped.
"""

import math
import os
import time
import typing
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from mosqa.data import BucketBatchSampler, FeatureSet, collate, load_features
from mosqa.errors import MosqaError
from mosqa.evaluate import predict
from mosqa.frontend import FrontEnd
from mosqa.lists import read_list
from mosqa.losses import LossOptions, build_loss
from mosqa.metrics import correlation_metrics
from mosqa.models import CLS_ONLY, COMMON, MODELS, ModelOptions, build_model
from mosqa.progress import progress_bar
from mosqa.runs import (
    Distributed,
    EarlyStopping,
    MetricsLog,
    RunLog,
    autocast,
    load_checkpoint,
    load_run_config,
    load_yaml,
    new_run_dir,
    resolve_config,
    save_checkpoint,
    save_yaml,
    seed_everything,
    unwrap,
)

TRAINING = {
    "arch": "qualitynet",
    "train": None,  # list paths
    "valid": None,
    "loss": "norm-mse",
    "epochs": 30,
    "batch_size": 16,
    "lr": 1e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "scheduler": "none",
    "lr_factor": 0.5,  # plateau: lr *= factor after lr_patience epochs without improvement
    "lr_patience": 2,
    "grad_clip": 5.0,  # max gradient norm; 0 = off
    "early_stop_metric": "lcc",
    "patience": 10,  # 0 = never stop early
    "seed": 0,
    "device": "auto",
    "amp": False,
    "threads": 0,  # torch CPU threads; 0 = torch's choice (split between DDP processes)
    "num_workers": 0,
    "bucket_batches": 20,  # batches per length-sorted bucket
    "cache_dir": None,  # default <exp_dir>/.cache
    "exp_dir": "exp",
    "name": None,  # default from arch and tags, e.g. crn_cp_qn
}
FRONTEND_KEYS = tuple(f.name for f in fields(FrontEnd))
MODEL_KEYS = tuple(f.name for f in fields(ModelOptions))
LOSS_KEYS = tuple(f.name for f in fields(LossOptions))
# Front-end keys default to None so that an architecture's own front end applies unless the user sets one.
DEFAULTS = {
    **dict.fromkeys(FRONTEND_KEYS),
    **asdict(ModelOptions()),
    **asdict(LossOptions()),
    **TRAINING,
}
assert len(DEFAULTS) == len(FRONTEND_KEYS) + len(MODEL_KEYS) + len(LOSS_KEYS) + len(TRAINING), "option clash"

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}
METRIC_MODES = {"lcc": "max", "srcc": "max", "mse": "min"}
SCHEDULERS = {
    "none": lambda opt, cfg: None,
    "cosine": lambda opt, cfg: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg["epochs"])),
    "plateau": lambda opt, cfg: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=METRIC_MODES[cfg["early_stop_metric"]], factor=cfg["lr_factor"], patience=cfg["lr_patience"]
    ),
}
# Options read as floats even when YAML gives them as text or integers (PyYAML reads `1e-3` as a string).
FLOAT_KEYS = {k for k, v in TRAINING.items() if isinstance(v, float)} | {
    name for cls in (FrontEnd, ModelOptions, LossOptions)
    for name, hint in typing.get_type_hints(cls).items() if hint is float or float in typing.get_args(hint)}
# Flags that may change when resuming: they do not alter the trajectory (epochs only extends it).
RESUMABLE = ("epochs", "device", "threads", "num_workers", "patience")


# ---------------------------------------------------------------- config


def _choice(cfg: dict, key: str, choices) -> None:
    if cfg[key] not in choices:
        raise MosqaError(f"--{key.replace('_', '-')} must be one of {', '.join(choices)}, got {cfg[key]!r}")


def resolve(config_file=None, overrides: dict | None = None) -> dict:
    """The complete, checked config of a new run: every value the run will use."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    explicit = set(overrides)
    if config_file:
        explicit |= {k.replace("-", "_") for k in load_yaml(config_file)}
    cfg = resolve_config(DEFAULTS, config_file, overrides)
    for key in FLOAT_KEYS:
        if isinstance(cfg[key], str | int) and not isinstance(cfg[key], bool):
            try:
                cfg[key] = float(cfg[key])
            except ValueError:
                where = config_file or "options"
                raise MosqaError(f"{where}: {key} must be a number, got {cfg[key]!r}") from None
    _choice(cfg, "arch", MODELS)
    _choice(cfg, "optimizer", OPTIMIZERS)
    _choice(cfg, "scheduler", SCHEDULERS)
    _choice(cfg, "early_stop_metric", METRIC_MODES)
    for key in ("train", "valid"):
        if not cfg[key]:
            raise MosqaError(f"--{key} LIST is required (a wav,score list)")
        cfg[key] = str(Path(cfg[key]).absolute())
    for key in ("epochs", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise MosqaError(f"--{key.replace('_', '-')} must be a positive integer, got {cfg[key]!r}")
    if not cfg["lr"] > 0:
        raise MosqaError(f"--lr must be > 0, got {cfg['lr']}")

    frontend = {**FrontEnd().to_dict(), **MODELS[cfg["arch"]].frontend}
    frontend.update({k: cfg[k] for k in FRONTEND_KEYS if cfg[k] is not None})
    fe = FrontEnd.from_dict(frontend)
    cfg.update(fe.to_dict())
    options = model_options(build_model(cfg, fe.n_bins, explicit))
    cfg = {k: v for k, v in cfg.items() if k not in MODEL_KEYS} | options
    build_loss(cfg["loss"], loss_options(cfg), head=cfg["head"])
    cfg["name"] = cfg["name"] or default_name(cfg)
    return cfg


def model_options(model) -> dict:
    """The model's resolved options that apply to its architecture (and head); others are dropped."""
    arch, options = model.arch, model.config()
    keep = set(MODELS[arch].uses) | set(COMMON)
    if options["head"] != "cls":
        keep -= set(CLS_ONLY)
    return {k: v for k, v in options.items() if k in keep or k == "arch"}


def loss_options(cfg: dict) -> LossOptions:
    return LossOptions(**{k: cfg[k] for k in LOSS_KEYS if k in cfg})


def default_name(cfg: dict) -> str:
    """The log's naming: crn_cp_qn, can2dClass_cp_qn, hasa_qn ..."""
    cls = "Class" if cfg["head"] == "cls" else ""
    cp = "_cp" if cfg["compress"] < 1 and cfg["feature"] != "logmel" else ""
    return f"{cfg['arch']}{cls}{cp}_qn"


def _stored(cfg: dict) -> dict:
    """What config.yaml holds: known options only, model options already filtered by `resolve`."""
    return {k: v for k, v in cfg.items() if k in DEFAULTS}


# ---------------------------------------------------------------- helpers


def feature_set(items, fe: FrontEnd, cache_dir, tag: str, dist: Distributed, console: Console) -> FeatureSet:
    """Main process computes (or finds) the cache first; the others then read it."""
    if dist.is_main:
        with progress_bar(console) as prog:
            feats, offsets = load_features(items, fe, cache_dir, tag, prog)
    dist.barrier()
    if not dist.is_main:
        feats, offsets = load_features(items, fe, cache_dir, tag)
    return FeatureSet(feats, offsets, [it.score for it in items])


def gather_predictions(dist: Distributed, part: dict, n: int) -> dict:
    """Put every rank's (index -> prediction) shard back in list order."""
    parts = [part]
    if dist.enabled:
        parts = [None] * dist.world_size
        torch.distributed.all_gather_object(parts, part)
    full = {k: np.full(n, np.nan) for k in part if k != "index"}
    for p in parts:
        for k in full:
            full[k][p["index"]] = p[k]
    return full


def validate(model, dataset: FeatureSet, cfg: dict, dist: Distributed) -> dict:
    part = predict(
        unwrap(model), dataset, cfg["batch_size"], dist.device, rank=dist.rank, world_size=dist.world_size
    )
    pred = gather_predictions(dist, part, len(dataset))
    m = correlation_metrics(pred["score"], dataset.scores)
    return {
        "valid_mse": m["mse"],
        "valid_mse_norm": m["mse_norm"],
        "valid_lcc": m["lcc"],
        "valid_srcc": m["srcc"],
    }


def _set_threads(cfg: dict, dist: Distributed) -> None:
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    elif dist.enabled and dist.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world_size))


def summary_table(rows: list[dict], best_epoch: int | None, title: str) -> Table:
    table = Table(title=title)
    cols = ["epoch", "train_loss", "valid_mse", "valid_lcc", "valid_srcc", "lr", "seconds"]
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows:
        mark = " *" if best_epoch is not None and int(r["epoch"]) == best_epoch else ""
        table.add_row(*(f"{float(r[c]):.4g}" if c != "epoch" else f"{r[c]}{mark}" for c in cols))
    return table


# ---------------------------------------------------------------- training


def train(
    cfg: dict | None = None, resume=None, overrides: dict | None = None, console: Console | None = None
) -> Path:
    """Train from a resolved `cfg`, or continue the run directory `resume`. Returns the run directory."""
    console = console or Console(stderr=True)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if resume is not None:
        run_dir = Path(resume)
        cfg = load_run_config(run_dir)
        fixed = sorted(set(overrides) - set(RESUMABLE))
        if fixed:
            raise MosqaError(
                f"--resume continues {run_dir}'s own config; only "
                f"{', '.join('--' + k.replace('_', '-') for k in RESUMABLE)} may change, "
                f"not {', '.join('--' + k.replace('_', '-') for k in fixed)}"
            )
        cfg.update(overrides)
    dist = Distributed(cfg["device"])
    try:
        return _train(cfg, dist, console, resume)
    finally:
        dist.close()


def _train(cfg: dict, dist: Distributed, console: Console, resume) -> Path:
    device = dist.device
    _set_threads(cfg, dist)
    if resume is None:
        made = str(new_run_dir(cfg["exp_dir"], cfg["name"])) if dist.is_main else None
        run_dir = Path(dist.broadcast_object(made))
        if dist.is_main:
            save_yaml(run_dir / "config.yaml", _stored(cfg))
    else:
        run_dir = Path(resume)
        if dist.is_main:  # record changed flags (e.g. a longer --epochs) with the run
            save_yaml(run_dir / "config.yaml", _stored(cfg))
    log = RunLog(run_dir / "train.log", dist.is_main, console)
    seed_everything(cfg["seed"])

    fe = FrontEnd.from_dict(cfg)
    cache_dir = Path(cfg["cache_dir"] or Path(cfg["exp_dir"]) / ".cache")
    train_items, valid_items = read_list(cfg["train"]), read_list(cfg["valid"])
    train_set = feature_set(train_items, fe, cache_dir, Path(cfg["train"]).stem, dist, console)
    valid_set = feature_set(valid_items, fe, cache_dir, Path(cfg["valid"]).stem, dist, console)

    model = build_model(cfg, fe.n_bins).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = OPTIMIZERS[cfg["optimizer"]](
        model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"]
    )
    scheduler = SCHEDULERS[cfg["scheduler"]](optimizer, cfg)
    mode = METRIC_MODES[cfg["early_stop_metric"]]
    stopper = EarlyStopping(cfg["early_stop_metric"], mode, cfg["patience"])
    fp16 = cfg["amp"] and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler(device.type, enabled=fp16)
    metrics = MetricsLog(run_dir / "metrics.csv")
    start = 0
    if resume is not None and (run_dir / "last.pt").is_file():
        state = load_checkpoint(run_dir / "last.pt", map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        stopper = EarlyStopping(cfg["early_stop_metric"], mode, cfg["patience"], **state["early_stop"])
        start = int(state["epoch"])
        if dist.is_main:
            metrics.truncate(start)
        log(f"resuming {run_dir} after epoch {start}")
    net = dist.wrap(model)
    loss_fn = build_loss(cfg["loss"], loss_options(cfg), head=cfg["head"])
    sampler = BucketBatchSampler(
        train_set.lengths,
        cfg["batch_size"],
        shuffle=True,
        seed=cfg["seed"],
        bucket_batches=cfg["bucket_batches"],
        rank=dist.rank,
        world_size=dist.world_size,
    )
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate, num_workers=cfg["num_workers"])
    log(
        f"run {run_dir}: {cfg['arch']} ({n_params:,} parameters), {len(train_set)} train / {len(valid_set)} "
        f"valid clips, {fe.n_bins} bins, device {device}" + (f" x{dist.world_size}" if dist.enabled else "")
    )

    for epoch in range(start, cfg["epochs"]):
        if stopper.should_stop:
            break
        t0 = time.time()
        torch.manual_seed(cfg["seed"] * 1_000_003 + epoch)  # dropout draws depend on the epoch only
        sampler.set_epoch(epoch)
        train_loss = _train_epoch(net, loader, optimizer, scaler, loss_fn, cfg, dist, epoch, run_dir, console)
        valid = validate(net, valid_set, cfg, dist)
        value = valid[f"valid_{cfg['early_stop_metric']}"]
        if not math.isfinite(value):
            value = -math.inf if mode == "max" else math.inf
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(value)
        elif scheduler is not None:
            scheduler.step()
        improved = stopper.update(value)
        row = {"epoch": epoch + 1, "train_loss": train_loss, **valid, "lr": lr, "seconds": time.time() - t0}
        if dist.is_main:
            state = {
                "model": unwrap(net).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "early_stop": stopper.state(),
                "metrics": {k: float(v) for k, v in row.items()},
            }
            if improved:
                save_checkpoint(run_dir / "best.pt", state)
            save_checkpoint(run_dir / "last.pt", state)
            metrics.append(row)
        log(
            f"epoch {epoch + 1}/{cfg['epochs']}: loss {train_loss:.4f}  valid mse {valid['valid_mse']:.4f} "
            f"lcc {valid['valid_lcc']:.4f} srcc {valid['valid_srcc']:.4f}  lr {lr:.2e}  "
            f"{row['seconds']:.1f}s" + ("  *best" if improved else "")
        )
        dist.barrier()
    if stopper.should_stop:
        log(f"early stop: {cfg['early_stop_metric']} did not improve for {stopper.bad_epochs} epochs")
    if dist.is_main:
        best = load_checkpoint(run_dir / "best.pt")["epoch"] if (run_dir / "best.pt").is_file() else None
        rows = MetricsLog(run_dir / "metrics.csv").rows
        console.print(summary_table(rows, best, f"{run_dir.name}  (* = best.pt)"))
    return run_dir


def _train_epoch(net, loader, optimizer, scaler, loss_fn, cfg, dist, epoch, run_dir, console) -> float:
    net.train()
    device = dist.device
    total, count = 0.0, 0
    with progress_bar(console, dist.is_main) as prog:
        desc = f"epoch {epoch + 1}/{cfg['epochs']}"
        task = prog.add_task(desc, total=len(loader))
        for x, lengths, y, _ in loader:
            x, lengths, y = x.to(device), lengths.to(device), y.to(device)
            with autocast(device, cfg["amp"]):
                out = net(x, lengths)
            out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
            loss, _ = loss_fn(out, y)
            bad = float(not torch.isfinite(loss).item())
            if dist.all_mean(bad) > 0:  # every rank stops together, before the bad step is applied
                raise MosqaError(
                    f"{run_dir}: loss became NaN/inf at epoch {epoch + 1}; stopped, the last "
                    f"good checkpoint is {run_dir / 'last.pt'} (try a lower --lr)"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg["grad_clip"] > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
            total += loss.item() * len(y)
            count += len(y)
            prog.update(task, advance=1, description=f"{desc} loss {total / count:.4f}")
    return dist.all_mean(total / max(count, 1))
