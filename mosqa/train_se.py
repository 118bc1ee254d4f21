"""`mosqa train-se`: train an enhancer with a spectral loss, optionally guided by a quality model.

Quality modes (`--qa`):
  none    spectral loss only.
  frozen  spectral + weight * mean((1 - q)^2): a fixed quality model scores the enhanced speech
          (normalised score q in 0..1); its weights never change but the gradient reaches the enhancer.
  grl     the quality model keeps learning to predict the true PESQ of the enhanced speech, while
          the enhancer receives that loss's gradient reversed (scaled by lambda): adversarial.
  joint   spectral loss every step; every `qa_every` steps the enhancer also gets mean((1 - q)^2)
          and the quality model is updated on the true PESQ of the enhanced batch (MetricGAN-style:
          the critic follows the enhancer so it cannot be fooled for long).
The quality model always reads the enhanced *waveform* through its own front end, so it sees
exactly the features it was trained on.
"""

import math
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mosqa.audio import resample
from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd, compress_complex
from mosqa.metrics import pesq_wb, si_snr, stoi
from mosqa.progress import progress_bar
from mosqa.runs import (
    Distributed,
    EarlyStopping,
    MetricsLog,
    RunLog,
    autocast,
    find_checkpoint,
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
from mosqa.se_data import VALID_EPOCH, build_dataset, collate
from mosqa.se_models import build_se_model, count_parameters

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
    # data
    "train_list": None,
    "valid_list": None,
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
    "grl_lambda": 1.0,
    "qa_lr": 1e-4,
    # optimisation
    "epochs": 20,
    "batch_size": 8,
    "lr": 1e-3,
    "scheduler": "none",
    "weight_decay": 0.0,
    "clip_grad": 5.0,
    "steps_per_epoch": None,
    "monitor": "pesq",
    "patience": 5,
    # run
    "dnsmos": True,
    "exp_dir": "exp",
    "name": None,
    "device": "auto",
    "amp": False,
    "num_workers": 0,
    "threads": 0,
}

# Validation metrics early stopping may follow, and which direction is better.
MONITORS = {"pesq": "max", "stoi": "max", "si_snr": "max", "sig": "max", "bak": "max", "ovrl": "max"}
QA_MODES = ("none", "frozen", "grl", "joint")
# Learning-rate schedules over the run's steps. Closed forms of the step count (LambdaLR keeps only
# the count in its state), so a resumed run with more epochs re-plans the rest of the curve.
SCHEDULERS = {
    "none": lambda opt, steps: None,
    "cosine": lambda opt, steps: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / max(1, steps)))
    ),
}
PESQ_RANGE = (1.0, 4.64)
DNSMOS_RATE = 16000

# ---------------------------------------------------------------- spectral losses


def _masked_mean(err: torch.Tensor, fmask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, T, F) errors over valid frames only."""
    return (err * fmask[..., None]).sum() / (fmask.sum() * err.shape[-1]).clamp(min=1)


def loss_mag(out, clean_spec, clean, lengths, c):
    """MSE of power-law compressed magnitudes."""
    est = (out["spec"].abs() + 1e-8) ** c
    ref = (clean_spec.abs() + 1e-8) ** c
    return _masked_mean((est - ref) ** 2, out["frame_mask"])


def loss_complex(out, clean_spec, clean, lengths, c):
    """MSE of compressed complex spectra: also penalises phase errors."""
    diff = compress_complex(out["spec"], c) - compress_complex(clean_spec, c)
    return _masked_mean(diff.real**2 + diff.imag**2, out["frame_mask"])


def loss_iam(out, clean_spec, clean, lengths, c):
    """MSE between the predicted mask and the ideal amplitude mask |S|/|Y| (clipped at 1)."""
    iam = (clean_spec.abs() / (out["noisy_spec"].abs() + 1e-8)).clamp(max=1.0)
    return _masked_mean((out["mask"].abs() - iam) ** 2, out["frame_mask"])


def si_snr_torch(ref: torch.Tensor, est: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-8):
    """(B,) scale-invariant SNR in dB over each item's valid samples."""
    m = (torch.arange(ref.shape[-1], device=ref.device)[None] < lengths[:, None].to(ref.device)).float()
    n = m.sum(1, keepdim=True)
    ref = (ref - (ref * m).sum(1, keepdim=True) / n) * m
    est = (est - (est * m).sum(1, keepdim=True) / n) * m
    target = (est * ref).sum(1, keepdim=True) / ((ref * ref).sum(1, keepdim=True) + eps) * ref
    noise = est - target
    return 10 * torch.log10((target.pow(2).sum(1) + eps) / (noise.pow(2).sum(1) + eps))


