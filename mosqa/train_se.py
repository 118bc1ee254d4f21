"""`mosqa train-se`: train an enhancer with a spectral loss, optionally guided by a quality model.

The run itself (directory, config.yaml, checkpoints, exact resume, metrics, NaN stop, early stopping)
is mosqa.runs' `Run`/`fit`, shared with train-qa, and the config speaks the same words (`train`,
`valid`, `grad_clip`, `early_stop_metric`). Spectral losses live in mosqa.losses, quality guidance
(critic, gradient reversal, the --qa modes) in mosqa.guidance, the learning critic's warm-up in
mosqa.warmup, validation metrics in mosqa.evaluate; this module brings the batches, the update step and
the validation loop.
"""

import hashlib
import itertools
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.data import DataLoader, Subset

from mosqa import guidance, runs, warmup
from mosqa.checks import check_options
from mosqa.errors import MosqaError
from mosqa.evaluate import enhancement_metrics, metrics_table
from mosqa.losses import build_spectral_loss, spectral_terms
from mosqa.names import SE_METRICS
from mosqa.progress import progress_bar
from mosqa.runs import Distributed, Run
from mosqa.se_data import VALID_EPOCH, build_dataset, collate
from mosqa.se_models import MODEL_OPTIONS, SE_MODELS, build_se_model, count_parameters

DEFAULTS = {
    # model
    "arch": "dpcrn",
    "sample_rate": 16000,
    "n_fft": 400,
    "hop": 200,
    "window": "sine",
    "mask_act": "softplus",
    "target": "mag",
    "conv_channels": None,
    "hidden": None,
    "layers": None,
    "compress": None,
    "blocks": None,
    "intra_hidden": None,
    "inter_hidden": None,
    "identity_init": False,
    "init": None,  # a train-se run whose enhancer weights this run starts from
    # data
    "train": None,  # noisy,clean lists
    "valid": None,
    "clean": None,
    "noise": None,
    "rir": None,
    "valid_clean": None,
    "valid_noise": None,
    "snr_min": 0.0,
    "snr_max": 15.0,
    "crop_seconds": 2.0,
    "valid_crop_seconds": 0.0,
    "epoch_items": None,
    "valid_items": None,
    "seed": 0,
    "valid_seed": 1234,
    # losses
    "loss": "mag+complex",
    "loss_weights": None,
    "spec_compress": 0.3,
    "spec_weight": 1.0,
    "qa": "none",
    "qa_model": None,
    "qa_weight": 1.0,
    "qa_every": 1,
    "qa_update": True,
    "grl_lambda": 1.0,
    "qa_lr": 1e-4,
    "dnsmos_target": "ovrl",
    "critic_init": "pretrained",
    "replay_size": 512,
    "pesq_workers": 2,
    "critic_warmup": 0,  # steps of the learning critic on a ladder of enhancers' outputs first; 0 = none
    "critic_warmup_lcc": 0.8,  # ... ending early once its held-out LCC reaches this
    "critic_warmup_from": None,  # the ladder: checkpoints or folders of them, comma-separated (--init's)
    # optimisation
    "epochs": 20,
    "batch_size": 8,
    "lr": 1e-3,
    "scheduler": "none",
    "weight_decay": 0.0,
    "grad_clip": 5.0,  # max gradient norm; 0 = off
    "steps_per_epoch": None,
    "early_stop_metric": "pesq",
    "patience": 5,  # 0 = never stop early
    # run
    "dnsmos": True,
    "exp_dir": "exp",
    "name": None,  # default from arch and mode, e.g. dpcrn_grl
    "device": "auto",
    "amp": False,
    "num_workers": 0,
    "tensorboard": False,  # also write TensorBoard events and a few enhanced validation clips
    "threads": 0,
    "keep_every": 0,  # also keep the enhancer every N epochs as epoch_NNN.pt (weights only); 0 = never
}
# train-se's earlier names (now train-qa's words); accepted with a warning for one release.
RENAMED = {"clip_grad": "grad_clip", "monitor": "early_stop_metric", "train_list": "train",
           "valid_list": "valid"}
