"""The recording chain a clean reference passes through before it is degraded (issue 30: data that leaves
no shortcut).

A clean corpus comes from a few studios' microphones, levels and converters, and every clip of a
simulation inherits them: a quality model can learn how the clips were rendered instead of what was done
to them. With probability Ranges.recording_chain a clip's clean utterance first goes through a drawn
microphone colour, front-end high-pass, resampling path and level, and that becomes the clip's
reference, so its PESQ label still measures only the degradation while the input's history varies.

The chain draws from its own generator, (seed, utterance, copy, STREAM), never from the clip's: a clip
draws the same degradations with or without it, and share 0 replays every corpus made before it existed.
"""

from fractions import Fraction

import numpy as np
from scipy.signal import butter, resample, resample_poly, sosfilt

from mosqa.audio import SAMPLE_RATE
from mosqa.calls import rms
from mosqa.ranges import Ranges
from mosqa.rooms import log_uniform

STREAM = int.from_bytes(b"recording", "big")  # tells the chain's generator from the clip's
PEAK = 0.98  # the level stage never drives a peak past this, so 16-bit writing never clips the reference
EQ_BANDS = (1, 3)  # how many biquads a microphone's colour has, fewest and most
SHELF_Q = 2 ** -0.5  # a shelf without the bump a higher Q puts at its corner
HIGHPASS_ORDERS = (1, 2, 3, 4)
# Rates a recording may have been made at and converted from: all above 16 kHz, so a round trip through
# one changes the anti-alias filtering near 8 kHz without band-limiting the speech (8 kHz would).
RATES = (22050, 24000, 32000, 44100, 48000)


def _biquad(b: tuple, a: tuple) -> np.ndarray:
    """One second-order section, normalised so a0 = 1."""
    return np.array([*b, *a]) / a[0]


def _cookbook(freq: float, gain_db: float, q: float) -> tuple:
    """The shared terms of R. Bristow-Johnson's Audio EQ Cookbook filters: A, cos(w0), alpha."""
    w0 = 2 * np.pi * freq / SAMPLE_RATE
    return 10 ** (gain_db / 40), np.cos(w0), np.sin(w0) / (2 * q)


def peak(freq: float, gain_db: float, q: float) -> np.ndarray:
    """A peaking band: exactly `gain_db` at `freq`, 0 dB far from it (a capsule's presence peak or dip)."""
    a, cos, alpha = _cookbook(freq, gain_db, q)
    return _biquad((1 + alpha * a, -2 * cos, 1 - alpha * a), (1 + alpha / a, -2 * cos, 1 - alpha / a))


def low_shelf(freq: float, gain_db: float, q: float) -> np.ndarray:
    """`gain_db` below `freq` (half of it at `freq`): proximity effect, or a small capsule's thin bass."""
    a, cos, alpha = _cookbook(freq, gain_db, q)
    s = 2 * np.sqrt(a) * alpha
    return _biquad((a * ((a + 1) - (a - 1) * cos + s), 2 * a * ((a - 1) - (a + 1) * cos),
                    a * ((a + 1) - (a - 1) * cos - s)),
                   ((a + 1) + (a - 1) * cos + s, -2 * ((a - 1) + (a + 1) * cos), (a + 1) + (a - 1) * cos - s))


def high_shelf(freq: float, gain_db: float, q: float) -> np.ndarray:
    """`gain_db` above `freq` (half of it at `freq`): a bright capsule, or one behind a grille or cloth."""
    a, cos, alpha = _cookbook(freq, gain_db, q)
    s = 2 * np.sqrt(a) * alpha
    return _biquad((a * ((a + 1) + (a - 1) * cos + s), -2 * a * ((a - 1) + (a + 1) * cos),
                    a * ((a + 1) + (a - 1) * cos - s)),
                   ((a + 1) - (a - 1) * cos + s, 2 * ((a - 1) - (a + 1) * cos), (a + 1) - (a - 1) * cos - s))


BANDS = {"peak": peak, "low_shelf": low_shelf, "high_shelf": high_shelf}


