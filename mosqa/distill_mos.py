"""Distill-MOS (Stahl & Gamper, 2025) in our own torch module: a frozen encoder for quality heads.

Why: its intermediate layers carry what a model distilled from listener-trained XLS-R knows about
quality, and a head trained on them generalises past every peer (issue 19's scout). Its pip package
imports torchaudio, which fails beside this project's torch, so the layers are written here from the
published architecture and the weights (MIT) ship in `mosqa/pretrained/distill-mos/`, stored as float16
(8 MB instead of 16 MB; scores move by < 1e-3 MOS).

The network, as its weights describe it:
- compressed complex STFT: 20 ms Hann window, 10 ms hop, |X|^0.3 with the phase kept -> (2, 161, T);
- six 3x3 convolutions with LeakyReLU(0.1): 64, 64, 128, 256, 256, 256 channels, frequency stride 2
  from the second on, time stride 2 on the last -> 256 channels x 4 bins = 1024 features every 20 ms;
- batch norms, a projection to 200, a fixed sinusoidal position code of 384 frames (7.68 s), seven
  post-norm transformer layers (8 heads, feed-forward 400), attention pooling, sigmoid -> 1 + 4 q.

The reference zero-pads every input to 7.68 s and scores longer ones as windows 1 s apart. `pad=True`
does the same (scores equal the reference); `pad=False` runs only the frames that hold audio (the
position code cut to them), about twice as fast on 4 s clips: the features the campaign trains on.
"""

import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mosqa.errors import MosqaError

SAMPLE_RATE = 16000
SEGMENT = 122880  # 7.68 s: the length the reference pads or crops every input to
SEGMENT_HOP = 16000  # the reference's window step over longer inputs
HOP, WIN = 160, 320
CHANNELS = (64, 64, 128, 256, 256, 256)
DIM, HEADS, LAYERS, POSITIONS = 200, 8, 7, 384
WEIGHTS = Path(__file__).parent / "pretrained" / "distill-mos" / "weights.pt"
# Transformer layers whose outputs are summarised as features (1-based); the CNN output and the attention
# pool are always included. The scout found layers 2 and 4 add to the last one.
FEATURE_LAYERS = (2, 4, 7)
ALL_LAYERS = tuple(range(1, LAYERS + 1))  # what a head comparison extracts once and selects from


def feature_dim(layers=FEATURE_LAYERS) -> int:
    return 2 * 1024 + 2 * DIM * len(layers) + DIM + 1


FEATURE_DIM = feature_dim()
LISTENER = FEATURE_DIM - 1  # the feature that is the network's own MOS (summarise puts it last)


class CompressedSpectrum(nn.Module):
    """(B, N) -> (B, 2, 161, frames) float32: the real and imaginary STFT with magnitudes raised to 0.3.

    Computed in float64: |X|^0.3 magnifies rounding near zero (a bin at float32's noise floor, 1e-7 of
    the frame, comes out at 1e-2), so two float32 STFTs (torch's, onnxruntime's) give scores 1e-2 apart
    on tonal or partly silent input; in float64 they agree to 1e-5. A module of its own so that
    mosqa.export can swap in a form onnxruntime runs faster."""

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        pad = (WIN - HOP) // 2
        x = F.pad(wav.double()[:, None], (pad, pad), mode="reflect")[:, 0]
        window = torch.hann_window(WIN, dtype=torch.float64, device=wav.device)
        spec = torch.stft(x, WIN, HOP, WIN, window, center=False, return_complex=True)
        return compress(spec.real, spec.imag).float()