# Validation metrics early stopping may follow, and which direction is better.
METRIC_MODES = dict.fromkeys(SE_METRICS, "max")
DNSMOS_METRICS = ("sig", "bak", "ovrl")
# Learning-rate schedules over the run's steps (stepped once per optimiser step).
SCHEDULERS = {
    "none": lambda opt, steps: None,
    "cosine": runs.cosine_schedule,
}
BOARD_CLIPS = 3  # validation clips written to TensorBoard as audio each epoch (--tensorboard)
WARMUP_EPOCH = 1_000_000  # the critic warm-up's mixtures: epochs no run reaches, so guidance's stay new
FLOAT_KEYS = {k for k, v in DEFAULTS.items() if isinstance(v, float)} | {"compress"}
MODEL_KEYS = tuple(dict.fromkeys(k for keys in MODEL_OPTIONS.values() for k in keys))
# What makes two enhancers the same network: --init takes these from the run it starts from.
ENHANCER_KEYS = ("arch", "sample_rate", "n_fft", "hop", "window", *MODEL_KEYS)
PATH_KEYS = ("init", "train", "valid", "clean", "noise", "rir", "valid_clean", "valid_noise")
SUMMARY = ("train_loss", "train_qa_loss", *(f"valid_{m}" for m in SE_METRICS), "lr", "seconds")


# ---------------------------------------------------------------- config


def resolve(config_file=None, overrides: dict | None = None, console: Console | None = None) -> dict:
    """The complete, checked config of a new run, holding only the options it uses."""
    cfg, explicit = runs.resolve_config(DEFAULTS, config_file, overrides, kind="se", renamed=RENAMED,
                                   console=console)
    if cfg["init"]:
        inherit_enhancer(cfg, explicit)
    elif "arch" not in explicit:
        runs.warn(f"no --arch (and none in a config): training the default enhancer {cfg['arch']}", console)
    runs.as_floats(cfg, FLOAT_KEYS, config_file)
    for key, registry in (("arch", SE_MODELS), ("qa", guidance.QA_TERMS), ("scheduler", SCHEDULERS),
                          ("early_stop_metric", METRIC_MODES)):
        runs.check_choice(cfg, key, registry)
    check_options(cfg)
    arch = cfg["arch"]
    runs.refuse_unused(explicit, MODEL_KEYS, MODEL_OPTIONS[arch], f"arch {arch}")
    guided = guidance.used_options(cfg)
    runs.refuse_unused(explicit, guidance.OPTIONS, guided, guidance.described(cfg))
    guidance.check(cfg)
    if cfg["early_stop_metric"] in DNSMOS_METRICS and not cfg["dnsmos"]:
        raise MosqaError(f"--early-stop-metric {cfg['early_stop_metric']} needs DNSMOS; drop --no-dnsmos")
    if not cfg["snr_min"] <= cfg["snr_max"]:
        raise MosqaError(f"--snr-min {cfg['snr_min']} is above --snr-max {cfg['snr_max']}")
    spectral_terms(cfg["loss"], cfg["loss_weights"], cfg["target"])
    cfg |= {k: str(Path(cfg[k]).absolute()) for k in PATH_KEYS if cfg[k]}
    if cfg["critic_init"] not in guidance.CRITIC_INITS:  # a warm critic's file
        cfg["critic_init"] = str(Path(cfg["critic_init"]).absolute())
    if cfg["critic_warmup_from"]:
        ladder = cfg["critic_warmup_from"].split(",")
        cfg["critic_warmup_from"] = ",".join(str(Path(p).absolute()) for p in ladder)
    if cfg["qa_model"] and Path(cfg["qa_model"]).exists():  # a run directory, not a model's name
        cfg["qa_model"] = str(Path(cfg["qa_model"]).absolute())
    cfg["name"] = cfg["name"] or default_name(cfg)
    unused = (set(MODEL_KEYS) - set(MODEL_OPTIONS[arch])) | (set(guidance.OPTIONS) - set(guided))
    return {k: v for k, v in cfg.items() if k not in unused}


