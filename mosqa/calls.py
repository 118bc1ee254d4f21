"""The impairments a real call adds between talker and listener, as plain signal functions.

Residual echo, the time discontinuities of a jitter buffer dropping frames without concealment, a noise
suppressor's artefacts, an automatic gain control that pumps, gain steps, amplifier saturation and mains
hum: what users' recordings carry besides noise and rooms. degrade.py draws their parameters per clip;
each function here is deterministic in its parameters, so a test can check that it does what its name
says on a synthetic signal.
"""

import math

import numpy as np
from scipy.ndimage import uniform_filter1d
from scipy.signal import istft, stft

from mosqa.audio import SAMPLE_RATE

ECHO_TAIL_DB = -60.0  # repeats of an echo below this (relative to the first) are not added
NS_FFT, NS_HOP = 512, 256  # the spectral suppressor's frames: 32 ms, half overlapping
NS_SMOOTH_FRAMES = 3  # its power estimate averages this many frames (fewer: more musical noise)
NS_QUIET_SHARE = 0.2  # the noise estimate: the mean of this share of quietest frames
GATE_FRAME = 160  # the gate's 10 ms frames
GATE_HOLD_FRAMES = 5  # it stays open 50 ms after the last frame above its threshold
GATE_MARGIN = 2.0  # its threshold: this times the over-subtraction times the noise power (>= 3 dB over)
AGC_FRAME = 16  # the AGC's envelope follower works on 1 ms frames
AGC_TARGET_DBFS = -26.0  # the level an AGC steers the envelope to (RMS, dB full scale)
AGC_MAX_DB = 30.0  # the most it boosts or cuts
HUM_HARMONICS = {"mains": 5, "buzz": 80}  # how many multiples of the mains frequency each hum has
# Harmonic k at amplitude 1/k^slope: a transformer's hum (mostly the fundamental), a ground loop's buzz.
HUM_SLOPE = {"mains": 2.0, "buzz": 1.0}


def rms(x: np.ndarray) -> float:
    """RMS, never 0: the denominator of every level ratio here and in degrade.py."""
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def echo(wav: np.ndarray, path: np.ndarray, delay: int, gain: float, feedback: float) -> np.ndarray:
    """`wav` plus its echo: `path` (what returns: wav itself, or wav through a line or a room) `delay`
    samples late at `gain`, then again every `delay` samples, each repeat `feedback` times the one before
    (the loop of a far end hearing its own echo), until the repeats fall below ECHO_TAIL_DB."""
    out = wav.copy()
    amplitude, shift = gain, delay
    while shift < len(wav) and amplitude >= gain * 10 ** (ECHO_TAIL_DB / 20) and amplitude > 0:
        out[shift:] += amplitude * path[: len(wav) - shift]
        amplitude, shift = amplitude * feedback, shift + delay
    return out


def chop(wav: np.ndarray, starts, length: int, mode: str) -> np.ndarray:
    """Segments of `length` samples at `starts` (sorted, apart, each at least `length` in) deleted (the
    signal closes up, as a jitter buffer dropping late frames), zeroed, or replaced by the stretch just
    before them (a frame played again)."""
    if mode == "delete":
        keep = np.ones(len(wav), bool)
        for s in starts:
            keep[s:s + length] = False
        return wav[keep]
    out = wav.copy()
    for s in starts:
        out[s:s + length] = 0.0 if mode == "zero" else out[s - length:s]
    return out


def _quiet_mean(power: np.ndarray, frame_energy: np.ndarray) -> np.ndarray:
    """The noise estimate a suppressor without a voice detector makes: the mean of `power` (frames on
    the last axis) over its quietest frames."""
    quiet = np.argsort(frame_energy)[: max(1, int(NS_QUIET_SHARE * len(frame_energy)))]
    return power[..., quiet].mean(axis=-1)


def spectral_subtraction(noisy: np.ndarray, oversub: float, floor_db: float) -> np.ndarray:
    """Power spectral subtraction: each bin keeps sqrt(1 - oversub * noise / power), never less than the
    floor. Over-subtraction clips speech onsets and tails; the bins of noise that poke above the estimate
    survive as musical noise; pauses fall to the floor."""
    _, _, spec = stft(noisy, nperseg=NS_FFT, noverlap=NS_FFT - NS_HOP)
    power = np.abs(spec) ** 2
    smooth = uniform_filter1d(power, NS_SMOOTH_FRAMES, axis=1)
    noise = _quiet_mean(power, power.sum(axis=0))[:, None]
    floor = 10 ** (floor_db / 20)
    gain = np.sqrt(np.clip(1 - oversub * noise / (smooth + 1e-20), floor ** 2, 1.0))
    _, out = istft(spec * gain, nperseg=NS_FFT, noverlap=NS_FFT - NS_HOP)
    return np.pad(out, (0, max(0, len(noisy) - len(out))))[: len(noisy)]


