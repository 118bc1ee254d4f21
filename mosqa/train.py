"""`mosqa train-qa`: train a non-intrusive quality model on cached features.

Config: defaults < YAML (--config) < flags. The resolved config saved in the run directory is flat
(front end, model options, loss options, training settings, list paths) and holds only options that
apply to the architecture, so it both reloads the model and works again as a --config file.

The run directory, checkpoints, resume, metrics and early stopping are mosqa.runs' `Run`/`fit`,
shared with train-se; this module brings the feature batches, the loss and the validation.
Exact resume: the batch order comes from a generator keyed by seed and epoch (and `fit` re-seeds
the global RNG per epoch), so restoring the run's state from last.pt continues exactly.
"""

import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader

from mosqa.checks import check_options
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
    Run,
    as_floats,
    autocast,
    check_choice,
    cosine_schedule,
    fit,
    grad_scaler,
    optimiser_step,
    resolve_config,
    start,
    stop_if_not_finite,
    unwrap,
    warn,
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
    "tensorboard": False,  # also write TensorBoard events (the optional tensorboard extra)
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
    "cosine": lambda opt, cfg: cosine_schedule(opt, cfg["epochs"]),
    "plateau": lambda opt, cfg: torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode=METRIC_MODES[cfg["early_stop_metric"]], factor=cfg["lr_factor"], patience=cfg["lr_patience"]
    ),
}
# Options read as floats even when YAML gives them as text or integers.
FLOAT_KEYS = {k for k, v in TRAINING.items() if isinstance(v, float)} | {
    name for cls in (FrontEnd, ModelOptions, LossOptions)
    for name, hint in typing.get_type_hints(cls).items() if hint is float or float in typing.get_args(hint)}
SUMMARY = ("train_loss", "valid_mse", "valid_lcc", "valid_srcc", "lr", "seconds")
PATH_KEYS = ("train", "valid")  # the options that name inputs (lists), made absolute
# curves.png's loss panel: the training loss and the validation error on the default loss's scale
CURVES = ("train_loss", "valid_mse_norm")


# ---------------------------------------------------------------- config


def resolve(config_file=None, overrides: dict | None = None, console: Console | None = None) -> dict:
    """The complete, checked config of a new run: every value the run will use."""
    cfg, explicit = resolve_config(DEFAULTS, config_file, overrides, kind="qa", console=console)
    if "arch" not in explicit:
        warn(f"no --arch (and none in a config): training the default architecture {cfg['arch']}", console)
    as_floats(cfg, FLOAT_KEYS, config_file)
    for key, registry in (("arch", MODELS), ("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS),
                          ("early_stop_metric", METRIC_MODES)):
        check_choice(cfg, key, registry)
    for key in PATH_KEYS:
        if not cfg[key]:
            raise MosqaError(f"--{key} LIST is required (a wav,score list)")
        cfg[key] = str(Path(cfg[key]).absolute())
    check_options(cfg)

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


# ---------------------------------------------------------------- training


@dataclass
class Step:
    """What one training epoch needs besides the run: network, optimiser, scaler, loss and batches."""

    cfg: dict
    dist: Distributed
    run: Run
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: typing.Callable
    sampler: BucketBatchSampler
    loader: DataLoader
    console: Console


def train(
    cfg: dict | None = None, resume=None, overrides: dict | None = None, console: Console | None = None
) -> Path:
    """Train from a resolved `cfg`, or continue the run directory `resume`. Returns the run directory."""
    console = console or Console(stderr=True)
    return start("qa", cfg, resume, overrides, lambda cfg, dist: _train(cfg, dist, console, resume),
                 console=console)


def _train(cfg: dict, dist: Distributed, console: Console, resume) -> Path:
    fe = FrontEnd.from_dict(cfg)
    cache_dir = Path(cfg["cache_dir"] or Path(cfg["exp_dir"]) / ".cache")
    train_items, valid_items = read_list(cfg["train"]), read_list(cfg["valid"])
    train_set = feature_set(train_items, fe, cache_dir, Path(cfg["train"]).stem, dist, console)
    valid_set = feature_set(valid_items, fe, cache_dir, Path(cfg["valid"]).stem, dist, console)
    model = build_model(cfg, fe.n_bins).to(dist.device)
    optimizer = OPTIMIZERS[cfg["optimizer"]](
        model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"]
    )
    scheduler = SCHEDULERS[cfg["scheduler"]](optimizer, cfg)
    scaler = grad_scaler(cfg["amp"], dist.device)
    mode = METRIC_MODES[cfg["early_stop_metric"]]
    with Run("qa", cfg, _stored(cfg), dist, mode, resume, console) as run:
        run.hold(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        sampler = BucketBatchSampler(train_set.lengths, cfg["batch_size"], shuffle=True, seed=cfg["seed"],
                                     bucket_batches=cfg["bucket_batches"], rank=dist.rank,
                                     world_size=dist.world_size)
        loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate,
                            num_workers=cfg["num_workers"])
        step = Step(cfg, dist, run, dist.wrap(model), optimizer, scaler,
                    build_loss(cfg["loss"], loss_options(cfg), head=cfg["head"]), sampler, loader, console)
        run.log(
            f"run {run.final}: {cfg['arch']} ({sum(p.numel() for p in model.parameters()):,} parameters), "
            f"{len(train_set)} train / {len(valid_set)} valid clips, {fe.n_bins} bins, device {dist.device}"
            + (f" x{dist.world_size}" if dist.enabled else "")
        )
        return fit(run, lambda epoch: _train_epoch(step, epoch),
                   lambda epoch: validate(step.net, valid_set, cfg, dist),
                   _scheduler_step(scheduler), SUMMARY, losses=CURVES)


def _scheduler_step(scheduler):
    """Per-epoch learning-rate update after validation; plateau reads the early-stopping value."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return scheduler.step
    return None if scheduler is None else (lambda value: scheduler.step())


def _train_epoch(step: Step, epoch: int) -> dict:
    step.net.train()
    step.sampler.set_epoch(epoch)
    device, cfg = step.dist.device, step.cfg
    total, count = 0.0, 0
    with progress_bar(step.console, step.dist.is_main) as prog:
        desc = f"epoch {epoch + 1}/{cfg['epochs']}"
        task = prog.add_task(desc, total=len(step.loader))
        for x, lengths, y, _ in step.loader:
            x, lengths, y = x.to(device), lengths.to(device), y.to(device)
            with autocast(device, cfg["amp"]):
                out = step.net(x, lengths)
            out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
            loss, _ = step.loss_fn(out, y)
            stop_if_not_finite(loss, step.dist, step.run.path, epoch)
            optimiser_step(loss, step.scaler, [(step.optimizer, step.net.parameters())], cfg["grad_clip"])
            total += loss.item() * len(y)
            count += len(y)
            prog.update(task, advance=1, description=f"{desc} loss {total / count:.4f}")
    loss = step.dist.all_mean(total / max(count, 1))
    return {"train_loss": loss, "lr": step.optimizer.param_groups[0]["lr"]}
