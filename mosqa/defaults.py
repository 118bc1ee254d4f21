"""Data that ships with mosqa or is generated on the fly, so the demo runs with nothing downloaded.

Built-in speech: six espeak-ng "speakers" x six sentences under mosqa/speech/<speaker>/ (made by
recipes/tools/make_builtin_speech.py). Noises: white, pink and brown noise and a babble of built-in
utterances, generated deterministically (synthetic rooms: rooms.py).
"""

from pathlib import Path

import numpy as np

from mosqa.audio import SAMPLE_RATE, load_audio

DATA_DIR = Path(__file__).resolve().parent / "speech"
NOISE_SECONDS = 12.0


def builtin_speech_dir() -> Path:
    return DATA_DIR


def _coloured(rng: np.random.Generator, n: int, exponent: float, sr: int) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    # Below 20 Hz the slope is flattened: brown noise would otherwise be all DC drift.
    spec *= np.maximum(freqs, 20.0) ** (-exponent / 2)
    return np.fft.irfft(spec, n)


def _babble(rng: np.random.Generator, n: int, talkers: int = 6) -> np.ndarray:
    """Several built-in utterances overlaid at random offsets, each looped to the full length."""
    files = sorted(DATA_DIR.glob("*/*.flac"))
    out = np.zeros(n)
    for i in rng.choice(len(files), size=min(talkers, len(files)), replace=False):
        wav = load_audio(files[i])
        out += np.roll(np.resize(wav, n), int(rng.integers(n)))
    return out


NOISE_MAKERS = {
    "white": lambda rng, n, sr: _coloured(rng, n, 0.0, sr),
    "pink": lambda rng, n, sr: _coloured(rng, n, 1.0, sr),
    "brown": lambda rng, n, sr: _coloured(rng, n, 2.0, sr),
    "babble": lambda rng, n, sr: _babble(rng, n),
}


def generated_noises(sr: int = SAMPLE_RATE, seconds: float = NOISE_SECONDS, seed: int = 0) -> dict:
    """name -> float32 noise at -20 dBFS RMS; the same every call for the same seed."""
    n = int(seconds * sr)
    out = {}
    for i, (name, make) in enumerate(NOISE_MAKERS.items()):
        wav = make(np.random.default_rng([seed, i]), n, sr)
        out[name] = (wav * (0.1 / np.sqrt(np.mean(wav ** 2)))).astype(np.float32)
    return out

