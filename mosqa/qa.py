"""A trained quality model as one differentiable module: waveform in, MOS out.

`QAScorer` chains the run's own front end (mosqa.frontend.features, in torch) and the model, so
gradients reach the waveform: the enhancement trainer uses it as a loss. A run directory
(config.yaml + best.pt) is all `load_qa` needs; the checkpoint is read with weights_only=True.
"""

import torch
from torch import nn

from mosqa.checks import require_kind
from mosqa.encoder_qa import ARCH as ENCODER_ARCH
from mosqa.encoder_qa import EncoderScorer
from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd, features, frame_lengths
from mosqa.heads import MOS_MIN, MOS_RANGE
from mosqa.models import QualityModel, build_model
from mosqa.pretrained import resolve
from mosqa.runs import find_checkpoint, load_checkpoint, load_run_config


class QAScorer(nn.Module):
    """forward(wav (B, N) at frontend.sample_rate, lengths (B,) samples or None) -> (B,) MOS 1–5."""

    def __init__(self, model: QualityModel, frontend: FrontEnd, config: dict | None = None):
        super().__init__()
        self.model, self.frontend = model, frontend
        self.config = dict(config or {"arch": model.arch, **model.config(), **frontend.to_dict()})

    @property
    def trained(self) -> nn.Module:
        """The part whose weights best.pt holds."""
        return self.model

    def full(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        """The model's whole output dict (frame scores, mask, classifier logits ...)."""
        if wav.dim() == 1:
            wav = wav[None]
        bf16 = self.config.get("precision") == "bf16"
        with torch.autocast(wav.device.type, dtype=torch.bfloat16, enabled=bf16):
            x = features(wav, self.frontend, lengths)
            frames = None
            if lengths is not None:
                frames = frame_lengths(lengths.to(wav.device).long(), self.frontend).clamp(1, x.shape[1])
            return self.model(x, frames)

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.full(wav, lengths)["score"]

    def normalised(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) quality on 0..1, the scale of the log's `1 - q` enhancement loss."""
        return (self.forward(wav, lengths) - MOS_MIN) / MOS_RANGE


def _trained_scorer(cfg: dict) -> QAScorer:
    fe = FrontEnd.from_dict(cfg)
    return QAScorer(build_model(cfg, fe.n_bins), fe, cfg)


# config `arch` -> builder, for architectures that are not a train-qa model on a front end.
SCORERS = {ENCODER_ARCH: EncoderScorer}


def scorer_from_config(cfg: dict) -> nn.Module:
    """An untrained scorer exactly as a run's config describes it."""
    return SCORERS.get(cfg.get("arch"), _trained_scorer)(cfg)


# `precision` a scorer runs in: float32, or the model under bfloat16 autocast (scores move by ~0.01).
PRECISIONS = ("fp32", "bf16")


def load_qa(run_dir, device="cpu", checkpoint: str = "best.pt", precision: str | None = None) -> QAScorer:
    """The trained scorer of a train-qa run directory (or one of its checkpoint files), in eval mode,
    in `precision` (default: the run's own, its config's `precision`, else fp32).

    A bare name that is not a path, e.g. "pesq-wb", is a model shipped in the package (mosqa.pretrained).
    """
    if precision not in (None, *PRECISIONS):
        raise MosqaError(f"--precision {precision}: expected {' or '.join(PRECISIONS)}")
    run_dir = resolve(run_dir)
    require_kind(run_dir, "qa", "load_qa")
    run_dir, ckpt = find_checkpoint(run_dir, prefer=checkpoint)
    config = load_run_config(run_dir)
    scorer = scorer_from_config(config | ({"precision": precision} if precision else {}))
    state = load_checkpoint(ckpt)
    if "model" not in state:
        raise MosqaError(f"{ckpt}: not a train-qa checkpoint (no model weights)")
    try:
        scorer.trained.load_state_dict(state["model"])
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        raise MosqaError(f"{ckpt}: weights do not fit the model in config.yaml ({reason})") from None
    return scorer.to(torch.device(device)).eval()
