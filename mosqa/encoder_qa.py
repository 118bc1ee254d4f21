"""A quality model made of the frozen Distill-MOS encoder and a linear head (the campaign's model).

The head maps the encoder's pooled features (mosqa.distill_mos.Encoder.features) to the score and one
output per diagnostic target (mosqa.diagnostics.TARGETS); a config's `score_map` bends the score through
a logistic onto PESQ's bounded scale (mosqa.campaign.fit_score_map). Which feature blocks it reads is the
config's `feature_blocks` (distill_mos.feature_columns' names; without it, the first campaign's
FEATURE_BLOCKS), so a head of issue 30's comparison on other layers loads the same way. It is the
campaign's ridge regression folded back onto the raw features (mosqa.campaign.head_weights), saved as a
plain linear layer in best.pt, so the model is differentiable end to end: `train-se --qa-model` can use
it as a critic.

Features are computed as in training: each item alone at its own length (no padding, so batching never
changes a score) and, with `precision: bf16`, under bfloat16 autocast (scores move by ~0.01; faster only
where the CPU or GPU has bfloat16 arithmetic: on an AVX2-only CPU it is 50-80 times slower than float32).

`full` also gives `listener_mos`: the encoder's own MOS head (Distill-MOS, trained on listeners'
ratings), read on the same windows as the features, at no extra cost.
"""

import torch
from torch import nn

from mosqa.diagnostics import TARGETS
from mosqa.distill_mos import HOP, SAMPLE_RATE, SEGMENT, WIN, feature_columns, feature_dim, load_encoder
from mosqa.frontend import FrontEnd
from mosqa.heads import MOS_MIN, MOS_RANGE

ARCH = "distill-mos-ridge"
OUTPUTS = ("score", *TARGETS)
FEATURE_BLOCKS = ("cnn", 2, 4, 7, "pooled", "score")  # what a config without `feature_blocks` reads


class EncoderScorer(nn.Module):
    """forward(wav (B, N) at 16 kHz, lengths (B,) or None) -> (B,) MOS; `full` adds the diagnostics and
    the listener MOS."""

    diagnostics = tuple(TARGETS)  # what `full` adds to the score (`predict --diagnose` reads it)
    columns = ("listener_mos",)  # what `full` adds that `predict` always writes
    # The longest input the encoder reads in one go: `predict` cuts chunks to it, so that each chunk is
    # one window and rows of one length run as one unpadded batch (the ONNX graph's form, mosqa.export).
    max_samples = SEGMENT

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        # What the encoder reads, in the terms `predict` and `train-se --qa-model` check.
        self.frontend = FrontEnd(sample_rate=SAMPLE_RATE, n_fft=WIN, hop=HOP, feature="complex",
                                 compress=0.3)
        self.encoder = load_encoder()
        blocks = tuple(config.get("feature_blocks", FEATURE_BLOCKS))
        self.layers = tuple(sorted(b for b in blocks if isinstance(b, int)))
        self.listener = feature_dim(self.layers) - 1  # summarise puts the encoder's own MOS last
        columns = feature_columns(blocks, self.layers)
        # None: every column, so the first design's graph (and its shipped model.onnx) has no gather
        self.columns_read = None if len(columns) == feature_dim(self.layers) else torch.from_numpy(columns)
        self.head = nn.Linear(len(columns), len(OUTPUTS))
        lows = [MOS_MIN, *(t.low for t in TARGETS.values())]
        highs = [MOS_MIN + MOS_RANGE, *(t.high for t in TARGETS.values())]
        self.register_buffer("low", torch.tensor(lows), persistent=False)
        self.register_buffer("high", torch.tensor(highs), persistent=False)
        # (floor, ceiling, slope, centre) of the logistic the score passes through (campaign.fit_score_map)
        self.score_map = tuple(config["score_map"]) if config.get("score_map") else None

    @property
    def trained(self) -> nn.Module:
        """The part whose weights best.pt holds: the head (the encoder ships once, in distill-mos/)."""
        return self.head

    def features(self, wav: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """(B, feature_dim(self.layers)) float32, the listener MOS last; without lengths no row is padded,
        so the rows run as one batch."""
        bf16 = self.config.get("precision") == "bf16"
        with torch.autocast(wav.device.type, dtype=torch.bfloat16, enabled=bf16):
            if lengths is None:
                return self.encoder.features(wav, layers=self.layers).float()
            rows = zip(wav, lengths.tolist(), strict=True)
            return torch.cat([self.encoder.features(w[None, : int(k)], layers=self.layers)
                              for w, k in rows]).float()

    def full(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        """{"score": (B,), each diagnostic target: (B,) in its unit (codec: a probability), and
        "listener_mos": (B,) the encoder's own MOS (mean over its windows)}."""
        if wav.dim() == 1:
            wav = wav[None]
        features = self.features(wav, lengths)
        out = self.head(features if self.columns_read is None else features[:, self.columns_read])
        if self.score_map is not None:
            floor, ceiling, slope, centre = self.score_map
            score = floor + (ceiling - floor) * torch.sigmoid(slope * (out[:, :1] - centre))
            out = torch.cat([score, out[:, 1:]], dim=1)
        # Clipped to each output's range, with the gradient of the unclipped value: a head that learns
        # (train-se --qa learn) is still pulled back from beyond the range, and an enhancer scored at
        # the floor still learns which way is better.
        out = out + (torch.maximum(torch.minimum(out, self.high), self.low) - out).detach()
        return ({name: out[:, k] for k, name in enumerate(OUTPUTS)}
                | {"listener_mos": features[:, self.listener]})

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.full(wav, lengths)["score"]

    def normalised(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) quality on 0..1, the scale of the enhancement losses."""
        return (self.forward(wav, lengths) - MOS_MIN) / MOS_RANGE
