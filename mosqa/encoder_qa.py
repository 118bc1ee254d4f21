"""A quality model made of the frozen Distill-MOS encoder and a linear head (the campaign's model).

The head maps the encoder's pooled features (mosqa.distill_mos.Encoder.features) to the score and one
output per diagnostic target (mosqa.diagnostics.TARGETS). It is the campaign's ridge regression folded
back onto the raw features (mosqa.campaign.head_weights), saved as a plain linear layer in best.pt, so
the model is differentiable end to end: `train-se --qa-model` can use it as a critic.

Features are computed as in training: each item alone at its own length (no padding, so batching never
changes a score) and, with `precision: bf16`, under bfloat16 autocast (half the CPU time of float32;
scores move by ~0.01).
"""

import torch
from torch import nn

from mosqa.diagnostics import TARGETS
from mosqa.distill_mos import FEATURE_DIM, HOP, SAMPLE_RATE, WIN, load_encoder
from mosqa.frontend import FrontEnd
from mosqa.heads import MOS_MIN, MOS_RANGE

ARCH = "distill-mos-ridge"
OUTPUTS = ("score", *TARGETS)


class EncoderScorer(nn.Module):
    """forward(wav (B, N) at 16 kHz, lengths (B,) or None) -> (B,) MOS; `full` adds the diagnostics."""

    diagnostics = tuple(TARGETS)  # what `full` adds to the score (`predict --diagnose` reads it)

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        # What the encoder reads, in the terms `predict` and `train-se --qa-model` check.
        self.frontend = FrontEnd(sample_rate=SAMPLE_RATE, n_fft=WIN, hop=HOP, feature="complex",
                                 compress=0.3)
        self.encoder = load_encoder()
        self.head = nn.Linear(FEATURE_DIM, len(OUTPUTS))
        lows = [MOS_MIN, *(t.low for t in TARGETS.values())]
        highs = [MOS_MIN + MOS_RANGE, *(t.high for t in TARGETS.values())]
        self.register_buffer("low", torch.tensor(lows), persistent=False)
        self.register_buffer("high", torch.tensor(highs), persistent=False)

    @property
    def trained(self) -> nn.Module:
        """The part whose weights best.pt holds: the head (the encoder ships once, in distill-mos/)."""
        return self.head

    def features(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        bf16 = self.config.get("precision") == "bf16"
        n = [wav.shape[1]] * len(wav) if lengths is None else lengths.tolist()
        with torch.autocast(wav.device.type, dtype=torch.bfloat16, enabled=bf16):
            return torch.cat([self.encoder.features(w[None, : int(k)]) for w, k in zip(wav, n, strict=True)])

    def full(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        """{"score": (B,), and each diagnostic target: (B,) in its unit (codec: a probability)}."""
        if wav.dim() == 1:
            wav = wav[None]
        out = self.head(self.features(wav, lengths).float())
        # Clipped to each output's range, with the gradient of the unclipped value: a head that learns
        # (train-se --qa learn) is still pulled back from beyond the range, and an enhancer scored at
        # the floor still learns which way is better.
        out = out + (torch.maximum(torch.minimum(out, self.high), self.low) - out).detach()
        return {name: out[:, k] for k, name in enumerate(OUTPUTS)}

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.full(wav, lengths)["score"]

    def normalised(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) quality on 0..1, the scale of the enhancement losses."""
        return (self.forward(wav, lengths) - MOS_MIN) / MOS_RANGE
