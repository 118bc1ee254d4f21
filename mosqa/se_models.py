"""Speech-enhancement models: noisy waveform (B, N) -> enhanced waveform (B, N).

Every model works in the STFT domain of its own `FrontEnd` and returns a dict from `run()`
(waveform, estimated spectrum, mask, noisy spectrum) so losses can reach the mask (IAM target)
as well as the waveform; `forward()` is the plain waveform -> waveform call that quality
models and `mosqa enhance` use. Samples past `lengths` are zeroed so padding never leaks out.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd, istft, stft

# Mask pre-activation bias that makes each activation output exactly (softplus) or nearly (sigmoid) 1.
MASK_ACTS = {
    "softplus": (F.softplus, math.log(math.e - 1.0)),
    "sigmoid": (torch.sigmoid, 12.0),
}


def frame_mask(lengths: torch.Tensor | None, fe: FrontEnd, frames: int, batch: int, device) -> torch.Tensor:
    """(B, T) float mask of the frames whose window touches a real sample (so iSTFT rebuilds them all)."""
    if lengths is None:
        return torch.ones(batch, frames, device=device)
    reach = lengths.to(device) + fe.n_fft // 2 + fe.hop - 1
    valid = torch.div(reach, fe.hop, rounding_mode="floor").clamp(max=frames)
    return (torch.arange(frames, device=device)[None, :] < valid[:, None]).float()


def sample_mask(lengths: torch.Tensor | None, n: int, batch: int, device) -> torch.Tensor:
    if lengths is None:
        return torch.ones(batch, n, device=device)
    return (torch.arange(n, device=device)[None, :] < lengths.to(device)[:, None]).float()


class SEModel(nn.Module):
    """Shared STFT -> mask -> iSTFT plumbing; subclasses implement `estimate(spec, fmask)`."""

    fe: FrontEnd

    def run(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        n = wav.shape[-1]
        smask = sample_mask(lengths, n, wav.shape[0], wav.device)
        # The STFT stays in float32 under autocast: half-precision FFTs lose too much.
        with torch.autocast(wav.device.type, enabled=False):
            noisy = stft(wav.float() * smask, self.fe)
        fmask = frame_mask(lengths, self.fe, noisy.shape[1], wav.shape[0], wav.device)
        est, mask = self.estimate(noisy, fmask)
        est = est * fmask[..., None]
        with torch.autocast(wav.device.type, enabled=False):
            out = istft(est.to(torch.complex64), self.fe, n) * smask
        return {"wav": out, "spec": est, "mask": mask, "noisy_spec": noisy, "frame_mask": fmask}

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.run(wav, lengths)["wav"]


class LSTMMask(SEModel):
    """The log's `lstm_se`: Conv1d over frequency-as-channels + BN -> BLSTM -> Linear -> magnitude mask.

    Input is the compressed magnitude |Y|^c; the mask multiplies the complex noisy spectrum, so the
    noisy phase is kept.
    """

    def __init__(
        self,
        fe: FrontEnd,
        conv_channels: int = 512,
        hidden: int = 256,
        layers: int = 2,
        mask_act: str = "softplus",
        compress: float = 0.3,
        kernel_size: int = 3,
    ):
        super().__init__()
        if mask_act not in MASK_ACTS:
            raise MosqaError(f"--mask-act must be one of {sorted(MASK_ACTS)}, got {mask_act!r}")
        self.fe, self.compress, self.mask_act = fe, compress, mask_act
        bins = fe.n_fft // 2 + 1
        self.conv = nn.Conv1d(bins, conv_channels, kernel_size, padding=kernel_size // 2)
        self.bn = nn.BatchNorm1d(conv_channels)
        self.lstm = nn.LSTM(conv_channels, hidden, layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, bins)

    def estimate(self, spec, fmask):
        x = (spec.abs() + 1e-8) ** self.compress * fmask[..., None]
        x = F.relu(self.bn(self.conv(x.transpose(1, 2)))).transpose(1, 2) * fmask[..., None]
        # Packing keeps the backward direction from reading padded frames.
        lens = fmask.sum(1).long().cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        mask = MASK_ACTS[self.mask_act][0](self.out(h)).float()
        return spec * mask, mask

    def identity_init(self) -> None:
        """Mask = 1 everywhere (exactly for softplus), whatever the input."""
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, MASK_ACTS[self.mask_act][1])


class CausalConvBlock(nn.Module):
    """Conv2d over (time, freq), padded on the past side only in time; BN + PReLU."""

    def __init__(self, cin, cout, kernel, fstride):
        super().__init__()
        self.kt = kernel[0]
        self.conv = nn.Conv2d(cin, cout, kernel, stride=(1, fstride), padding=(0, 1))
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.PReLU(cout)

    def forward(self, x):
        return self.act(self.bn(self.conv(F.pad(x, (0, 0, self.kt - 1, 0)))))


class CausalDeconvBlock(nn.Module):
    """Transposed conv mirroring a CausalConvBlock; drops future frames and the frequency overhang."""

    def __init__(self, cin, cout, kernel, fstride, last=False):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, kernel, stride=(1, fstride))
        self.post = nn.Identity() if last else nn.Sequential(nn.BatchNorm2d(cout), nn.PReLU(cout))

    def forward(self, x, frames, bins):
        # Encoder padding 1 in frequency maps output f to transposed-conv position f + 1.
        return self.post(self.deconv(x)[:, :, :frames, 1 : 1 + bins])


class DPRNNBlock(nn.Module):
    """Intra-chunk BLSTM over frequency, then a causal inter-chunk LSTM over time; residual + LayerNorm."""

    def __init__(self, channels: int, bins: int, intra_hidden: int = 64, inter_hidden: int = 128):
        super().__init__()
        self.intra = nn.LSTM(channels, intra_hidden, batch_first=True, bidirectional=True)
        self.intra_fc = nn.Linear(2 * intra_hidden, channels)
        self.intra_norm = nn.LayerNorm([bins, channels])
        self.inter = nn.LSTM(channels, inter_hidden, batch_first=True)
        self.inter_fc = nn.Linear(inter_hidden, channels)
        self.inter_norm = nn.LayerNorm([bins, channels])

    def forward(self, x):  # (B, T, F, C)
        b, t, f, c = x.shape
        h, _ = self.intra(x.reshape(b * t, f, c))
        x = x + self.intra_norm(self.intra_fc(h).reshape(b, t, f, c))
        h, _ = self.inter(x.transpose(1, 2).reshape(b * f, t, c))
        return x + self.inter_norm(self.inter_fc(h).reshape(b, f, t, c).transpose(1, 2))


class DPCRN(SEModel):
    """DPCRN (Le et al., Interspeech 2021): real+imag in, complex ratio mask out, causal in time."""

    CHANNELS = (32, 32, 32, 64, 128)
    KERNELS = ((2, 5), (2, 3), (2, 3), (2, 3), (2, 3))
    FSTRIDES = (2, 2, 1, 1, 1)

    def __init__(self, fe: FrontEnd, blocks: int = 2, intra_hidden: int = 64, inter_hidden: int = 128):
        super().__init__()
        self.fe = fe
        sizes = [fe.n_fft // 2 + 1]
        for k, s in zip(self.KERNELS, self.FSTRIDES, strict=True):
            sizes.append((sizes[-1] + 2 - k[1]) // s + 1)
        self.sizes = sizes
        cins = (2,) + self.CHANNELS[:-1]
        layers = list(zip(cins, self.CHANNELS, self.KERNELS, self.FSTRIDES, strict=True))
        self.encoder = nn.ModuleList(CausalConvBlock(ci, co, k, s) for ci, co, k, s in layers)
        self.dprnn = nn.ModuleList(
            DPRNNBlock(self.CHANNELS[-1], sizes[-1], intra_hidden, inter_hidden) for _ in range(blocks)
        )
        # Decoder layer i mirrors encoder layer i: it reads [skip_i, x] and emits encoder i's input size.
        self.decoder = nn.ModuleList(
            CausalDeconvBlock(2 * co, ci, k, s, last=(i == 0)) for i, (ci, co, k, s) in enumerate(layers)
        )

    def estimate(self, spec, fmask):
        x = torch.stack([spec.real, spec.imag], 1)  # (B, 2, T, F)
        frames = x.shape[2]
        skips = []
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
        x = x.permute(0, 2, 3, 1)
        for block in self.dprnn:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](torch.cat([skips[i], x], 1), frames, self.sizes[i])
        mask = torch.complex(x[:, 0].float(), x[:, 1].float())
        return spec * mask, mask

    def identity_init(self) -> None:
        """Complex ratio mask = 1 + 0j everywhere."""
        last = self.decoder[0].deconv
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.tensor([1.0, 0.0]))


SE_MODELS = {"lstm": LSTMMask, "dpcrn": DPCRN}

# Model options each architecture accepts from the config (the rest of the config is training).
MODEL_OPTIONS = {
    "lstm": ("conv_channels", "hidden", "layers", "mask_act", "compress"),
    "dpcrn": ("blocks", "intra_hidden", "inter_hidden"),
}


def se_frontend(cfg: dict) -> FrontEnd:
    """The STFT the enhancer works in: the paper's 400/200 sine or the log's 512/256 hann."""
    return FrontEnd(
        sample_rate=cfg.get("sample_rate", 16000),
        n_fft=cfg.get("n_fft", 512),
        hop=cfg.get("hop", 256),
        window=cfg.get("window", "hann"),
        feature="complex",
    )


def build_se_model(cfg: dict) -> SEModel:
    arch = cfg.get("arch", "dpcrn")
    if arch not in SE_MODELS:
        raise MosqaError(f"unknown enhancement model {arch!r}; choose from {', '.join(SE_MODELS)}")
    options = {k: cfg[k] for k in MODEL_OPTIONS[arch] if cfg.get(k) is not None}
    model = SE_MODELS[arch](se_frontend(cfg), **options)
    if cfg.get("identity_init"):
        model.identity_init()
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
