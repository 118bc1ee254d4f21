"""Heads and pooling: backbone frame embeddings -> frame scores -> one utterance score.

Scores leave the model in MOS units (1–5), always. Normalisation to 0–1 happens only inside the
losses, once: the original code normalised twice. The output squash (sigmoid or hardsigmoid)
lives here, inside the model, so training and inference can never use different activations.

The utterance score is a weighted average of the frame scores; the pooling decides the weights
(uniform over valid frames, or learned attention). A classifier head pools its frame logits with
the same weights and also keeps the regression branch, so "avg+cls" can average the two.
"""

import torch
import torch.nn.functional as F
from torch import nn

from mosqa.errors import MosqaError

MOS_MIN, MOS_MAX = 1.0, 5.0
MOS_RANGE = MOS_MAX - MOS_MIN


def sequence_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) lengths -> (B, frames) bool, True on valid frames."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames (dim 1) of (B, T) values; padded entries never contribute."""
    values = torch.where(mask, values, torch.zeros_like(values))
    return values.sum(1) / mask.sum(1).clamp_min(1)


def num_bins(step: float) -> int:
    """Classes for a bin width `step` over 1–5 (0.2 -> 20, 0.5 -> 8)."""
    k = round(MOS_RANGE / step) if step > 0 else 0
    if k < 2 or abs(k * step - MOS_RANGE) > 1e-6:
        raise MosqaError(f"model: step must divide the 1–5 range into at least 2 bins, got {step}")
    return k


def bin_centres(k: int, device=None) -> torch.Tensor:
    """Centres of k equal bins over 1–5, the scores a classifier's distribution puts mass on."""
    width = MOS_RANGE / k
    return MOS_MIN + width * (torch.arange(k, device=device, dtype=torch.float32) + 0.5)


class MeanPool(nn.Module):
    """Uniform weights over valid frames: Quality-Net, HASA-Net and MOSNet average frame scores."""

    def __init__(self, dim: int):
        super().__init__()

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = mask.float()
        return w / w.sum(1, keepdim=True).clamp_min(1)


class AttnPool(nn.Module):
    """Learned softmax weights over valid frames (NISQA's attention pooling)."""

    def __init__(self, dim: int, hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.energy = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e = self.energy(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.softmax(e, dim=1)


POOLINGS = {"mean": MeanPool, "attn": AttnPool}
HEADS = ("reg", "cls")
PREDICTS = ("cls", "avg+cls")


class MosScale(nn.Module):
    """Raw output -> MOS. Normalised: 1 + 4·squash(r); otherwise the raw value is already on 1–5."""

    def __init__(self, norm_output: bool, hardsigmoid: bool):
        super().__init__()
        self.norm_output = norm_output
        self.squash = F.hardsigmoid if hardsigmoid else torch.sigmoid

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return MOS_MIN + MOS_RANGE * self.squash(r) if self.norm_output else r


def hidden_layer(dim: int, units: int) -> nn.Module:
    """The optional hidden layer in front of a head's output (the log's HASAClassifier had one)."""
    return nn.Sequential(nn.Linear(dim, units), nn.ReLU()) if units else nn.Identity()


class ScoreHead(nn.Module):
    """Frame regression (+ optional classifier) and pooling; returns the model's output dict."""

    def __init__(self, dim: int, opts):
        super().__init__()
        width = opts.head_hidden or dim
        self.frame_hidden = hidden_layer(dim, opts.head_hidden)
        self.frame = nn.Linear(width, 1)
        if not opts.norm_output:  # start a linear output mid-scale instead of at 0, outside 1–5
            nn.init.constant_(self.frame.bias, (MOS_MIN + MOS_MAX) / 2)
        self.to_mos = MosScale(opts.norm_output, opts.hardsigmoid)
        self.pool = POOLINGS[opts.pooling](dim)
        self.predict = opts.predict
        self.classifier = None
        if opts.head == "cls":
            k = num_bins(opts.step)
            self.cls_hidden = hidden_layer(dim, opts.head_hidden)
            self.classifier = nn.Linear(width, k)
            self.register_buffer("bin_centres", bin_centres(k), persistent=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> dict:
        w = self.pool(h, mask)
        frame = self.to_mos(self.frame(self.frame_hidden(h)).squeeze(-1))
        reg = (w * frame).sum(1)
        out = {"frame": frame, "score": reg, "mask": mask, "weights": w}
        if self.classifier is None:
            return out
        frame_logits = self.classifier(self.cls_hidden(h))
        logits = (w.unsqueeze(-1) * frame_logits).sum(1)
        cls = torch.softmax(logits, dim=-1) @ self.bin_centres
        score = cls if self.predict == "cls" else (reg + cls) / 2
        out.update(score=score, reg=reg, cls=cls, logits=logits, frame_logits=frame_logits)
        return out
