"""Degradations that turn clean speech into labelled training material (the Quality-Net recipe).

Each degradation draws its own parameters from the item's random generator and returns the
degraded signal plus those parameters (for meta.csv), so one (seed, utterance, k) always gives
the same clip. `DEGRADATIONS` lists them in the order a real signal chain would apply them:
room, noise, analogue clipping, band-limiting, codec, transmission loss.
"""

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import butter, fftconvolve, sosfiltfilt

from mosqa.audio import SAMPLE_RATE, load_audio, resample, write_audio
from mosqa.defaults import synthetic_rir

# Wideband PESQ is harsh: below ~10 dB SNR nearly every clip scores ~1.05, and only above ~45 dB
# does white noise score 4 and more. This range spreads noisy clips over the whole label scale.
SNR_RANGE = (5.0, 55.0)
DRR_RANGE = (3.0, 30.0)
CLIP_RANGE = (0.3, 0.95)  # clipping level as a fraction of the peak: ~PESQ 1.2 .. 4.4
LOSS_RANGE = (0.002, 0.08)


@dataclass
class Sources:
    """What degradations draw from: named noises and RIRs (16 kHz) and the ffmpeg codecs usable here."""

    noises: dict
    rirs: dict = field(default_factory=dict)  # empty -> synthetic RIRs
    codecs: tuple = ()
    snr_range: tuple = SNR_RANGE


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def add_noise(wav, rng, src: Sources):
    name = sorted(src.noises)[rng.integers(len(src.noises))]
    noise = src.noises[name]
    snr = float(rng.uniform(*src.snr_range))
    if len(noise) > len(wav):
        start = int(rng.integers(len(noise) - len(wav)))
        noise = noise[start:start + len(wav)]
    else:
        noise = np.resize(noise, len(wav))
    gain = _rms(wav) / _rms(noise) * 10 ** (-snr / 20)
    return wav + gain * noise, {"noise": name, "snr_db": round(snr, 2)}


def normalise_rir(rir: np.ndarray) -> np.ndarray:
    """Start at the direct path and scale it to 1, so convolution neither delays nor changes level much."""
    peak = int(np.argmax(np.abs(rir)))
    rir = rir[peak:]
    return (rir / rir[0]).astype(np.float32)


DIRECT_SECONDS = 0.0025  # what counts as the direct path when setting the direct-to-reverberant ratio


def reverb(wav, rng, src: Sources):
    """Convolve with a (normalised) RIR whose tail is rescaled to a drawn direct-to-reverberant ratio.

    Most recorded RIRs are far-field (DRR well below 0 dB), which alone would give PESQ ~1.1; drawing
    the DRR spreads reverberant clips over the whole label range.
    """
    if src.rirs:
        name = sorted(src.rirs)[rng.integers(len(src.rirs))]
        rir, params = src.rirs[name], {"rir": name}
    else:
        rt60 = float(rng.uniform(0.2, 1.0))
        rir, params = synthetic_rir(rng, rt60), {"rir": "synthetic", "rt60_s": round(rt60, 3)}
    drr = float(rng.uniform(*DRR_RANGE))
    split = int(DIRECT_SECONDS * SAMPLE_RATE)
    rir = rir.astype(np.float64)
    tail_energy = float(np.sum(rir[split:] ** 2))
    if tail_energy > 0:
        rir[split:] *= np.sqrt(np.sum(rir[:split] ** 2) * 10 ** (-drr / 10) / tail_energy)
    out = fftconvolve(wav, rir)[: len(wav)]
    return out * (_rms(wav) / _rms(out)), {**params, "drr_db": round(drr, 2)}


def clip(wav, rng, src: Sources):
    """Hard clipping at a fraction of the peak."""
    fraction = float(rng.uniform(*CLIP_RANGE))
    limit = fraction * float(np.max(np.abs(wav)))
    return np.clip(wav, -limit, limit), {"clip_fraction": round(fraction, 4)}


BANDS = [(0, 1000), (0, 2000), (0, 3000), (0, 4000), (0, 5000), (0, 6000), (300, 3400), (100, 7000)]


def bandlimit(wav, rng, src: Sources):
    low, high = BANDS[rng.integers(len(BANDS))]
    sos = butter(8, [low, high], "bandpass", fs=SAMPLE_RATE, output="sos") if low else \
        butter(8, high, "lowpass", fs=SAMPLE_RATE, output="sos")
    return sosfiltfilt(sos, wav), {"band_low_hz": low, "band_high_hz": high}


def packet_loss(wav, rng, src: Sources):
    """Lose 20 ms frames in bursts; a lost frame is zeroed or repeats the previous one (naive concealment)."""
    frame = int(0.02 * SAMPLE_RATE)
    rate = float(rng.uniform(*LOSS_RANGE))
    mode = ("zero", "repeat")[rng.integers(2)]
    n_frames = len(wav) // frame
    lost = np.zeros(n_frames, bool)
    # Two-state (Gilbert) model: mean burst of 2 frames, stationary loss probability = rate.
    p_recover = 0.5
    p_lose = rate * p_recover / (1 - rate)
    state = False
    for i in range(n_frames):
        state = rng.random() < (1 - p_recover if state else p_lose)
        lost[i] = state
    out = wav.copy()
    for i in np.flatnonzero(lost):
        seg = slice(i * frame, (i + 1) * frame)
        out[seg] = out[(i - 1) * frame: i * frame] if mode == "repeat" and i > 0 else 0.0
    return out, {"loss_rate": round(rate, 3), "loss_mode": mode, "lost_frames": int(lost.sum())}


@dataclass(frozen=True)
class Codec:
    encoder: str  # ffmpeg encoder name
    sample_rate: int
    suffix: str  # a container that takes this codec
    bitrates: tuple = ()  # passed as -b:a
    modes: tuple = ()  # passed as -mode (codec2)


