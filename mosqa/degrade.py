"""Degradations that turn clean speech into labelled training material (the Quality-Net recipe).

Each degradation draws its own parameters from the item's random generator and returns the
degraded signal plus those parameters (for meta.csv), so one (seed, utterance, k) always gives
the same clip. `DEGRADATIONS` lists them in the order a real signal chain would apply them:
room, additive sounds (noise, babble, music), analogue clipping, band-limiting, codec, transmission
loss; it is the one list of kinds (the coverage report and meta.csv's columns follow it).
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, fftconvolve, sosfiltfilt

from mosqa.audio import SAMPLE_RATE, SILENCE_DB, is_silent, load_audio
from mosqa.codecs import CODECS, mulaw, run_codec
from mosqa.errors import MosqaError
from mosqa.ranges import Ranges
from mosqa.rooms import DIRECT_SECONDS, direct_to_reverberant_db, draw_room, log_uniform, room_rir


@dataclass
class Sources:
    """What degradations draw from: named noises, RIRs and music (16 kHz), the clean set's other
    talkers, the codecs to use, the ranges."""

    noises: dict
    rirs: dict = field(default_factory=dict)  # empty -> synthetic rooms only
    codecs: tuple = ()
    ranges: Ranges = Ranges()
    music: dict = field(default_factory=dict)  # empty -> no music clips
    talkers: dict = field(default_factory=dict)  # speaker -> clean file paths, for babble
    speaker: str | None = None  # the speaker of the clip being degraded (babble leaves them out)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def _fit(x: np.ndarray, n: int, rng) -> np.ndarray:
    """A random stretch of n samples of x, or x looped to n samples when it is shorter."""
    if len(x) > n:
        start = int(rng.integers(len(x) - n))
        return x[start:start + n]
    return np.resize(x, n)


def _mix(wav: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    return wav + other * (_rms(wav) / _rms(other) * 10 ** (-snr_db / 20))


def _add_recording(wav, rng, pool: dict, snr_range: tuple, name_column: str, snr_column: str):
    """One recording of `pool` (a random stretch, or looped) added at an SNR drawn from `snr_range`."""
    name = sorted(pool)[rng.integers(len(pool))]
    snr = float(rng.uniform(*snr_range))
    return _mix(wav, _fit(pool[name], len(wav), rng), snr), {name_column: name, snr_column: round(snr, 2)}


def add_noise(wav, rng, src: Sources):
    return _add_recording(wav, rng, src.noises, src.ranges.snr, "noise", "snr_db")


def add_music(wav, rng, src: Sources):
    """Music in the background: mixed like noise, but at its own SNR range (see Ranges.music_snr)."""
    return _add_recording(wav, rng, src.music, src.ranges.music_snr, "music", "music_snr_db")


def babble(wav, rng, src: Sources):
    """Other speakers talking at once: one utterance of each of N other speakers of the clean set.

    Each is read from disk only when drawn (a clean set holds far more than a worker should keep in
    memory), scaled to unit RMS so no talker dominates, cropped or looped to the clip and summed; the
    sum is mixed at a drawn SNR. Never the clip's own speaker, so the model cannot hear the talker it
    rates in the background.
    """
    others = [s for s in sorted(src.talkers) if s != src.speaker]
    low, high = (int(v) for v in src.ranges.babble_talkers)
    picked = rng.choice(len(others), min(int(rng.integers(low, high + 1)), len(others)), replace=False)
    crowd = np.zeros(len(wav))
    for i in picked.tolist():
        files = src.talkers[others[i]]
        path = files[rng.integers(len(files))]
        talk = load_audio(path, SAMPLE_RATE).astype(np.float64)
        if is_silent(talk):
            raise MosqaError(f"{path}: silent babble talker (below {SILENCE_DB:g} dBFS)")
        crowd += _fit(talk, len(wav), rng) / _rms(talk)
    snr = float(rng.uniform(*src.ranges.babble_snr))
    return _mix(wav, crowd, snr), {"babble_talkers": len(picked), "babble_snr_db": round(snr, 2),
                                   "babble_speakers": "+".join(others[i] for i in sorted(picked.tolist()))}


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
    out = np.clip(wav, -limit, limit)
    # The drawn level says little on its own (a peaky utterance clips far less than a dense one at the
    # same fraction); the share of samples actually flattened is what a model can learn to hear.
    share = float(np.mean(np.abs(out) >= limit))
    return out, {"clip_fraction": round(fraction, 4), "clipped_share": round(share, 4)}


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


# name -> function, in signal-chain order (additive sounds after the room, before analogue clipping).
DEGRADATIONS = {
    "reverb": reverb,
    "noise": add_noise,
    "babble": babble,
    "music": add_music,
    "clip": clip,
    "bandlimit": bandlimit,
    "codec": codec,
    "packet_loss": packet_loss,
}
# How often each is drawn. Noise stays the most common; babble, the hardest background for a model to
# tell from the talker, comes next to the room; music is rarer in the calls and recordings users rate.
WEIGHTS = {"reverb": 1.5, "noise": 3.0, "babble": 1.5, "music": 1.0, "clip": 1.0, "bandlimit": 1.5,
           "codec": 2.0, "packet_loss": 1.5}
# The meta.csv columns each one's parameters fill: every simulation writes all of them (empty where a clip
# lacks the kind), so shards made with different sources share one header.
COLUMNS = {
    "reverb": ("rir", "drr_db", "rt60_s", "room_m", "absorption", "distance_m"),
    "noise": ("noise", "snr_db"),
    "babble": ("babble_talkers", "babble_snr_db", "babble_speakers"),
    "music": ("music", "music_snr_db"),
    "clip": ("clip_fraction", "clipped_share"),
    "bandlimit": ("band_low_hz", "band_high_hz"),
    "codec": ("codec", "codec_setting"),
    "packet_loss": ("loss_rate", "loss_burst", "loss_mode", "lost_frames"),
}
BABBLE_MIN_SPEAKERS = 4  # the clip's own speaker left out, at least 3 others make a crowd
# Kinds that need something the simulation may not have; the others can always be drawn.
NEEDS = {"music": lambda src: bool(src.music), "babble": lambda src: len(src.talkers) >= BABBLE_MIN_SPEAKERS}
CLEAN = "clean"  # the `degradations` of a clip left undegraded (Ranges.clean_share)


def usable(src: Sources) -> list[str]:
    """The kinds `src` can supply, in signal-chain order."""
    return [n for n in DEGRADATIONS if NEEDS.get(n, lambda _: True)(src)]


def degrade(wav: np.ndarray, rng: np.random.Generator, src: Sources) -> tuple[np.ndarray, dict]:
    """Apply one to three randomly drawn degradations; returns float32 in [-1, 1] and all parameters.

    A share of clips (Ranges.clean_share) stays clean: a model must also learn where the top is.
    """
    # No draw at share 0, so simulations from before clean clips existed replay draw for draw.
    if src.ranges.clean_share and rng.random() < src.ranges.clean_share:
        return wav.astype(np.float32), {"degradations": CLEAN}
    names = usable(src)
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