def loss_sisnr(out, clean_spec, clean, lengths, c):
    # Scaled down so that its size is comparable with the spectral MSEs at equal weights.
    return -si_snr_torch(clean, out["wav"], lengths).mean() / 100.0


SPEC_LOSSES = {"mag": loss_mag, "complex": loss_complex, "sisnr": loss_sisnr, "iam": loss_iam}
TARGETS = {"mag": None, "iam": "iam"}  # --target iam replaces the loss by the mask loss


def parse_losses(cfg: dict) -> list[tuple[str, float]]:
    """'mag+complex' with weights '1,0.5' -> [(name, weight)]; --target iam means the IAM mask loss."""
    if cfg["target"] not in TARGETS:
        raise MosqaError(f"--target must be one of {', '.join(TARGETS)}, got {cfg['target']!r}")
    names = (TARGETS[cfg["target"]] or cfg["loss"]).split("+")
    unknown = [n for n in names if n not in SPEC_LOSSES]
    if unknown:
        raise MosqaError(
            f"--loss: unknown term(s) {', '.join(unknown)}; choose from {', '.join(SPEC_LOSSES)}"
        )
    weights = [1.0] * len(names)
    if cfg.get("loss_weights") is not None and TARGETS[cfg["target"]] is None:
        text = str(cfg["loss_weights"])
        try:
            weights = [float(w) for w in text.split(",")]
        except ValueError:
            raise MosqaError(f"--loss-weights {text!r}: expected comma-separated numbers") from None
        if len(weights) != len(names):
            raise MosqaError(f"--loss-weights gives {len(weights)} weights for {len(names)} loss terms")
    return list(zip(names, weights, strict=True))


def spectral_loss(out, clean, lengths, terms, fe, c) -> torch.Tensor:
    from mosqa.frontend import stft

    with torch.autocast(clean.device.type, enabled=False):
        clean_spec = stft(clean.float(), fe)
    return sum(w * SPEC_LOSSES[name](out, clean_spec, clean, lengths, c) for name, w in terms)


# ---------------------------------------------------------------- quality-model terms


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -scale."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return GradientReversal.apply(x, scale)


class NormalisedQA(torch.nn.Module):
    """QAScorer.normalised as `forward`, so DistributedDataParallel can wrap a trainable critic."""

    def __init__(self, scorer):
        super().__init__()
        self.scorer = scorer

    def forward(self, wav, lengths):
        return self.scorer.normalised(wav, lengths)


def true_pesq(clean: torch.Tensor, est: torch.Tensor, lengths: torch.Tensor, sr: int) -> torch.Tensor:
    """(B,) PESQ-WB of each enhanced item on the normalised 0..1 scale; NaN where PESQ finds no speech."""
    out = []
    clean, est = clean.detach().float().cpu().numpy(), est.detach().float().cpu().numpy()
    for s, e, n in zip(clean, est, lengths.tolist(), strict=True):
        try:
            p = pesq_wb(resample(s[:n], sr, DNSMOS_RATE), resample(e[:n], sr, DNSMOS_RATE), DNSMOS_RATE)
            out.append((min(max(p, PESQ_RANGE[0]), PESQ_RANGE[1]) - 1.0) / 4.0)
        except MosqaError:
            out.append(float("nan"))
    return torch.tensor(out, dtype=torch.float32)


def _critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    ok = ~torch.isnan(target)
    if not ok.any():
        return q.sum() * 0.0
    return ((q[ok] - target[ok].to(q.device)) ** 2).mean()


def qa_frozen(critic, enh, clean, lengths, cfg, step):
    return cfg["qa_weight"] * ((1.0 - critic(enh, lengths)) ** 2).mean()


def qa_grl(critic, enh, clean, lengths, cfg, step):
    target = true_pesq(clean, enh, lengths, cfg["sample_rate"])
    q = critic(grad_reverse(enh, cfg["grl_lambda"]), lengths)
    return cfg["qa_weight"] * _critic_loss(q, target)


