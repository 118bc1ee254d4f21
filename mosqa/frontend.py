"""The STFT front end every model reads: waveform -> (frames, bins) features, in torch so it runs on GPU.

`FrontEnd` is a plain dataclass; its `key()` names the settings so cached features are never
reused under different settings, and it is saved in every run's config so a model reloads with
exactly the features it was trained on.
"""

from dataclasses import asdict, dataclass

import torch

from mosqa.audio import MIN_SECONDS
from mosqa.checks import check_counts
from mosqa.errors import MosqaError

FEATURES = ("mag", "complex", "logmel")
LATE_OPTIONS = ("level_norm",)
# Positive integers (checks.check_counts): anything else fails deep inside resampling or the STFT.
COUNTS = ("sample_rate", "n_fft", "hop", "n_mels")


@dataclass(frozen=True)
class FrontEnd:
    sample_rate: int = 16000
    n_fft: int = 512
    hop: int = 256
    win: int | None = None  # None = n_fft
    window: str = "hann"  # hann | hamming | sine
    feature: str = "mag"  # mag: |X|^c ; complex: compressed (re, im) ; logmel: log mel power
    compress: float = 1.0  # power-law exponent c; 1.0 = raw magnitude (qn_input_type 0), 0.5 = the log's `cp`
    n_mels: int = 48
    level_norm: float | None = None  # dBFS each clip's valid samples are scaled to first; None = as recorded

    def __post_init__(self):
        check_counts(asdict(self), COUNTS)
        if self.sample_rate * MIN_SECONDS <= self.n_fft // 2:  # the STFT's reflect padding needs more
            raise MosqaError(f"--sample-rate {self.sample_rate}: too low for --n-fft {self.n_fft} (a "
                             f"{MIN_SECONDS:g} s clip, the shortest accepted, must outlast half a frame)")
        if self.feature not in FEATURES:
            raise MosqaError(f"front end: feature must be one of {FEATURES}, got {self.feature!r}")
        if not 0 < self.compress <= 1:
            raise MosqaError(f"front end: compress must be in (0, 1], got {self.compress}")

    @property
    def win_length(self) -> int:
        return self.win or self.n_fft

    @property
    def n_bins(self) -> int:
        """Feature size per frame, as the model sees it."""
        if self.feature == "logmel":
            return self.n_mels
        bins = self.n_fft // 2 + 1
        return 2 * bins if self.feature == "complex" else bins

    def key(self) -> str:
        # Options added later stay out of the key while unset, so caches made before them stay valid.
        items = asdict(self).items()
        return "_".join(f"{k}{v}" for k, v in items if not (k in LATE_OPTIONS and v is None))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FrontEnd":
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in fields})

    def num_frames(self, num_samples):
        """Frames produced for `num_samples` (centre padding, as torch.stft)."""
        return num_samples // self.hop + 1


def make_window(kind: str, length: int, device=None) -> torch.Tensor:
    if kind == "hann":
        return torch.hann_window(length, device=device)
    if kind == "hamming":
        if torch.compiler.is_exporting():  # ONNX's HammingWindow has 25/46 and 21/46, not torch's 0.54, 0.46
            n = torch.arange(length, device=device, dtype=torch.float32)
            return 0.54 - 0.46 * torch.cos(2 * torch.pi * n / length)
        return torch.hamming_window(length, device=device)
    if kind == "sine":  # DPCRN's analysis window; sine^2 + shifted sine^2 = 1 at 50 % overlap
        n = torch.arange(length, device=device, dtype=torch.float32)
        return torch.sin(torch.pi * (n + 0.5) / length)
    raise MosqaError(f"front end: unknown window {kind!r} (hann, hamming, sine)")


def stft(wav: torch.Tensor, fe: FrontEnd) -> torch.Tensor:
    """Complex STFT, (batch, frames, bins)."""
    window = make_window(fe.window, fe.win_length, wav.device)
    spec = torch.stft(wav, fe.n_fft, fe.hop, fe.win_length, window, center=True, return_complex=True)
    return spec.transpose(-1, -2)


def istft(spec: torch.Tensor, fe: FrontEnd, length: int) -> torch.Tensor:
    """Inverse of `stft` for (batch, frames, bins) complex input."""
    window = make_window(fe.window, fe.win_length, spec.device)
    frames_last = spec.transpose(-1, -2)
    return torch.istft(frames_last, fe.n_fft, fe.hop, fe.win_length, window, center=True, length=length)