def mic_eq(wav, rng, ranges: Ranges):
    """1-3 peaks and shelves at drawn frequencies, gains and widths: a microphone's colour. The values
    are rounded before use, so the column describes the filter exactly (kind:Hz:dB:Q, joined by +)."""
    bands = []
    for _ in range(int(rng.integers(EQ_BANDS[0], EQ_BANDS[1] + 1))):
        kind = sorted(BANDS)[rng.integers(len(BANDS))]
        freq = round(log_uniform(rng, *ranges.chain_eq_freq))
        gain = round(float(rng.uniform(*ranges.chain_eq_gain)), 2)
        q = round(log_uniform(rng, *ranges.chain_eq_q), 2) if kind == "peak" else round(SHELF_Q, 2)
        bands.append((kind, freq, gain, q))
    sos = np.array([BANDS[kind](freq, gain, q) for kind, freq, gain, q in bands])
    return sosfilt(sos, wav), {"chain_eq_bands": len(bands),
                               "chain_eq": "+".join(":".join(map(str, band)) for band in bands)}


def highpass(wav, rng, ranges: Ranges):
    """A Butterworth low cut of drawn cutoff and order, causal like the analogue front end it stands for
    (a phone's or an interface's coupling capacitors and rumble filter)."""
    cutoff = round(log_uniform(rng, *ranges.chain_highpass))
    order = int(rng.choice(HIGHPASS_ORDERS))
    sos = butter(order, cutoff, "highpass", fs=SAMPLE_RATE, output="sos")
    return sosfilt(sos, wav), {"chain_highpass_hz": cutoff, "chain_highpass_order": order}


def _polyphase(wav: np.ndarray, rate: int) -> np.ndarray:
    ratio = Fraction(rate, SAMPLE_RATE)
    up = resample_poly(wav, ratio.numerator, ratio.denominator)
    return resample_poly(up, ratio.denominator, ratio.numerator)


def _fourier(wav: np.ndarray, rate: int) -> np.ndarray:
    return resample(resample(wav, round(len(wav) * rate / SAMPLE_RATE)), len(wav))


# How a recording reached 16 kHz: made at it, or converted from another rate by one of two common
# resamplers, whose anti-alias filters differ (a Kaiser-windowed FIR; a brick wall in the FFT domain).
RESAMPLERS = {"none": None, "poly": _polyphase, "fft": _fourier}


def resampling(wav, rng, ranges: Ranges):
    """A round trip through a drawn rate by a drawn resampler, or none; the length stays the clip's."""
    name = sorted(RESAMPLERS)[rng.integers(len(RESAMPLERS))]
    if RESAMPLERS[name] is None:
        return wav, {"chain_resampler": name}
    rate = RATES[rng.integers(len(RATES))]
    out = RESAMPLERS[name](wav, rate)
    out = np.pad(out[: len(wav)], (0, max(0, len(wav) - len(out))))  # polyphase may round up a sample
    return out, {"chain_resampler": name, "chain_resample_hz": rate}


def level(wav, rng, ranges: Ranges):
    """The RMS level the recording was stored at, drawn in dBFS, lowered where a peak would pass PEAK;
    the column is the level used."""
    drawn = float(rng.uniform(*ranges.chain_level))
    out = wav * min(10 ** (drawn / 20) / rms(wav), PEAK / float(np.max(np.abs(wav))))
    return out, {"chain_level_dbfs": round(20 * float(np.log10(rms(out))), 2)}


# name -> stage, in the order a recording passes them; each draws its values and returns them for meta.csv.
STAGES = {"eq": mic_eq, "highpass": highpass, "resampling": resampling, "level": level}
# The meta.csv columns each stage fills: every simulation writes all of them (empty for a clip without a
# chain), so shards with and without chains share one header.
COLUMNS = {"eq": ("chain_eq_bands", "chain_eq"), "highpass": ("chain_highpass_hz", "chain_highpass_order"),
           "resampling": ("chain_resampler", "chain_resample_hz"), "level": ("chain_level_dbfs",)}


def record(wav: np.ndarray, rng: np.random.Generator, ranges: Ranges) -> tuple[np.ndarray, dict]:
    """`wav` through every stage, in order: float32 and the drawn values."""
    out, params = wav.astype(np.float64), {}
    for stage in STAGES.values():
        out, drawn = stage(out, rng, ranges)
        params |= drawn
    return out.astype(np.float32), params


def recorded(wav: np.ndarray, key: tuple, ranges: Ranges) -> tuple[np.ndarray, dict]:
    """With probability Ranges.recording_chain, `wav` through a chain drawn from the generator of
    (*key, STREAM), `key` being the clip's (seed, utterance, copy); else `wav` as it is, and no values."""
    if not ranges.recording_chain:
        return wav, {}
    rng = np.random.default_rng([*key, STREAM])
    if rng.random() >= ranges.recording_chain:
        return wav, {}
    return record(wav, rng, ranges)
