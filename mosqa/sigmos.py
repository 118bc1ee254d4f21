"""SIGMOS (ITU-T P.804 dimensions): seven MOS columns from one pass of Microsoft's ONNX model.

The model file is not on any registry reachable here, so users pass it (--sigmos-model); we own the
feature pipeline: 48 kHz, STFT 960/480 with a square-root Hann window, 480 zeros before the clip,
and power-law compression to [|X|^c, re·|X|^(c-1), im·|X|^(c-1)] with c = 0.3.
"""

import numpy as np

from mosqa.audio import resample
from mosqa.errors import MosqaError
from mosqa.onnx_sessions import onnx_session

SR = 48000
DFT = 960
HOP = 480
COMPRESS = 0.3
POWER_FLOOR = 1e-12  # keeps |X|^(c-1) finite in digital silence
COLUMNS = ["MOS_COL", "MOS_DISC", "MOS_LOUD", "MOS_NOISE", "MOS_REVERB", "MOS_SIG", "MOS_OVRL"]


def window() -> np.ndarray:
    """sqrt of a periodic Hann of 960 (a 961-point symmetric one without its last sample): COLA at hop 480."""
    return np.sqrt(np.hanning(DFT + 1)[:-1]).astype(np.float32)


def stft(audio: np.ndarray) -> np.ndarray:
    """(frames, 481) complex64. 480 zeros go before the clip and enough after it that the last window
    holds the clip's last sample, so frames = ceil(len / 480) + 1."""
    audio = np.asarray(audio, dtype=np.float32)
    tail = audio.size % HOP or HOP
    padded = np.pad(audio, (DFT - HOP, DFT - tail))
    frames = np.lib.stride_tricks.sliding_window_view(padded, DFT)[::HOP]
    return np.fft.rfft(frames * window(), n=DFT, axis=-1).astype(np.complex64)


def compress(spec: np.ndarray, c: float = COMPRESS) -> np.ndarray:
    """(1, 3, frames, bins) float32: compressed magnitude, then real and imaginary parts scaled alike."""
    re, im = spec.real.astype(np.float32), spec.imag.astype(np.float32)
    power = np.maximum(re * re + im * im, POWER_FLOOR)
    scale = power ** ((c - 1) / 2)
    return np.stack([power ** (c / 2), re * scale, im * scale])[None].astype(np.float32)


def features(audio: np.ndarray, sr: int = SR) -> np.ndarray:
    """The model's input for a mono clip at any rate (resampled to 48 kHz first)."""
    return compress(stft(resample(np.asarray(audio, dtype=np.float32), sr, SR)))


class SigMOS:
    """One session for many clips; `.score(audio, sr)` -> {MOS_COL: ..., ..., MOS_OVRL: ...}."""

    columns = COLUMNS

    def __init__(self, model_path, device: str = "cpu", threads: int | None = None):
        self.path = model_path
        self.session = onnx_session(model_path, device, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def score(self, audio: np.ndarray, sr: int) -> dict:
        x = features(audio, sr)
        out = self.session.run(None, {name: x for name in self.input_names})[0].reshape(-1)
        if out.size != len(COLUMNS):
            raise MosqaError(f"{self.path}: model gives {out.size} outputs, SIGMOS has {len(COLUMNS)}")
        return {name: float(v) for name, v in zip(COLUMNS, out, strict=True)}