def inherit_enhancer(cfg: dict, explicit: set) -> None:
    """--init RUN: this run's network is RUN's (its options fill in what was not given); an option given
    that differs from RUN's, a run that is not train-se's, or --identity-init are refused."""
    run_dir, _ = runs.find_checkpoint(cfg["init"])
    theirs = runs.load_run_config(run_dir)
    kind = theirs.get("kind") or ("se" if theirs.get("arch") in SE_MODELS else "qa")
    if kind != "se":
        raise MosqaError(f"{run_dir}: this is a train-{kind} run; --init needs a train-se run")
    if cfg["identity_init"]:
        raise MosqaError(f"--identity-init: no effect with --init (the weights come from {run_dir})")
    for key in ENHANCER_KEYS:
        if key not in theirs:
            continue
        if key not in explicit:
            cfg[key] = theirs[key]
        elif theirs[key] is not None and cfg[key] != theirs[key]:
            raise MosqaError(f"{run_dir}: --init's enhancer has {key} {theirs[key]}, not {cfg[key]} "
                             "(fine-tuning keeps the network; drop the option)")


def init_weights(model: torch.nn.Module, init) -> None:
    """The enhancer weights of train-se run `init` (best.pt, weights only); the optimiser starts fresh."""
    _, ckpt = runs.find_checkpoint(init)
    state = runs.load_checkpoint(ckpt)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        raise MosqaError(f"{ckpt}: its enhancer does not fit this run's model ({reason})") from None


def default_name(cfg: dict) -> str:
    """The log's naming: lstm_se, lstm_se_IAM, dpcrn_grl, dpcrn_joint ..."""
    mode = "se" if cfg["qa"] == "none" else cfg["qa"]
    return f"{cfg['arch']}_{mode}" + ("_IAM" if cfg["target"] == "iam" else "")


# ---------------------------------------------------------------- training


@dataclass
class Enhancer:
    """Everything a training step needs: the enhancer, the critic (if guided), their optimisers."""

    cfg: dict
    dist: Distributed
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped for DDP when distributed
    critic: torch.nn.Module | None
    net_critic: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer | None
    learner: guidance.Learner | None  # --qa learn: PESQ workers, replay buffer, the critic's watch
    scheduler: typing.Any
    scaler: torch.amp.GradScaler
    loss_fn: typing.Callable
    train_set: torch.utils.data.Dataset
    epoch_steps: int
    console: Console
    run: Run | None = None
    step: int = 0
    ladder: dict = field(default_factory=dict)  # --critic-warmup's enhancers by checkpoint, until it is done


def train(
    cfg: dict | None = None, resume=None, overrides: dict | None = None, console: Console | None = None
) -> Path:
    """Train an enhancer from a resolved `cfg`, or continue the run directory `resume`."""
    console = console or Console(stderr=True)
    return runs.start("se", cfg, resume, overrides, lambda cfg, dist: _train(cfg, dist, console, resume),
                      RENAMED, console)