def qa_joint(critic, enh, clean, lengths, cfg, step):
    if step % cfg["qa_every"]:
        return None
    params = list(critic.parameters())
    for p in params:  # the enhancer's term must not teach the critic to say "perfect"
        p.requires_grad_(False)
    enh_term = ((1.0 - critic(enh, lengths)) ** 2).mean()
    for p in params:
        p.requires_grad_(True)
    target = true_pesq(clean, enh, lengths, cfg["sample_rate"])
    return cfg["qa_weight"] * enh_term + _critic_loss(critic(enh.detach(), lengths), target)


QA_TERMS = {"none": None, "frozen": qa_frozen, "grl": qa_grl, "joint": qa_joint}
TRAINS_CRITIC = {"none": False, "frozen": False, "grl": True, "joint": True}


def load_critic(cfg: dict, device) -> "torch.nn.Module":
    """The quality model for --qa frozen|grl|joint, checked against the enhancer's audio."""
    from mosqa.pretrained import resolve
    from mosqa.qa import load_qa

    if not cfg["qa_model"]:
        raise MosqaError(f"--qa {cfg['qa']} needs --qa-model RUN_DIR (a train-qa run)")
    run_dir, _ = find_checkpoint(resolve(cfg["qa_model"]))  # a run directory or a shipped model's name
    try:
        qa_fe = FrontEnd.from_dict(load_run_config(run_dir))
    except MosqaError as exc:  # e.g. a front end this version cannot compute from a waveform
        raise MosqaError(f"{run_dir}: unusable quality-model front end ({exc})") from None
    check_qa_compatible(qa_fe, cfg, run_dir)
    return load_qa(run_dir, device)


def check_qa_compatible(qa_fe, cfg: dict, run_dir) -> None:
    """The critic must read the waveform the enhancer produces; refuse what cannot work."""
    if qa_fe.sample_rate != cfg["sample_rate"]:
        raise MosqaError(
            f"{run_dir}: quality model reads {qa_fe.sample_rate} Hz audio but the enhancer "
            f"produces {cfg['sample_rate']} Hz (train one at the same --sample-rate)"
        )
    crop = int(cfg["crop_seconds"] * cfg["sample_rate"])
    if qa_fe.n_fft > crop:
        raise MosqaError(
            f"{run_dir}: quality model's n_fft {qa_fe.n_fft} is longer than a "
            f"{cfg['crop_seconds']} s training crop"
        )


# ---------------------------------------------------------------- validation


def evaluate(enhance, loader, device, sr: int, dnsmos=None, desc: str = "valid") -> dict:
    """Mean PESQ-WB, STOI, SI-SNR (and DNSMOS SIG/BAK/OVRL) of `enhance(noisy, lengths)` over `loader`."""
    rows = []
    with progress_bar() as prog:
        task = prog.add_task(desc, total=len(loader.dataset))
        for noisy, clean, lengths in loader:
            with torch.no_grad():
                est = enhance(noisy.to(device), lengths.to(device)).float().cpu().numpy()
            for k, n in enumerate(lengths.tolist()):
                rows.append(item_metrics(clean[k, :n].numpy(), est[k, :n], sr, dnsmos))
                prog.advance(task)
    return {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]} | {"n": len(rows)}


def item_metrics(clean: np.ndarray, est: np.ndarray, sr: int, dnsmos=None) -> dict:
    """Signal metrics at 16 kHz (PESQ-WB and DNSMOS are defined there)."""
    clean, est = resample(clean, sr, DNSMOS_RATE), resample(est, sr, DNSMOS_RATE)
    try:
        p = pesq_wb(clean, est, DNSMOS_RATE)
    except MosqaError:  # a silent reference has no PESQ; leave it out of the mean
        p = float("nan")
    row = {"pesq": p, "stoi": stoi(clean, est, DNSMOS_RATE), "si_snr": si_snr(clean, est)}
    if dnsmos is not None:
        s = dnsmos.score(est, DNSMOS_RATE)
        row |= {"sig": s["SIG"], "bak": s["BAK"], "ovrl": s["OVRL"]}
    return row