# Mostly low bit-rates (a few higher ones keep codec clips from piling up around PESQ 2).
CODECS = {
    "opus": Codec("libopus", 16000, ".ogg", ("6k", "8k", "12k", "16k", "24k", "32k")),
    "mp3": Codec("libmp3lame", 16000, ".mp3", ("8k", "16k", "24k", "32k", "48k")),
    "aac": Codec("aac", 16000, ".mka", ("8k", "12k", "16k", "24k", "32k")),
    "amr-nb": Codec("libopencore_amrnb", 8000, ".amr", ("4.75k", "7.4k", "12.2k")),
    "amr-wb": Codec("libvo_amrwbenc", 16000, ".awb", ("6.6k", "12.65k", "23.85k")),
    "gsm": Codec("libgsm", 8000, ".gsm"),
    "g726": Codec("g726", 8000, ".mka", ("16k", "24k", "32k")),
    "g723.1": Codec("g723_1", 8000, ".mka", ("6.3k",)),
    "speex": Codec("libspeex", 16000, ".ogg", ("4k", "8k", "12k", "24k")),
    "codec2": Codec("libcodec2", 8000, ".c2", modes=("700C", "1200", "2400", "3200")),
    "vorbis": Codec("libvorbis", 16000, ".ogg", ("16k", "24k")),
}


@functools.cache
def ffmpeg_codecs() -> tuple:
    """Names from CODECS whose encoder this machine's ffmpeg has (empty without ffmpeg)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return ()
    try:
        listing = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    names = {line.split()[1] for line in listing.splitlines() if len(line.split()) > 1}
    return tuple(name for name, c in CODECS.items() if c.encoder in names)


def run_codec(wav: np.ndarray, name: str, setting: str | None) -> np.ndarray:
    """Encode and decode through ffmpeg; the result is trimmed or padded to the input length."""
    c = CODECS[name]
    with tempfile.TemporaryDirectory(prefix="mosqa_codec_") as tmp:
        src, enc, dec = Path(tmp, "in.wav"), Path(tmp, "enc" + c.suffix), Path(tmp, "out.wav")
        write_audio(src, np.clip(wav, -1, 1), SAMPLE_RATE)
        opts = ["-mode", setting] if c.modes else (["-b:a", setting] if setting else [])
        base = ["ffmpeg", "-v", "error", "-nostdin", "-y"]
        encode = ["-ac", "1", "-ar", str(c.sample_rate), "-c:a", c.encoder, *opts]
        decode = ["-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le"]
        for cmd in ([*base, "-i", str(src), *encode, str(enc)], [*base, "-i", str(enc), *decode, str(dec)]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        out = load_audio(dec, SAMPLE_RATE)
    return np.pad(out[: len(wav)], (0, max(0, len(wav) - len(out))))


def mulaw(wav: np.ndarray) -> np.ndarray:
    """G.711-style mu-law at 8 kHz in numpy: the codec that needs no ffmpeg."""
    narrow = resample(np.clip(wav, -1, 1).astype(np.float32), SAMPLE_RATE, 8000)
    mu = 255.0
    companded = np.sign(narrow) * np.log1p(mu * np.abs(narrow)) / np.log1p(mu)
    quantised = np.round(companded * 127) / 127
    expanded = np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu
    return resample(expanded.astype(np.float32), 8000, SAMPLE_RATE)[: len(wav)]


def codec(wav, rng, src: Sources):
    choices = ("mulaw", *src.codecs)
    name = choices[rng.integers(len(choices))]
    if name == "mulaw":
        return mulaw(wav), {"codec": "mulaw", "codec_setting": "64k"}
    c = CODECS[name]
    options = c.modes or c.bitrates
    setting = options[rng.integers(len(options))] if options else None
    # Codecs expect a sane level; scale into range and back so the level change is not the degradation.
    peak = float(np.max(np.abs(wav))) + 1e-9
    scale = 0.5 / peak
    return run_codec(wav * scale, name, setting) / scale, {"codec": name, "codec_setting": setting or ""}


# name -> function, in signal-chain order; weight = how often it is drawn.
DEGRADATIONS = {
    "reverb": reverb,
    "noise": add_noise,
    "clip": clip,
    "bandlimit": bandlimit,
    "codec": codec,
    "packet_loss": packet_loss,
}
WEIGHTS = {"reverb": 1.5, "noise": 3.0, "clip": 1.0, "bandlimit": 1.5, "codec": 2.0, "packet_loss": 1.5}
# Probability of applying 1, 2 or 3 degradations together. Combinations mostly land below PESQ 2,
# so they are kept rare enough not to pile labels up at the bottom.
COUNT_PROBS = (0.8, 0.15, 0.05)


def degrade(wav: np.ndarray, rng: np.random.Generator, src: Sources) -> tuple[np.ndarray, dict]:
    """Apply one to three randomly drawn degradations; returns float32 in [-1, 1] and all parameters."""
    names = list(DEGRADATIONS)
    p = np.array([WEIGHTS[n] for n in names])
    count = int(rng.choice(len(COUNT_PROBS), p=COUNT_PROBS)) + 1
    picked = set(rng.choice(names, size=count, replace=False, p=p / p.sum()).tolist())
    out = wav.astype(np.float64)
    params = {"degradations": "+".join(n for n in names if n in picked)}
    for name in names:
        if name in picked:
            out, extra = DEGRADATIONS[name](out, rng, src)
            params.update(extra)
    peak = float(np.max(np.abs(out)))
    # Keep headroom so writing 16-bit never clips on top of what was simulated.
    if peak > 0.99:
        out = out * (0.99 / peak)
    return out.astype(np.float32), params