def compress_complex(spec: torch.Tensor, c: float, eps: float = 1e-8) -> torch.Tensor:
    """|X|^c with the phase kept: X * |X|^(c-1)."""
    if c == 1.0:
        return spec
    return spec * (spec.abs() + eps) ** (c - 1)


def mel_filterbank(fe: FrontEnd, device=None) -> torch.Tensor:
    """Slaney-style triangular mel filters (n_mels, bins), area-normalised."""
    def hz_to_mel(f):
        f = torch.as_tensor(f, dtype=torch.float64)
        lin = f / (200.0 / 3)
        log = 15.0 + torch.log(torch.clamp(f, min=1e-10) / 1000.0) / (torch.log(torch.tensor(6.4)) / 27.0)
        return torch.where(f >= 1000.0, log, lin)

    def mel_to_hz(m):
        lin = m * (200.0 / 3)
        log = 1000.0 * torch.exp((torch.log(torch.tensor(6.4)) / 27.0) * (m - 15.0))
        return torch.where(m >= 15.0, log, lin)

    bins = fe.n_fft // 2 + 1
    freqs = torch.linspace(0, fe.sample_rate / 2, bins, dtype=torch.float64)
    top = hz_to_mel(fe.sample_rate / 2)
    mel_edges = torch.linspace(hz_to_mel(0.0), top, fe.n_mels + 2, dtype=torch.float64)
    mel_pts = mel_to_hz(mel_edges)
    lower, centre, upper = mel_pts[:-2, None], mel_pts[1:-1, None], mel_pts[2:, None]
    up = (freqs - lower) / (centre - lower)
    down = (upper - freqs) / (upper - centre)
    fb = torch.clamp(torch.minimum(up, down), min=0) * (2.0 / (upper - lower))
    return fb.to(dtype=torch.float32, device=device)


def normalise_level(wav: torch.Tensor, target_db: float, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Scale each row so its first `lengths` samples have RMS `target_db` dBFS; padding never counts.

    Quality labels such as PESQ ignore the playback level, while raw spectra carry it, so without
    this a model must learn level invariance from data where levels vary by tens of dB.
    """
    power = wav.square()
    if lengths is None:
        mean = power.mean(-1, keepdim=True)
    else:
        valid = torch.arange(wav.shape[-1], device=wav.device)[None, :] < lengths[:, None].to(wav.device)
        mean = (power * valid).sum(-1, keepdim=True) / lengths[:, None].to(wav.device).clamp_min(1)
    # The floor (-100 dBFS) keeps digital silence from being blown up to full scale.
    return wav * (10 ** (target_db / 20) * torch.rsqrt(mean.clamp_min(1e-10)))


def reflect_ends(wav: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Each row's `pad` samples after its own end set to the reflection of its end, as the STFT's centre
    padding would make them for the row alone; the batch grows by `pad` samples. Differentiable.

    Without this, a padded row's last frames see the zeros of the padding: its score would depend on
    the batch it is in and differ from training, where features are made clip by clip.
    """
    total = wav.shape[-1] + pad
    j = torch.arange(total, device=wav.device)[None, :]
    end = lengths.to(wav.device).long()[:, None]
    source = torch.where(j < end, j, (2 * end - 2 - j).clamp_min(0))
    keep = (j < end + pad).to(wav.dtype)
    padded = torch.nn.functional.pad(wav, (0, pad))
    return padded.gather(-1, source.clamp_max(total - 1).expand(wav.shape[0], -1)) * keep


def features(wav: torch.Tensor, fe: FrontEnd, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, samples) waveform -> (batch, frames, n_bins) features. Differentiable.

    `lengths` (batch,) valid samples per row of a padded batch: level_norm counts only those, and each
    row's valid frames equal those of the row alone (frames past them are padding for the model to mask).
    """
    if fe.level_norm is not None:
        wav = normalise_level(wav, fe.level_norm, lengths)
    if lengths is not None:
        wav = reflect_ends(wav, lengths, fe.n_fft // 2)
    spec = stft(wav, fe)
    if fe.feature == "mag":
        mag = spec.abs()
        return mag if fe.compress == 1.0 else (mag + 1e-8) ** fe.compress
    if fe.feature == "complex":
        c = compress_complex(spec, fe.compress)
        return torch.cat([c.real, c.imag], dim=-1)
    power = spec.abs() ** 2
    mel = power @ mel_filterbank(fe, wav.device).T
    return torch.log10(mel + 1e-10)


def frame_lengths(num_samples: torch.Tensor, fe: FrontEnd) -> torch.Tensor:
    """Valid frames for each waveform length in a padded batch."""
    return num_samples // fe.hop + 1