def metrics_table(title: str, rows: dict[str, dict]) -> Table:
    cols = ["pesq", "stoi", "si_snr", "sig", "bak", "ovrl"]
    table = Table(title=title)
    table.add_column("run", overflow="fold")
    for c in cols:
        table.add_column(c.upper(), justify="right")
    for name, m in rows.items():
        table.add_row(name, *(f"{float(m[c]):.3f}" if m.get(c) not in (None, "") else "-" for c in cols))
    return table


# ---------------------------------------------------------------- training


def resolve(config_file=None, overrides: dict | None = None) -> dict:
    cfg = resolve_config(DEFAULTS, config_file, overrides)
    if cfg["qa"] not in QA_MODES:
        raise MosqaError(f"--qa must be one of {', '.join(QA_MODES)}, got {cfg['qa']!r}")
    if cfg["monitor"] not in MONITORS:
        raise MosqaError(f"--monitor must be one of {', '.join(MONITORS)}, got {cfg['monitor']!r}")
    if cfg["monitor"] in ("sig", "bak", "ovrl") and not cfg["dnsmos"]:
        raise MosqaError(f"--monitor {cfg['monitor']} needs DNSMOS; drop --no-dnsmos")
    if cfg["scheduler"] not in SCHEDULERS:
        raise MosqaError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {cfg['scheduler']!r}")
    if cfg["qa_every"] < 1:
        raise MosqaError("--qa-every must be >= 1")
    if not cfg["snr_min"] <= cfg["snr_max"]:
        raise MosqaError(f"--snr-min {cfg['snr_min']} is above --snr-max {cfg['snr_max']}")
    parse_losses(cfg)
    return cfg


def default_name(cfg: dict) -> str:
    """The log's naming: lstm_se, lstm_se_IAM, dpcrn_grl, dpcrn_joint ..."""
    mode = "se" if cfg["qa"] == "none" else cfg["qa"]
    return f"{cfg['arch']}_{mode}" + ("_IAM" if cfg["target"] == "iam" else "")