def noise_gate(noisy: np.ndarray, oversub: float, floor_db: float) -> np.ndarray:
    """A gate: 10 ms frames above GATE_MARGIN * oversub times the noise power open it (held 50 ms),
    the rest fall to the floor; the gain moves linearly between frame centres, so no clicks. Quiet
    onsets and tails of speech are cut with the pauses."""
    n = len(noisy) // GATE_FRAME
    power = np.mean(noisy[: n * GATE_FRAME].reshape(n, GATE_FRAME) ** 2, axis=1)
    opened = power > GATE_MARGIN * oversub * _quiet_mean(power, power)
    held = np.convolve(opened, np.ones(GATE_HOLD_FRAMES + 1), "full")[:n] > 0  # open until HOLD after
    gain = np.where(held, 1.0, 10 ** (floor_db / 20))
    centres = (np.arange(n) + 0.5) * GATE_FRAME
    return noisy * np.interp(np.arange(len(noisy)), centres, gain)


SUPPRESSORS = {"subtract": spectral_subtraction, "gate": noise_gate}


def agc_gain_db(wav: np.ndarray, attack_ms: float, release_ms: float) -> np.ndarray:
    """Per-sample gain (dB) of an automatic gain control: an envelope follower on the level (dB) of 1 ms
    frames, rising at the attack time constant and falling at the release one, and the gain that brings
    that envelope to AGC_TARGET_DBFS, within +-AGC_MAX_DB. Short times make it pump: the gain swells in
    every pause and dives at every onset."""
    n = len(wav) // AGC_FRAME
    frame_db = 10 * np.log10(np.mean(wav[: n * AGC_FRAME].reshape(n, AGC_FRAME) ** 2, axis=1) + 1e-12)
    rise, fall = (np.exp(-AGC_FRAME / (ms / 1000 * SAMPLE_RATE)) for ms in (attack_ms, release_ms))
    envelope = np.empty(n)
    level = frame_db[0]
    for k, db in enumerate(frame_db):
        coef = rise if db > level else fall
        level = coef * level + (1 - coef) * db
        envelope[k] = level
    gain = np.clip(AGC_TARGET_DBFS - envelope, -AGC_MAX_DB, AGC_MAX_DB)
    return np.interp(np.arange(len(wav)), (np.arange(n) + 0.5) * AGC_FRAME, gain)


def gain_steps_db(n: int, at, step_db: float, signs) -> np.ndarray:
    """Per-sample gain (dB) that jumps by `step_db` at each of the sample positions `at`, up or down as
    `signs` say, turned back where it would leave +-step_db: a loose contact, a device switching gain."""
    gain, level, previous = np.zeros(n), 0.0, 0
    for where, sign in zip(at, signs, strict=True):
        gain[previous:where] = level
        level = level + sign * step_db if abs(level + sign * step_db) <= step_db else level - sign * step_db
        previous = where
    gain[previous:] = level
    return gain


def saturate(wav: np.ndarray, drive_db: float, bias: float) -> np.ndarray:
    """An amplifier driven into saturation: tanh of the signal with its peak `drive_db` above the knee;
    `bias` shifts the operating point (0: symmetric, odd harmonics; > 0: a biased stage, even ones too).
    Scaled back to about the input's level."""
    drive = 10 ** (drive_db / 20) / (float(np.max(np.abs(wav))) + 1e-12)
    return (np.tanh(drive * wav + bias) - np.tanh(bias)) / drive


def hum(n: int, freq: int, kind: str, phases) -> np.ndarray:
    """Mains hum of `n` samples at `freq` Hz (50 or 60), unit RMS: its first HUM_HARMONICS[kind]
    multiples below 8 kHz at 1/k^HUM_SLOPE[kind] (`phases`: one per harmonic). Built over the shortest
    whole number of samples that holds whole periods, then repeated."""
    period = SAMPLE_RATE // math.gcd(SAMPLE_RATE, freq)
    t = np.arange(period) / SAMPLE_RATE
    k = np.arange(1, HUM_HARMONICS[kind] + 1)
    k = k[k * freq < SAMPLE_RATE / 2]
    one = np.sum(np.sin(2 * np.pi * freq * k[:, None] * t + np.asarray(phases)[: len(k), None])
                 / k[:, None] ** HUM_SLOPE[kind], axis=0)
    return np.resize(one / rms(one), n)


def signal_to_distortion_db(clean: np.ndarray, out: np.ndarray) -> float:
    """How far `out` is from a scaled copy of `clean`, dB (what a saturated clip keeps of its input)."""
    scale = float(np.dot(out, clean) / (np.dot(clean, clean) + 1e-20))
    return 20 * np.log10(rms(scale * clean) / rms(out - scale * clean))