def compress(real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
    """(B, F, T) twice -> (B, 2, F, T): magnitudes raised to 0.3, phases kept."""
    # floored before the root, whose gradient at an exactly silent bin is infinite (NaN once multiplied)
    mag = torch.sqrt((real ** 2 + imag ** 2).clamp_min(1e-24))
    gain = mag ** 0.3 / mag
    return torch.stack((real * gain, imag * gain), dim=1)


def position_code(frames: int) -> torch.Tensor:
    """(1, frames, DIM) sinusoids; the reference spreads its wavelengths over 2 x 384 positions."""
    pos = torch.arange(frames, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, DIM, 2, dtype=torch.float32) * (-math.log(2 * POSITIONS) / DIM))
    code = torch.zeros(1, frames, DIM)
    code[0, :, 0::2] = torch.sin(pos * rate)
    code[0, :, 1::2] = torch.cos(pos * rate)
    return code


class Encoder(nn.Module):
    """Waveform -> every layer's frames; `forward` -> the score, `features` -> pooled statistics."""

    def __init__(self):
        super().__init__()
        layers, prev = [], 2
        for i, ch in enumerate(CHANNELS):
            stride = (2 if i else 1, 2 if i == len(CHANNELS) - 1 else 1)
            layers += [nn.Conv2d(prev, ch, 3, stride=stride, padding=(0, 1)), nn.LeakyReLU(0.1)]
            prev = ch
        self.spectrum = CompressedSpectrum()
        self.cnn = nn.Sequential(*layers)
        self.norm_input = nn.BatchNorm1d(1024)
        self.norm_proj = nn.BatchNorm1d(1024)
        self.proj = nn.Linear(1024, DIM)
        self.register_buffer("code", position_code(POSITIONS), persistent=False)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(DIM, HEADS, 2 * DIM, dropout=0.0, batch_first=True)
            for _ in range(LAYERS))
        self.norm_out = nn.BatchNorm1d(DIM)
        self.att_hidden = nn.Linear(DIM, 2 * DIM)
        self.att_score = nn.Linear(2 * DIM, 1)
        self.out = nn.Linear(DIM, 1)

    def frames(self, wav: torch.Tensor) -> dict:
        """(B, N) peak-normalised inside -> {"cnn": (B, T, 1024), 1..7: (B, T, 200), "pooled": (B, 200),
        "score": (B,)}; T = N / 320."""
        wav = wav / (wav.abs().amax(dim=1, keepdim=True) + 1e-8)
        cnn = self.cnn(self.spectrum(wav)).flatten(1, 2).transpose(1, 2)
        x = self.norm_proj(self.norm_input(cnn.transpose(1, 2))).transpose(1, 2)
        if x.shape[1] > POSITIONS:
            raise MosqaError(f"distill-mos: at most {SEGMENT} samples a window, got {wav.shape[1]}")
        x = self.proj(x) + self.code[:, : x.shape[1]]
        out = {"cnn": cnn}
        for i, layer in enumerate(self.layers, 1):
            x = layer(x)
            out[i] = x
        out["pooled"], out["score"] = pool(self, x)
        return out

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B,) MOS as the reference scores it (zero-padded 7.68 s windows, 1 s apart)."""
        return torch.stack([self.frames(w)["score"] for w in reference_windows(wav)]).mean(dim=0)

    def features(self, wav: torch.Tensor, pad: bool = False, layers=FEATURE_LAYERS) -> torch.Tensor:
        """(B, N) -> (B, feature_dim(layers)): mean and sd over time of the CNN output and of `layers`,
        the attention pool and the score, averaged over windows for inputs longer than 7.68 s."""
        windows = reference_windows(wav) if pad else split_windows(wav)
        return torch.stack([summarise(self.frames(w), layers) for w in windows]).mean(dim=0)


def pool(m: nn.Module, x: torch.Tensor, pad: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, DIM) last-layer frames -> ((B, DIM) attention pool, (B,) MOS), by m's norm_out, att_hidden,
    att_score and out: an Encoder's, or those of a module fine-tuned from one (mosqa.upper_head). `pad`
    (B, T), True on padding, keeps those frames out of the pool, so a padded batch scores as its clips."""
    x = m.norm_out(x.transpose(1, 2)).transpose(1, 2)
    logits = m.att_score(F.relu(m.att_hidden(x)))
    if pad is not None:
        logits = logits.masked_fill(pad[..., None], -torch.inf)
    pooled = (torch.softmax(logits, dim=1) * x).sum(dim=1)
    return pooled, 1 + 4 * torch.sigmoid(m.out(pooled))[:, 0]


