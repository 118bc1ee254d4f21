"""Degradations that turn clean speech into labelled training material (the Quality-Net recipe).

Each degradation draws its own parameters from the item's random generator and returns the
degraded signal plus those parameters (for meta.csv), so one (seed, utterance, k) always gives
the same clip. `DEGRADATIONS` lists them in the order a real signal chain would apply them:
room, noise, analogue clipping, band-limiting, codec, transmission loss.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, fftconvolve, sosfiltfilt

from mosqa.audio import SAMPLE_RATE
from mosqa.codecs import CODECS, mulaw, run_codec
from mosqa.ranges import Ranges
from mosqa.rooms import DIRECT_SECONDS, direct_to_reverberant_db, draw_room, log_uniform, room_rir


@dataclass
class Sources:
    """What degradations draw from: named noises and RIRs (16 kHz), the codecs to use, the ranges."""

    noises: dict
    rirs: dict = field(default_factory=dict)  # empty -> synthetic rooms only
    codecs: tuple = ()
    ranges: Ranges = Ranges()


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def add_noise(wav, rng, src: Sources):
    name = sorted(src.noises)[rng.integers(len(src.noises))]
    noise = src.noises[name]
    snr = float(rng.uniform(*src.ranges.snr))
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


def _recorded_room(rng, src: Sources, drr: float):
    """A recorded RIR whose tail is rescaled to the drawn direct-to-reverberant ratio.

    Most recorded RIRs are far-field (DRR well below 0 dB), which alone would give PESQ ~1.1; drawing
    the DRR spreads reverberant clips over the whole label range.
    """
    name = sorted(src.rirs)[rng.integers(len(src.rirs))]
    rir = src.rirs[name].astype(np.float64)
    split = int(DIRECT_SECONDS * SAMPLE_RATE)
    tail_energy = float(np.sum(rir[split:] ** 2))
    if tail_energy > 0:
        rir[split:] *= np.sqrt(np.sum(rir[:split] ** 2) * 10 ** (-drr / 10) / tail_energy)
    return rir, {"rir": name, "drr_db": round(drr, 2)}


def _synthetic_room(rng, src: Sources, drr: float):
    """A room drawn from the ranges, the talker placed to give about the drawn DRR (see rooms.py)."""
    room = draw_room(rng, src.ranges.room, drr)
    rir = room_rir(rng, room)
    return rir, {"rir": "synthetic", "rt60_s": round(room["rt60"], 3),
                 "room_m": "x".join(f"{v:.1f}" for v in room["size"]),
                 "absorption": round(room["absorption"], 3),
                 "distance_m": round(float(np.linalg.norm(room["talker"] - room["mic"])), 2),
                 "drr_db": round(float(direct_to_reverberant_db(rir)), 2)}


def reverb(wav, rng, src: Sources):
    """Convolve with a recorded RIR or a synthetic room's, at a drawn direct-to-reverberant ratio."""
    synthetic = not src.rirs or rng.random() < src.ranges.synthetic_rooms
    drr = float(rng.uniform(*src.ranges.drr))
    rir, params = (_synthetic_room if synthetic else _recorded_room)(rng, src, drr)
    out = fftconvolve(wav, rir)[: len(wav)]
    return out * (_rms(wav) / _rms(out)), params


def clip(wav, rng, src: Sources):
    """Hard clipping at a fraction of the peak."""
    fraction = float(rng.uniform(*src.ranges.clip))
    limit = fraction * float(np.max(np.abs(wav)))
    return np.clip(wav, -limit, limit), {"clip_fraction": round(fraction, 4)}


def bandlimit(wav, rng, src: Sources):
    """An 8th-order band-pass (zero phase): a drawn upper edge, and a drawn lower edge from 50 Hz up."""
    high = round(log_uniform(rng, *src.ranges.band_high))
    low = round(float(rng.uniform(*src.ranges.band_low)))
    low = low if 50 <= low < high / 2 else 0
    sos = butter(8, [low, high], "bandpass", fs=SAMPLE_RATE, output="sos") if low else \
        butter(8, high, "lowpass", fs=SAMPLE_RATE, output="sos")
    return sosfiltfilt(sos, wav), {"band_low_hz": low, "band_high_hz": high}


def packet_loss(wav, rng, src: Sources):
    """Lose 20 ms frames in bursts; a lost frame is zeroed or repeats the previous one (naive concealment).

    Two-state (Gilbert) model: a drawn stationary loss rate (log-uniform: a few per cent of lost
    frames already costs a point of PESQ) and a drawn mean burst length.
    """
    frame = int(0.02 * SAMPLE_RATE)
    rate = log_uniform(rng, *src.ranges.loss)
    burst = float(rng.uniform(*src.ranges.burst))
    mode = ("zero", "repeat")[rng.integers(2)]
    n_frames = len(wav) // frame
    p_recover = 1.0 / max(burst, 1.0)
    p_lose = min(1.0, rate * p_recover / (1 - rate))
    draws = rng.random(n_frames)
    lost = np.zeros(n_frames, bool)
    state = False
    for i in range(n_frames):
        state = draws[i] < (1 - p_recover if state else p_lose)
        lost[i] = state
    out = wav.copy()
    for i in np.flatnonzero(lost):
        seg = slice(i * frame, (i + 1) * frame)
        out[seg] = out[(i - 1) * frame: i * frame] if mode == "repeat" and i > 0 else 0.0
    return out, {"loss_rate": round(rate, 3), "loss_burst": round(burst, 2), "loss_mode": mode,
                 "lost_frames": int(lost.sum())}


def _one_codec(wav, rng, src: Sources):
    choices = ("mulaw", *src.codecs)
    name = choices[rng.integers(len(choices))]
    if name == "mulaw":
        return mulaw(wav), name, "64k"
    c = CODECS[name]
    options = c.modes or c.bitrates
    setting = options[rng.integers(len(options))] if options else None
    # Codecs expect a sane level; scale into range and back so the level change is not the degradation.
    peak = float(np.max(np.abs(wav))) + 1e-9
    scale = 0.5 / peak
    return run_codec(wav * scale, name, setting) / scale, name, setting or ""


def codec(wav, rng, src: Sources):
    """One codec, or with probability `tandem` two in a chain (a call crossing two networks)."""
    stages = 2 if rng.random() < src.ranges.tandem else 1
    names, settings = [], []
    for _ in range(stages):
        wav, name, setting = _one_codec(wav, rng, src)
        names.append(name)
        settings.append(setting)
    return wav, {"codec": "+".join(names), "codec_setting": "+".join(settings)}


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


def degrade(wav: np.ndarray, rng: np.random.Generator, src: Sources) -> tuple[np.ndarray, dict]:
    """Apply one to three randomly drawn degradations; returns float32 in [-1, 1] and all parameters."""
    names = list(DEGRADATIONS)
    p = np.array([WEIGHTS[n] for n in names])
    combine = np.asarray(src.ranges.combine, float)
    count = int(rng.choice(len(combine), p=combine / combine.sum())) + 1
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