def _train(cfg: dict, dist: Distributed, console: Console, resume) -> Path:
    # Everything a user can get wrong is checked before a run directory exists.
    enh = _enhancer(cfg, dist, console, fresh=resume is None)
    valid_set = build_dataset(cfg, "valid")
    valid_set.set_epoch(VALID_EPOCH)
    valid_loader = DataLoader(valid_set, batch_size=1, collate_fn=collate)
    dnsmos = _dnsmos_scorer(cfg)
    stored = {k: v for k, v in cfg.items() if k in DEFAULTS}
    with Run("se", cfg, stored, dist, METRIC_MODES[cfg["early_stop_metric"]], resume, console) as run:
        trained_critic = guidance.learnable(enh.critic) if enh.critic_optimizer is not None else None
        enh.run = run
        enh.step = enh.epoch_steps * run.hold(
            model=enh.model, optimizer=enh.optimizer, scheduler=enh.scheduler, scaler=enh.scaler,
            qa=trained_critic, qa_optimizer=enh.critic_optimizer,
        )
        _log_start(run, enh, len(valid_set))
        if dist.is_main:
            _input_metrics(run.path, valid_loader, dist.device, cfg, dnsmos, run.log, console)
        try:
            if enh.ladder:
                warmup.warm_up(enh, _warmup_batches(enh), valid_loader, run)
                enh.ladder = {}
            return runs.fit(run, lambda epoch: _train_epoch(enh, epoch),
                            lambda epoch: _validate(enh, valid_loader, dnsmos), columns=SUMMARY,
                            losses=("train_loss", "valid_loss", "train_qa_loss"),
                            to_board=lambda epoch, board: _board_clips(enh, valid_loader, epoch, board))
        finally:
            if enh.learner is not None:
                enh.learner.close()


def _enhancer(cfg: dict, dist: Distributed, console: Console, fresh: bool = True) -> Enhancer:
    """Model, critic, optimisers, schedule, loss and training data of a run; a `fresh` run (not a resumed
    one, which restores its own weights) starts from --init's weights when given."""
    model = build_se_model(cfg)
    if fresh and cfg.get("init"):
        init_weights(model, cfg["init"])
    model = model.to(dist.device)
    critic, critic_optimizer = guidance.build_critic(cfg, dist.device, fresh)
    ladder = _ladder(cfg, dist.device) if fresh and warmup.wanted(cfg) else {}
    train_set = build_dataset(cfg, "train")
    per_rank = len(range(dist.rank, len(train_set), dist.world_size))
    full_epoch = per_rank // cfg["batch_size"] if per_rank > cfg["batch_size"] else 1  # drop_last below
    epoch_steps = min(full_epoch, cfg["steps_per_epoch"] or full_epoch)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    terms = spectral_terms(cfg["loss"], cfg["loss_weights"], cfg["target"])
    scheduler = SCHEDULERS[cfg["scheduler"]](optimizer, cfg["epochs"] * epoch_steps)
    return Enhancer(
        cfg, dist, model, dist.wrap(model), critic,
        dist.wrap(critic) if critic_optimizer is not None else critic, optimizer, critic_optimizer,
        guidance.Learner(cfg) if cfg["qa"] == "learn" else None, scheduler,
        runs.grad_scaler(cfg["amp"], dist.device),
        build_spectral_loss(terms, model.fe, cfg["spec_compress"]), train_set, epoch_steps, console,
        ladder=ladder,
    )


def _ladder(cfg: dict, device) -> dict:
    """--critic-warmup's enhancers by checkpoint, each this run's network with its weights, fixed."""
    rungs = {}
    for ckpt in warmup.ladder_files(cfg):
        model = build_se_model(cfg)
        init_weights(model, ckpt)
        rungs[str(ckpt)] = model.to(device).eval().requires_grad_(False)
    return rungs


def _log_start(run: Run, enh: Enhancer, n_valid: int) -> None:
    cfg, fe = enh.cfg, enh.model.fe
    terms = spectral_terms(cfg["loss"], cfg["loss_weights"], cfg["target"])
    run.log(
        f"{cfg['arch']}: {count_parameters(enh.model):,} parameters, STFT {fe.n_fft}/{fe.hop} "
        f"{fe.window}, loss {'+'.join(f'{w:g}*{n}' for w, n in terms)}, qa {cfg['qa']}"
    )
    run.log(f"run {run.final}: {len(enh.train_set)} training items/epoch, {n_valid} validation items")
    if cfg.get("init"):
        run.log(f"enhancer initialised from {cfg['init']} (best.pt), optimiser fresh")
    if cfg.get("critic_init") not in (None, *guidance.CRITIC_INITS):
        skipped = " (--critic-warmup skipped)" if cfg.get("critic_warmup") else ""
        run.log(f"critic warm from {cfg['critic_init']}{skipped}")