def train(
    cfg: dict | None = None,
    resume=None,
    epochs: int | None = None,
    device: str | None = None,
    console: Console | None = None,
) -> Path:
    """Train an enhancer from `cfg`, or resume the run `resume` (its saved config, `epochs` may grow)."""
    if resume:
        run_dir, ckpt_path = find_checkpoint(resume, prefer="last.pt")
        given = {"epochs": epochs, "device": device}
        cfg = load_run_config(run_dir) | {k: v for k, v in given.items() if v is not None}
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    dist = Distributed(cfg["device"])
    device = dist.device
    seed_everything(cfg["seed"] + dist.rank)
    # Everything a user can get wrong is checked before a run directory exists.
    terms = parse_losses(cfg)
    model = build_se_model(cfg).to(device)
    critic = None
    if cfg["qa"] != "none":
        scorer = load_critic(cfg, device)
        trains = TRAINS_CRITIC[cfg["qa"]]
        for p in scorer.parameters():
            p.requires_grad_(trains)
        scorer.train(trains)
        critic = NormalisedQA(scorer).to(device)
    train_set = build_dataset(cfg, "train")
    valid_set = build_dataset(cfg, "valid")
    valid_set.set_epoch(VALID_EPOCH)
    dnsmos = _dnsmos_scorer(cfg)

    if not resume:
        run_dir = dist.broadcast_object(
            str(new_run_dir(cfg["exp_dir"], cfg["name"] or default_name(cfg))) if dist.is_main else None
        )
        run_dir, ckpt_path = Path(run_dir), None
        if dist.is_main:
            save_yaml(run_dir / "config.yaml", cfg)
    log = RunLog(run_dir / "train.log", dist.is_main, console)
    log(
        f"{cfg['arch']}: {count_parameters(model):,} parameters, STFT {model.fe.n_fft}/{model.fe.hop} "
        f"{model.fe.window}, loss {'+'.join(f'{w:g}*{n}' for n, w in terms)}, qa {cfg['qa']}"
    )
    log(f"run {run_dir}: {len(train_set)} training items/epoch, {len(valid_set)} validation items")

    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    qa_opt = (
        torch.optim.Adam(critic.parameters(), lr=cfg["qa_lr"])
        if critic and TRAINS_CRITIC[cfg["qa"]]
        else None
    )
    per_rank = len(range(dist.rank, len(train_set), dist.world_size))
    full_epoch = per_rank // cfg["batch_size"] if per_rank > cfg["batch_size"] else 1  # drop_last below
    epoch_steps = min(full_epoch, cfg["steps_per_epoch"] or full_epoch)
    scheduler = SCHEDULERS[cfg["scheduler"]](opt, cfg["epochs"] * epoch_steps)
    mode = MONITORS[cfg["monitor"]]
    stopper = EarlyStopping(cfg["monitor"], mode, cfg["patience"])
    metrics = MetricsLog(run_dir / "metrics.csv")
    start_epoch, step = 0, 0
    if ckpt_path is not None:
        state = load_checkpoint(ckpt_path, device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if qa_opt is not None and "qa" in state:
            critic.scorer.load_state_dict(state["qa"])
            qa_opt.load_state_dict(state["qa_optimizer"])
        start_epoch, step = state["epoch"], state["step"]
        stopper = EarlyStopping(cfg["monitor"], mode, cfg["patience"], **state["early"])
        metrics.truncate(start_epoch)
        log(f"resumed from {ckpt_path} at epoch {start_epoch}")
    dmodel = dist.wrap(model)
    dcritic = dist.wrap(critic) if qa_opt is not None else critic
    scaler = torch.amp.GradScaler(device.type, enabled=cfg["amp"] and device.type == "cuda")

    valid_loader = torch.utils.data.DataLoader(valid_set, batch_size=1, collate_fn=collate)
    if dist.is_main:
        _input_metrics(run_dir, valid_loader, device, cfg, dnsmos, log, console)

    for epoch in range(start_epoch, cfg["epochs"]):
        train_set.set_epoch(epoch)
        indices = list(range(len(train_set)))[dist.rank :: dist.world_size]
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(train_set, indices),
            batch_size=cfg["batch_size"],
            shuffle=True,
            collate_fn=collate,
            num_workers=cfg["num_workers"],
            drop_last=len(indices) > cfg["batch_size"],
            generator=torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch),
        )
        dmodel.train()
        sums = {"loss": 0.0, "qa_loss": 0.0}
        batches = 0
        total = min(len(loader), cfg["steps_per_epoch"] or len(loader))
        with progress_bar() as prog:
            task = prog.add_task(f"epoch {epoch + 1}/{cfg['epochs']}", total=total)
            for noisy, clean, lengths in loader:
                if batches >= total:
                    break
                spec, qa_term = _update(
                    model,
                    dmodel,
                    dcritic,
                    opt,
                    qa_opt,
                    scaler,
                    terms,
                    cfg,
                    step,
                    dist,
                    noisy.to(device),
                    clean.to(device),
                    lengths.to(device),
                )
                if scheduler is not None:
                    scheduler.step()
                sums["loss"] += spec
                sums["qa_loss"] += qa_term
                batches += 1
                step += 1
                prog.advance(task)
        row = {"epoch": epoch + 1, "train_loss": dist.all_mean(sums["loss"] / max(batches, 1)),
               "lr": opt.param_groups[0]["lr"]}
        if critic is not None:
            row["train_qa_loss"] = dist.all_mean(sums["qa_loss"] / max(batches, 1))
        improved = False
        if dist.is_main:
            model.eval()
            scores = evaluate(model, valid_loader, device, cfg["sample_rate"], dnsmos)
            row |= {f"valid_{k}": v for k, v in scores.items() if k != "n"}
            value = row[f"valid_{cfg['monitor']}"]
            improved = stopper.update(value)
            metrics.append(row)
            log(
                "epoch {epoch}: ".format(**row)
                + "  ".join(f"{k}={v:.4f}" for k, v in row.items() if k != "epoch" and isinstance(v, float))
                + ("  (best)" if improved else "")
            )
            state = {
                "model": model.state_dict(),
                "epoch": epoch + 1,
                "step": step,
                "optimizer": opt.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "early": stopper.state(),
            }
            if qa_opt is not None:
                state |= {"qa": critic.scorer.state_dict(), "qa_optimizer": qa_opt.state_dict()}
            if improved:
                save_checkpoint(run_dir / "best.pt", {"model": state["model"], "epoch": epoch + 1})
            save_checkpoint(run_dir / "last.pt", state)
        stop = dist.broadcast_object(stopper.should_stop)
        dist.barrier()
        if stop:
            log(f"early stopping: no {cfg['monitor']} improvement for {cfg['patience']} epochs")
            break
    dist.close()
    return run_dir


