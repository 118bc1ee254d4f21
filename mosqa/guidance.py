"""Quality guidance for train-se: a trained quality model (the critic) as part of the enhancer's loss.

Modes (`--qa`):
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

from pathlib import Path

import torch

from mosqa.audio import resample
from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd
from mosqa.metrics import PESQ_RATE, pesq_wb
from mosqa.runs import find_checkpoint, load_run_config

PESQ_RANGE = (1.0, 4.64)


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
            p = pesq_wb(resample(s[:n], sr, PESQ_RATE), resample(e[:n], sr, PESQ_RATE), PESQ_RATE)
            out.append((min(max(p, PESQ_RANGE[0]), PESQ_RANGE[1]) - 1.0) / 4.0)
        except MosqaError:
            out.append(float("nan"))
    return torch.tensor(out, dtype=torch.float32)


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of the critic's normalised score against true PESQ, over the items PESQ could score."""
    ok = ~torch.isnan(target)
    if not ok.any():
        return q.sum() * 0.0
    return ((q[ok] - target[ok].to(q.device)) ** 2).mean()


def qa_frozen(critic, enh, clean, lengths, cfg, step):
    return cfg["qa_weight"] * ((1.0 - critic(enh, lengths)) ** 2).mean()


def qa_grl(critic, enh, clean, lengths, cfg, step):
    target = true_pesq(clean, enh, lengths, cfg["sample_rate"])
    q = critic(grad_reverse(enh, cfg["grl_lambda"]), lengths)
    return cfg["qa_weight"] * critic_loss(q, target)


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
    return cfg["qa_weight"] * enh_term + critic_loss(critic(enh.detach(), lengths), target)


QA_TERMS = {"none": None, "frozen": qa_frozen, "grl": qa_grl, "joint": qa_joint}
TRAINS_CRITIC = {"none": False, "frozen": False, "grl": True, "joint": True}
# The options each mode reads; the others are refused when given (they would change nothing).
USES = {
    "none": (),
    "frozen": ("qa_model", "qa_weight"),
    "grl": ("qa_model", "qa_weight", "grl_lambda", "qa_lr"),
    "joint": ("qa_model", "qa_weight", "qa_every", "qa_lr"),
}
OPTIONS = ("qa_model", "qa_weight", "qa_every", "grl_lambda", "qa_lr")


def load_critic(cfg: dict, device) -> "torch.nn.Module":
    """The quality model for --qa frozen|grl|joint, checked against the enhancer's audio."""
    from mosqa.qa import load_qa

    if not cfg["qa_model"]:
        raise MosqaError(f"--qa {cfg['qa']} needs --qa-model RUN_DIR (a train-qa run)")
    if not Path(cfg["qa_model"]).exists():
        raise MosqaError(f"{cfg['qa_model']}: no such quality-model run directory")
    run_dir, _ = find_checkpoint(cfg["qa_model"])
    qa_cfg = load_run_config(run_dir)
    if qa_cfg.get("kind", "qa") != "qa":
        raise MosqaError(f"{run_dir}: this is a train-{qa_cfg['kind']} run; --qa-model needs a train-qa run")
    try:
        qa_fe = FrontEnd.from_dict(qa_cfg)
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


def build_critic(cfg: dict, device) -> tuple[torch.nn.Module | None, torch.optim.Optimizer | None]:
    """(critic, its optimiser): the critic learns in grl and joint modes, stays fixed in frozen;
    (None, None) without guidance."""
    if cfg["qa"] == "none":
        return None, None
    scorer = load_critic(cfg, device)
    trains = TRAINS_CRITIC[cfg["qa"]]
    for p in scorer.parameters():
        p.requires_grad_(trains)
    scorer.train(trains)
    critic = NormalisedQA(scorer).to(device)
    return critic, torch.optim.Adam(critic.parameters(), lr=cfg["qa_lr"]) if trains else None