def _loader(enh: Enhancer, epoch: int) -> DataLoader:
    """This rank's share of the epoch's items, shuffled by a generator keyed by seed and epoch."""
    cfg = enh.cfg
    enh.train_set.set_epoch(epoch)
    indices = list(range(len(enh.train_set)))[enh.dist.rank :: enh.dist.world_size]
    return DataLoader(
        Subset(enh.train_set, indices),
        batch_size=cfg["batch_size"],
        shuffle=True,
        collate_fn=collate,
        num_workers=cfg["num_workers"],
        drop_last=len(indices) > cfg["batch_size"],
        generator=torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch),
    )


def _warmup_batches(enh: Enhancer):
    """Endless training batches for the critic's warm-up, this rank's share as _loader draws them."""
    return itertools.chain.from_iterable(_loader(enh, epoch) for epoch in itertools.count(WARMUP_EPOCH))


def _train_epoch(enh: Enhancer, epoch: int) -> dict:
    enh.net.train()
    device = enh.dist.device
    sums = {"loss": 0.0, "qa_loss": 0.0}
    with progress_bar(enh.console, enh.dist.is_main) as prog:
        task = prog.add_task(f"epoch {epoch + 1}/{enh.cfg['epochs']}", total=enh.epoch_steps)
        for noisy, clean, lengths in itertools.islice(_loader(enh, epoch), enh.epoch_steps):
            spec, qa_term = _update(enh, noisy.to(device), clean.to(device), lengths.to(device), epoch)
            sums["loss"] += spec
            sums["qa_loss"] += qa_term
            prog.advance(task)
    row = {"train_loss": enh.dist.all_mean(sums["loss"] / enh.epoch_steps)}
    if enh.critic is not None:
        row["train_qa_loss"] = enh.dist.all_mean(sums["qa_loss"] / enh.epoch_steps)
    if enh.learner is not None:
        row |= enh.learner.epoch_figures()
    return row | {"lr": enh.optimizer.param_groups[0]["lr"]}


def _update(enh: Enhancer, noisy, clean, lengths, epoch: int) -> tuple[float, float]:
    """One optimisation step of the enhancer (and of a learning critic); returns both loss values."""
    cfg = enh.cfg
    with runs.autocast(noisy.device, cfg["amp"]):
        out = _ddp_run(enh.net, noisy, lengths) if enh.dist.enabled else enh.model.run(noisy, lengths)
        spec = enh.loss_fn(out, clean, lengths)
        qa_fn = guidance.QA_TERMS[cfg["qa"]]
        qa_term = None if qa_fn is None else qa_fn(enh.net_critic, out["wav"], clean, lengths, cfg, enh.step,
                                                    noisy=noisy, learner=enh.learner)
    loss = cfg["spec_weight"] * spec + (qa_term if qa_term is not None else 0.0)
    runs.stop_if_not_finite(loss, enh.dist, enh.run.path, epoch)
    steps = [(enh.optimizer, enh.model.parameters())]
    if enh.critic_optimizer is not None and qa_term is not None:
        steps.append((enh.critic_optimizer, guidance.learnable(enh.critic).parameters()))
    runs.optimiser_step(loss, enh.scaler, steps, cfg["grad_clip"])
    if enh.scheduler is not None:
        enh.scheduler.step()
    enh.step += 1
    return spec.item(), qa_term.item() if qa_term is not None else 0.0


def _validate(enh: Enhancer, loader: DataLoader, dnsmos) -> dict:
    """The main process scores the validation set; every rank gets the numbers (early stopping)."""
    scores = None
    if enh.dist.is_main:
        enh.model.eval()
        scores = enhancement_metrics(enh.model, loader, enh.dist.device, enh.cfg["sample_rate"], dnsmos)
        scores["loss"] = _valid_loss(enh, loader)
    scores = enh.dist.broadcast_object(scores)
    return {f"valid_{k}": v for k, v in scores.items() if k != "n"}