def _update(model, dmodel, critic, opt, qa_opt, scaler, terms, cfg, step, dist, noisy, clean, lengths):
    """One optimisation step of the enhancer (and of a learning critic); returns both loss values."""
    device = noisy.device
    with autocast(device, cfg["amp"]):
        out = _ddp_run(dmodel, noisy, lengths) if dist.enabled else model.run(noisy, lengths)
        spec = spectral_loss(out, clean, lengths, terms, model.fe, cfg["spec_compress"])
        qa_fn = QA_TERMS[cfg["qa"]]
        qa_term = None if critic is None else qa_fn(critic, out["wav"], clean, lengths, cfg, step)
    loss = cfg["spec_weight"] * spec + (qa_term if qa_term is not None else 0.0)
    opt.zero_grad(set_to_none=True)
    if qa_opt is not None:
        qa_opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip_grad"])
    scaler.step(opt)
    if qa_opt is not None and qa_term is not None:
        scaler.unscale_(qa_opt)
        torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg["clip_grad"])
        scaler.step(qa_opt)
    scaler.update()
    return spec.item(), qa_term.item() if qa_term is not None else 0.0


def _ddp_run(dmodel, noisy, lengths) -> dict:
    """DDP only synchronises gradients through `forward`; the dict comes back through a hook."""
    box = {}
    inner = unwrap(dmodel)
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
        return load_yaml(path)
    # Runs sharing a validation set (the recipes' case) share one computation, kept beside the runs.
    shared = Path(cfg["exp_dir"]) / ".input_metrics" / f"{_valid_key(cfg)}.yaml"
    if shared.is_file():
        m = load_yaml(shared)
    else:
        m = evaluate(lambda y, n: y, loader, device, cfg["sample_rate"], dnsmos, desc="noisy input")
        save_yaml(shared, m)
    save_yaml(path, m)
    (console or Console(stderr=True)).print(metrics_table("validation set, noisy input", {"noisy": m}))
    log("noisy input: " + "  ".join(f"{k}={v:.4f}" for k, v in m.items() if k != "n"))
    return m


def _valid_key(cfg: dict) -> str:
    """Hash of everything that defines the validation audio and its metrics."""
    import hashlib

    keys = (
        "valid_list",
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
    files = [cfg[k] for k in ("valid_list", "valid_clean", "valid_noise") if cfg.get(k)]
    stamps = [Path(f).stat().st_mtime_ns for f in files if Path(f).exists()]
    text = repr([(k, cfg.get(k)) for k in keys] + stamps)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- comparing runs


def best_row(run_dir: Path) -> dict:
    """The metrics.csv row of the epoch that best.pt holds."""
    import csv

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise MosqaError(f"{run_dir}: no metrics.csv (not a train-se run?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise MosqaError(f"{path}: no epochs recorded")
    best = Path(run_dir) / "best.pt"
    epoch = load_checkpoint(best)["epoch"] if best.is_file() else int(rows[-1]["epoch"])
    row = next((r for r in rows if int(r["epoch"]) == epoch), rows[-1])
    return {k.removeprefix("valid_"): v for k, v in row.items() if k.startswith("valid_")}


def compare_runs(run_dirs, out_csv=None, console: Console | None = None) -> list[dict]:
    """One table: the noisy input's row, then each run's best-epoch validation metrics."""
    import csv

    from mosqa.audio import atomic_path

    if not run_dirs:
        raise MosqaError("compare: give at least one train-se run directory")
    rows = []
    first = Path(run_dirs[0]) / "input_metrics.yaml"
    if first.is_file():
        rows.append({"run": "noisy input"} | load_yaml(first))
    for d in run_dirs:
        rows.append({"run": Path(d).name} | best_row(Path(d)))
    table = metrics_table("enhancement runs (validation set)", {r["run"]: r for r in rows})
    (console or Console()).print(table)
    if out_csv:
        cols = ["run", "pesq", "stoi", "si_snr", "sig", "bak", "ovrl"]
        with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    return rows