def feature_columns(keys, layers=ALL_LAYERS) -> np.ndarray:
    """Column indices, in features(layers=layers)'s layout, of the blocks `keys` names ("cnn", a layer
    number, "pooled", "score"), in layout order: a head on fewer layers reads them from one extraction."""
    sizes = {"cnn": 2 * 1024, **{i: 2 * DIM for i in layers}, "pooled": DIM, "score": 1}
    unknown = set(keys) - set(sizes)
    if unknown:
        raise MosqaError(f"distill-mos: no feature block {sorted(map(str, unknown))} in layers {layers}")
    bounds = np.cumsum([0, *sizes.values()])
    return np.concatenate([np.arange(bounds[j], bounds[j + 1]) for j, key in enumerate(sizes) if key in keys])


def summarise(out: dict, layers=FEATURE_LAYERS) -> torch.Tensor:
    stats = []
    for key in ("cnn", *layers):
        std, mean = torch.std_mean(out[key], dim=1, correction=0)
        stats += [mean, std]
    return torch.cat([*stats, out["pooled"], out["score"][:, None]], dim=1)


def reference_windows(wav: torch.Tensor) -> list[torch.Tensor]:
    """The reference's windows: short inputs zero-padded to 7.68 s, long ones cut into 7.68 s windows
    spread evenly at most 1 s apart."""
    over = wav.shape[1] - SEGMENT
    if over <= 0:
        return [F.pad(wav, (0, -over))]
    starts = np.linspace(0, 1, math.ceil(over / SEGMENT_HOP) + 1)
    return [wav[:, int(s * over): int(s * over) + SEGMENT] for s in starts]


def split_windows(wav: torch.Tensor) -> list[torch.Tensor]:
    """No padding: inputs up to 7.68 s as they are, longer ones as equal windows of at most 7.68 s."""
    n = wav.shape[1]
    if 2 * WIN <= n <= SEGMENT:  # said first: mosqa.export traces this branch for any length up to SEGMENT
        return [wav]
    count = math.ceil(n / SEGMENT)
    size = math.ceil(n / count)
    return [wav[:, i * size: min(n, (i + 1) * size)] for i in range(count)
            if min(n, (i + 1) * size) - i * size >= 2 * WIN]


# Our parameter names -> the names in the published checkpoint (the rest match by position).
_RENAMES = {
    "cnn.": "cnn.cnn.",
    "norm_input.": "transformer_pool_attn.norm_input.",
    "norm_proj.": "transformer_pool_attn.transformer.norm.",
    "proj.": "transformer_pool_attn.transformer.linear_proj.",
    "layers.": "transformer_pool_attn.transformer.transformer_encoder.layers.",
    "norm_out.": "transformer_pool_attn.norm_trans.",
    "att_hidden.": "transformer_pool_attn.pool.linear1.",
    "att_score.": "transformer_pool_attn.pool.linear2.",
    "out.": "transformer_pool_attn.pool.linear3.",
}


def from_published(state: dict) -> dict:
    """The published checkpoint's state dict under our names (used once, to make the shipped file)."""
    ours = {}
    for key in Encoder().state_dict():
        prefix = next(p for p in _RENAMES if key.startswith(p))
        ours[key] = state[_RENAMES[prefix] + key[len(prefix):]]
    return ours


@functools.lru_cache(maxsize=4)
def _load(path: str) -> Encoder:
    if not Path(path).is_file():
        raise MosqaError(f"{path}: the Distill-MOS weights are missing (reinstall mosqa)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = Encoder()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval().requires_grad_(False)


def load_encoder(device="cpu", path: Path = WEIGHTS) -> Encoder:
    """The frozen encoder in eval mode (one copy per weights file and process, moved to `device`)."""
    return _load(str(path)).to(torch.device(device))