def _valid_loss(enh: Enhancer, loader: DataLoader) -> float:
    """The spectral training loss on the validation set: curves.png's validation loss beside train_loss."""
    device, total = enh.dist.device, 0.0
    with torch.no_grad():
        for noisy, clean, lengths in loader:
            noisy, clean, lengths = noisy.to(device), clean.to(device), lengths.to(device)
            total += float(enh.loss_fn(enh.model.run(noisy, lengths), clean, lengths))
    return total / max(len(loader), 1)


def _board_clips(enh: Enhancer, loader: DataLoader, epoch: int, board) -> None:
    """The first validation mixtures as this epoch's model enhances them (and, once, as they are), as
    TensorBoard audio: what a metric cannot tell, e.g. musical noise or a muffled voice."""
    rate = enh.cfg["sample_rate"]
    enh.model.eval()
    with torch.no_grad():
        for i, (noisy, _, lengths) in enumerate(itertools.islice(loader, BOARD_CLIPS)):
            n = int(lengths[0])
            wav = enh.model.run(noisy.to(enh.dist.device), lengths.to(enh.dist.device))["wav"]
            board.add_audio(f"valid_enhanced/{i}", wav[:1, :n].float().clamp(-1, 1).cpu(), epoch + 1, rate)
            if epoch == 0:
                board.add_audio(f"valid_noisy/{i}", noisy[:1, :n].clamp(-1, 1), 0, rate)


def _ddp_run(dmodel, noisy, lengths) -> dict:
    """DDP only synchronises gradients through `forward`; the dict comes back through a hook."""
    box = {}
    inner = runs.unwrap(dmodel)
    original = inner.forward

    def forward(wav, lens):
        box.update(inner.run(wav, lens))
        return box["wav"]

    inner.forward = forward
    try:
        dmodel(noisy, lengths)
    finally:
        inner.forward = original
    return box


def _dnsmos_scorer(cfg: dict):
    if not cfg["dnsmos"]:
        return None
    from mosqa.dnsmos import Scorer

    return Scorer()


def _input_metrics(run_dir: Path, loader, device, cfg, dnsmos, log, console) -> dict:
    """The noisy input's own scores on the validation set: the row every run must beat."""
    path = run_dir / "input_metrics.yaml"
    if path.is_file():
        return runs.load_yaml(path)
    # Runs sharing a validation set (the recipes' case) share one computation, kept beside the runs.
    shared = Path(cfg["exp_dir"]) / ".input_metrics" / f"{_valid_key(cfg)}.yaml"
    if shared.is_file():
        m = runs.load_yaml(shared)
    else:
        m = enhancement_metrics(lambda y, n: y, loader, device, cfg["sample_rate"], dnsmos, "noisy input")
        runs.save_yaml(shared, m)
    runs.save_yaml(path, m)
    console.print(metrics_table("validation set, noisy input", {"noisy": m}))
    log("noisy input: " + "  ".join(f"{k}={v:.4f}" for k, v in m.items() if k != "n"))
    return m


def _valid_key(cfg: dict) -> str:
    """Hash of everything that defines the validation audio and its metrics."""
    keys = (
        "valid",
        "valid_clean",
        "valid_noise",
        "valid_seed",
        "valid_items",
        "valid_crop_seconds",
        "snr_min",
        "snr_max",
        "rir",
        "sample_rate",
        "dnsmos",
    )
    files = [cfg[k] for k in ("valid", "valid_clean", "valid_noise") if cfg.get(k)]
    stamps = [Path(f).stat().st_mtime_ns for f in files if Path(f).exists()]
    text = repr([(k, cfg.get(k)) for k in keys] + stamps)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


