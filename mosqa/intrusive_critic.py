"""An intrusive critic for `train-se --qa learn --qa-model intrusive`: it scores enhanced speech against its
clean reference, as MetricGAN's discriminator does.

PESQ itself compares the two signals, so a critic that sees both can follow it far more closely than a
non-intrusive one (which must guess the reference): the enhancer then climbs a slope that tracks true PESQ
instead of the critic's guesses. Input: the compressed magnitude spectra (|X|^0.3) of the enhanced and the
clean waveform, stacked as two channels; strided 2-D convolutions with spectral normalisation (a
Lipschitz-bounded critic gives the enhancer smooth gradients); a mean over the valid frames; a small MLP
to one normalised score (PESQ-WB mapped to 0..1, as mosqa.guidance's targets). It starts untrained: there
is no reference-pair corpus to pretrain it on that the learning loop does not already provide.
"""

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from mosqa.frontend import FrontEnd, features, frame_lengths

COMPRESS = 0.3  # magnitude exponent: speech's dynamic range squeezed so quiet bins still count


class IntrusiveCritic(nn.Module):
    """(wav, lengths, ref) -> (B,) normalised score of `wav` against its clean reference `ref`."""

    def __init__(self, sample_rate: int = 16000, channels: int = 16, layers: int = 4):
        super().__init__()
        n_fft = 512 * sample_rate // 16000  # 32 ms frames at any rate
        self.frontend = FrontEnd(sample_rate=sample_rate, n_fft=n_fft, hop=n_fft // 2, feature="mag",
                                 compress=COMPRESS)
        convs, c_in = [], 2
        for _ in range(layers):
            convs += [spectral_norm(nn.Conv2d(c_in, channels, 5, stride=2, padding=2)), nn.LeakyReLU(0.3)]
            c_in = channels
        self.convs = nn.Sequential(*convs)
        self.layers = layers
        self.head = nn.Sequential(spectral_norm(nn.Linear(channels, 50)), nn.LeakyReLU(0.3),
                                  spectral_norm(nn.Linear(50, 10)), nn.LeakyReLU(0.3),
                                  spectral_norm(nn.Linear(10, 1)))

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None, ref: torch.Tensor) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((len(wav),), wav.shape[-1], device=wav.device)
        beyond = torch.arange(wav.shape[-1], device=wav.device)[None, :] >= lengths[:, None]
        wav, ref = wav.masked_fill(beyond, 0.0), ref.masked_fill(beyond, 0.0)  # padding is never heard
        x = torch.stack([features(wav, self.frontend), features(ref, self.frontend)], dim=1)  # (B, 2, T, F)
        valid = frame_lengths(lengths, self.frontend)
        h = self.convs(x).mean(dim=3)  # (B, C, frames'), frequency pooled
        for _ in range(self.layers):  # each stride-2 layer halves the valid frames, rounding up
            valid = (valid + 1) // 2
        mask = torch.arange(h.shape[-1], device=h.device)[None, :] < valid.clamp(min=1)[:, None]
        pooled = (h * mask[:, None]).sum(-1) / mask.sum(-1, keepdim=True)
        return self.head(pooled).squeeze(-1)
