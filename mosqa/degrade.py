"""Degradations that turn clean speech into labelled training material (the Quality-Net recipe).

Each degradation draws its own parameters from the item's random generator and returns the
degraded signal plus those parameters (for meta.csv), so one (seed, utterance, k) always gives
the same clip. `DEGRADATIONS` lists them in the order a real signal chain would apply them:
room, additive sounds (noise, babble, a competing talker, music), the analogue front end (saturation,
hum, clipping) and its converter (aliasing), a device's processing (residual echo, noise suppression,
gain control), band-limiting, codec, transmission loss, outages and a jitter buffer's chops; it is the
one list of kinds (the coverage report and meta.csv's columns follow it). The impairments of real calls
(CALL_KINDS) are signal functions in calls.py; here they draw their parameters.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, fftconvolve, sosfiltfilt

from mosqa import calls
from mosqa.audio import SAMPLE_RATE, SILENCE_DB, is_silent, load_audio
from mosqa.calls import rms
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
    talkers: dict = field(default_factory=dict)  # speaker -> clean file paths, for babble and a talker
    speaker: str | None = None  # the speaker of the clip being degraded (babble and talker leave them out)
    babble: bool = True  # draw babble when there are enough talkers


def _fit(x: np.ndarray, n: int, rng) -> np.ndarray:
    """A random stretch of n samples of x, or x looped to n samples when it is shorter."""
    if len(x) > n:
        start = int(rng.integers(len(x) - n))
        return x[start:start + n]
    return np.resize(x, n)


def _mix(wav: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    return wav + other * (rms(wav) / rms(other) * 10 ** (-snr_db / 20))


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


def _other_speakers(src: Sources) -> list[str]:
    """The clean set's speakers other than the clip's own: the model must not hear the talker it rates
    in the background."""
    return [s for s in sorted(src.talkers) if s != src.speaker]


def _utterance(src: Sources, speaker: str, n: int, rng, role: str) -> np.ndarray:
    """One utterance of `speaker`, read from disk only when drawn (a clean set holds far more than a
    worker should keep in memory), at unit RMS, cropped or looped to n samples."""
    files = src.talkers[speaker]
    path = files[rng.integers(len(files))]
    talk = load_audio(path, SAMPLE_RATE).astype(np.float64)
    if is_silent(talk):
        raise MosqaError(f"{path}: silent {role} (below {SILENCE_DB:g} dBFS)")
    return _fit(talk, n, rng) / rms(talk)


def babble(wav, rng, src: Sources):
    """Other speakers talking at once: one utterance of each of N other speakers of the clean set, each
    at unit RMS so no talker dominates, summed and mixed at a drawn SNR."""
    others = _other_speakers(src)
    low, high = (int(v) for v in src.ranges.babble_talkers)
    picked = rng.choice(len(others), min(int(rng.integers(low, high + 1)), len(others)), replace=False)
    crowd = np.zeros(len(wav))
    for i in picked.tolist():
        crowd += _utterance(src, others[i], len(wav), rng, "babble talker")
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
    return out * (rms(wav) / rms(out)), params


def clip(wav, rng, src: Sources):
    """Hard clipping at a fraction of the peak."""
    fraction = float(rng.uniform(*src.ranges.clip))
    limit = fraction * float(np.max(np.abs(wav)))
    out = np.clip(wav, -limit, limit)
    # The drawn level says little on its own (a peaky utterance clips far less than a dense one at the
    # same fraction); the share of samples actually flattened is what a model can learn to hear.
    share = float(np.mean(np.abs(out) >= limit))
    return out, {"clip_fraction": round(fraction, 4), "clipped_share": round(share, 4)}


ALIASING_MODES = ("hold", "linear")


def aliasing(wav, rng, src: Sources):
    """A sample-rate converter without an anti-aliasing filter, as cheap devices and some gateways have:
    the signal sampled at a drawn lower rate with nothing removed above its Nyquist frequency, then back
    to 16 kHz by holding each sample or joining them with lines. What lay above folds back into the band
    as inharmonic tones that no band-limit or codec of the other kinds makes (PESQ-WB of corpus speech:
    median ~1.3 at 6 kHz held, ~4.4 at 15 kHz joined)."""
    rate = log_uniform(rng, *src.ranges.aliasing_rate)
    mode = ALIASING_MODES[rng.integers(len(ALIASING_MODES))]
    step = SAMPLE_RATE / rate
    grid = np.arange(0.0, len(wav), step)
    t = np.arange(len(wav))
    kept = np.interp(grid, t, wav)  # the instants are exact: only the filter is missing
    if mode == "hold":
        out = kept[np.minimum((t / step).astype(int), len(kept) - 1)]
    else:
        out = np.interp(t, grid, kept)
    return out, {"aliasing_hz": round(rate), "aliasing_mode": mode}


def bandlimit(wav, rng, src: Sources):
    """A Butterworth band-pass of a drawn order (zero phase): a drawn upper edge, and a drawn lower edge from
    50 Hz up. The order is drawn last, so ranges of one order replay the draws from before it was drawn."""
    high = round(log_uniform(rng, *src.ranges.band_high))
    low = round(float(rng.uniform(*src.ranges.band_low)))
    low = low if 50 <= low < high / 2 else 0
    lowest, highest = map(int, src.ranges.band_order)
    order = int(rng.integers(lowest, highest + 1)) if highest > lowest else lowest
    sos = butter(order, [low, high], "bandpass", fs=SAMPLE_RATE, output="sos") if low else \
        butter(order, high, "lowpass", fs=SAMPLE_RATE, output="sos")
    return sosfiltfilt(sos, wav), {"band_low_hz": low, "band_high_hz": high, "band_order": order}


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


DROPOUT_MODES = ("silence", "comfort")
COMFORT_NOISE_DB = -45.0  # a comfort-noise generator's level under the speech (RMS)


def dropout(wav, rng, src: Sources):
    """An outage: 1-3 stretches of a drawn length lost whole (a network outage, a wireless headset's link
    dropping), left silent or filled with faint comfort noise. Ten to a hundred times longer than a
    lost packet or a chopped segment, so whole syllables and words go."""
    mode = DROPOUT_MODES[rng.integers(len(DROPOUT_MODES))]
    count = int(rng.integers(1, 4))
    lost = np.zeros(len(wav), bool)
    for _ in range(count):  # no stretch longer than a quarter of the clip: speech stays to be rated
        ms = log_uniform(rng, *src.ranges.dropout_length)
        length = min(len(wav) // 4, max(1, round(ms / 1000 * SAMPLE_RATE)))
        start = int(rng.integers(0, len(wav) - length + 1))
        lost[start:start + length] = True
    out = wav.copy()
    fill = rng.standard_normal(int(lost.sum())) * rms(wav) * 10 ** (COMFORT_NOISE_DB / 20)
    out[lost] = fill if mode == "comfort" else 0.0
    return out, {"dropout_mode": mode, "dropouts": count,
                 "dropout_ms": round(float(lost.sum()) * 1000 / SAMPLE_RATE, 2)}


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


# ---------------------------------------------------------------- the impairments of real calls
def _through_room(x: np.ndarray, rng, src: Sources) -> np.ndarray:
    """x as a synthetic room of the ranges carries it to the microphone (a DRR drawn from Ranges.drr)."""
    rir, _ = _synthetic_room(rng, src, float(rng.uniform(*src.ranges.drr)))
    return fftconvolve(x, rir)[: len(x)]


TALKER_PATHS = ("near", "room")


def competing_talker(wav, rng, src: Sources):
    """One other speaker of the clean set talking over the clip (one voice one can follow, not a crowd),
    close to the microphone or across a room, at a drawn SNR; not part of the reference."""
    others = _other_speakers(src)
    speaker = others[rng.integers(len(others))]
    voice = _utterance(src, speaker, len(wav), rng, "competing talker")
    mode = TALKER_PATHS[rng.integers(len(TALKER_PATHS))]
    if mode == "room":
        voice = _through_room(voice, rng, src)
    snr = float(rng.uniform(*src.ranges.talker_snr))
    return _mix(wav, voice, snr), {"talker": speaker, "talker_mode": mode, "talker_snr_db": round(snr, 2)}


TELEPHONE_BAND = butter(4, [300, 3400], "bandpass", fs=SAMPLE_RATE, output="sos")
# What an echo returns through: the signal itself (a plain delay line), a telephone line's band (a
# hybrid's line echo), or a room (loudspeaker to microphone: the acoustic echo a canceller left over).
ECHO_PATHS = {"line": lambda x, rng, src: x,
              "band": lambda x, rng, src: sosfiltfilt(TELEPHONE_BAND, x),
              "room": _through_room}


def add_echo(wav, rng, src: Sources):
    """The clip's own speech coming back late and weaker, with a tail of repeats (feedback): the
    residual echo of a call. The echo level column is measured (repeats and path included)."""
    mode = sorted(ECHO_PATHS)[rng.integers(len(ECHO_PATHS))]
    delay_ms = log_uniform(rng, *src.ranges.echo_delay)
    loss = float(rng.uniform(*src.ranges.echo_loss))
    feedback = float(rng.uniform(*src.ranges.echo_feedback))
    path = ECHO_PATHS[mode](wav, rng, src)
    path = path * (rms(wav) / rms(path))
    delay = max(1, round(delay_ms / 1000 * SAMPLE_RATE))
    out = calls.echo(wav, path, delay, 10 ** (-loss / 20), feedback)
    return out, {"echo_mode": mode, "echo_delay_ms": round(delay * 1000 / SAMPLE_RATE, 2),
                 "echo_loss_db": round(loss, 2), "echo_feedback": round(feedback, 3),
                 "echo_level_db": round(float(20 * np.log10(rms(wav) / rms(out - wav))), 2)}


CHOP_MODES = ("delete", "zero", "repeat")


def chop(wav, rng, src: Sources):
    """Time discontinuities: segments of a drawn length, at a drawn rate (at least one), deleted, zeroed
    or repeated, as jitter buffers and frame drops without concealment do; unlike packet_loss, not on a
    20 ms grid. A deleted segment shortens the clip."""
    mode = CHOP_MODES[rng.integers(len(CHOP_MODES))]
    # no longer than a third of the clip, so a segment (and the stretch a repeat copies) fits inside it
    length = min(len(wav) // 3, max(1, round(log_uniform(rng, *src.ranges.chop_length) / 1000 * SAMPLE_RATE)))
    rate = log_uniform(rng, *src.ranges.chop_rate)
    seconds = len(wav) / SAMPLE_RATE
    count = max(1, rng.poisson(rate * seconds))
    drawn = np.sort(rng.integers(length, len(wav) - length + 1, count))
    starts = []
    for s in drawn.tolist():  # segments never overlap: one that would is not drawn
        if not starts or s >= starts[-1] + length:
            starts.append(s)
    return calls.chop(wav, starts, length, mode), {
        "chop_mode": mode, "chop_ms": round(length * 1000 / SAMPLE_RATE, 2), "chop_rate_hz": round(rate, 3),
        "chops_per_s": round(len(starts) / seconds, 3),
        "chop_total_ms": round(len(starts) * length * 1000 / SAMPLE_RATE, 2)}


def noise_suppressor(wav, rng, src: Sources):
    """A noise suppressor run on the clip with background noise (a stretch of the noises at a drawn SNR):
    spectral subtraction or a gate, at a drawn over-subtraction and floor. What a real call nearly always
    passes through: musical noise, clipped onsets and tails, pauses that drop to the floor."""
    noisy, params = _add_recording(wav, rng, src.noises, src.ranges.suppressor_snr, "ns_noise", "ns_snr_db")
    mode = sorted(calls.SUPPRESSORS)[rng.integers(len(calls.SUPPRESSORS))]
    oversub = float(rng.uniform(*src.ranges.suppressor_oversub))
    floor = float(rng.uniform(*src.ranges.suppressor_floor))
    return calls.SUPPRESSORS[mode](noisy, oversub, floor), params | {
        "ns_mode": mode, "ns_oversub": round(oversub, 3), "ns_floor_db": round(floor, 2)}


def _agc(wav, rng, src: Sources):
    attack, release = (log_uniform(rng, *r) for r in (src.ranges.agc_attack, src.ranges.agc_release))
    return calls.agc_gain_db(wav, attack, release), {"agc_attack_ms": round(attack, 2),
                                                     "agc_release_ms": round(release, 1)}


def _gain_steps(wav, rng, src: Sources):
    step = float(rng.uniform(*src.ranges.gain_step))
    rate = float(rng.uniform(*src.ranges.gain_step_rate))
    count = max(1, rng.poisson(rate * len(wav) / SAMPLE_RATE))
    at = np.sort(rng.integers(1, len(wav), count))
    signs = rng.choice((-1.0, 1.0), count)
    return calls.gain_steps_db(len(wav), at.tolist(), step, signs.tolist()), {
        "gain_step_db": round(step, 2), "gain_steps": count}


FADE_SECONDS = (0.2, 4.0)  # how long a fade takes (log-uniform): a quick turn of the head to a slow fader


def _gain_fade(wav, rng, src: Sources):
    start, end = (float(rng.uniform(*src.ranges.gain_fade)) for _ in range(2))
    length = round(log_uniform(rng, *FADE_SECONDS) * SAMPLE_RATE)
    # it may begin before the clip or end after it, so a clip can hold only a part of a fade
    begin = int(rng.integers(-length, len(wav)))
    gain = np.interp(np.arange(len(wav)), [begin, begin + length], [start, end])
    return gain, {"fade_start_db": round(start, 2), "fade_end_db": round(end, 2),
                  "fade_s": round(length / SAMPLE_RATE, 3)}


GAIN_FAULTS = {"agc": _agc, "steps": _gain_steps, "fade": _gain_fade}


def gain_faults(wav, rng, src: Sources):
    """The speech at a drawn level, then an automatic gain control that pumps, sudden gain steps or (where
    --gain-fade-range is given) a slow fade. The swing column is measured: how far the gain moves (5th to
    95th percentile, dB) while there is sound."""
    level = float(rng.uniform(*src.ranges.speech_level))
    wav = wav * (10 ** (level / 20) / rms(wav))
    fades = src.ranges.gain_fade[1] > src.ranges.gain_fade[0]
    modes = sorted(m for m in GAIN_FAULTS if m != "fade" or fades)
    mode = modes[rng.integers(len(modes))]
    gain_db, params = GAIN_FAULTS[mode](wav, rng, src)
    heard = np.abs(wav) > 1e-3 * np.max(np.abs(wav))  # a gain on (near) digital silence is not heard
    low, high = np.percentile(gain_db[heard], [5, 95]) if heard.any() else (0.0, 0.0)
    return wav * 10 ** (gain_db / 20), {"speech_level_dbfs": round(level, 2), "gain_mode": mode,
                                        "gain_swing_db": round(float(high - low), 2), **params}


# The operating point of the saturating stage: centred, or biased (0.25: as harsh at 6 dB less drive).
SATURATION_BIAS = {"symmetric": 0.0, "asymmetric": 0.25}


def saturation(wav, rng, src: Sources):
    """Soft (tanh) saturation of an amplifier at a drawn drive, symmetric or biased. The measured
    signal-to-distortion ratio says how much it bends the clip (a peaky utterance bends less)."""
    mode = sorted(SATURATION_BIAS)[rng.integers(len(SATURATION_BIAS))]
    drive = float(rng.uniform(*src.ranges.saturation_drive))
    out = calls.saturate(wav, drive, SATURATION_BIAS[mode])
    out *= rms(wav) / rms(out)
    return out, {"saturation_mode": mode, "saturation_drive_db": round(drive, 2),
                 "saturation_sdr_db": round(float(calls.signal_to_distortion_db(wav, out)), 2)}


def add_hum(wav, rng, src: Sources):
    """Mains hum at 50 or 60 Hz, a transformer's (few harmonics) or a ground loop's buzz (many), at a
    drawn SNR, and a DC offset."""
    mode = sorted(calls.HUM_HARMONICS)[rng.integers(len(calls.HUM_HARMONICS))]
    freq = (50, 60)[rng.integers(2)]
    snr = float(rng.uniform(*src.ranges.hum_snr))
    dc = float(rng.uniform(*src.ranges.dc_offset))
    noise = calls.hum(len(wav), freq, mode, rng.uniform(0, 2 * np.pi, calls.HUM_HARMONICS[mode]))
    out = wav + noise * rms(wav) * 10 ** (-snr / 20) + dc * float(np.max(np.abs(wav)))
    return out, {"hum_mode": mode, "hum_hz": freq, "hum_snr_db": round(snr, 2),
                 "dc_offset": round(dc, 4)}


# name -> function, in signal-chain order: the room and additive sounds, the analogue front end
# (saturation, hum, converter clipping, a converter without its filter), a device's processing (the echo
# its canceller left, noise suppression, gain control), then transmission (band, codec, lost frames,
# outages, a jitter buffer's chops).
DEGRADATIONS = {
    "reverb": reverb,
    "noise": add_noise,
    "babble": babble,
    "talker": competing_talker,
    "music": add_music,
    "saturation": saturation,
    "hum": add_hum,
    "clip": clip,
    "aliasing": aliasing,
    "echo": add_echo,
    "suppressor": noise_suppressor,
    "gain": gain_faults,
    "bandlimit": bandlimit,
    "codec": codec,
    "packet_loss": packet_loss,
    "dropout": dropout,
    "chop": chop,
}
# The impairments of real calls: a degraded clip carries one of them with probability Ranges.call_share
# (then 0-2 more of any kind), the others none, so they stay the minority a training set needs.
CALL_KINDS = ("talker", "saturation", "hum", "echo", "suppressor", "gain", "chop")
# Signal-path faults no other kind renders: a degraded clip carries one with probability Ranges.fault_share
# (then 0-2 more of the common kinds); at share 0 they are never drawn.
FAULT_KINDS = ("aliasing", "dropout")
# How often each is drawn (call kinds: among themselves). Noise stays the most common; babble, the hardest
# background for a model to tell from the talker, comes next to the room; music is rarer in the calls and
# recordings users rate. Of the call kinds, echo and a suppressor are in nearly every call, and echo is
# what the shipped model misses most (+1.4 over PESQ on real calls).
WEIGHTS = {"reverb": 1.5, "noise": 3.0, "babble": 1.5, "talker": 1.5, "music": 1.0, "saturation": 1.0,
           "hum": 1.0, "clip": 1.0, "aliasing": 1.0, "echo": 2.0, "suppressor": 2.0, "gain": 1.0,
           "bandlimit": 1.5, "codec": 2.0, "packet_loss": 1.5, "dropout": 1.0, "chop": 1.5}
# The meta.csv columns each one's parameters fill: every simulation writes all of them (empty where a clip
# lacks the kind), so shards made with different sources share one header.
COLUMNS = {
    "reverb": ("rir", "drr_db", "rt60_s", "room_m", "absorption", "distance_m"),
    "noise": ("noise", "snr_db"),
    "babble": ("babble_talkers", "babble_snr_db", "babble_speakers"),
    "talker": ("talker", "talker_mode", "talker_snr_db"),
    "music": ("music", "music_snr_db"),
    "saturation": ("saturation_mode", "saturation_drive_db", "saturation_sdr_db"),
    "hum": ("hum_mode", "hum_hz", "hum_snr_db", "dc_offset"),
    "clip": ("clip_fraction", "clipped_share"),
    "aliasing": ("aliasing_hz", "aliasing_mode"),
    "echo": ("echo_mode", "echo_delay_ms", "echo_loss_db", "echo_feedback", "echo_level_db"),
    "suppressor": ("ns_noise", "ns_snr_db", "ns_mode", "ns_oversub", "ns_floor_db"),
    "gain": ("speech_level_dbfs", "gain_mode", "gain_swing_db", "agc_attack_ms", "agc_release_ms",
             "gain_step_db", "gain_steps", "fade_start_db", "fade_end_db", "fade_s"),
    "bandlimit": ("band_low_hz", "band_high_hz", "band_order"),
    "codec": ("codec", "codec_setting"),
    "packet_loss": ("loss_rate", "loss_burst", "loss_mode", "lost_frames"),
    "dropout": ("dropout_mode", "dropouts", "dropout_ms"),
    "chop": ("chop_mode", "chop_ms", "chop_rate_hz", "chops_per_s", "chop_total_ms"),
}
BABBLE_MIN_SPEAKERS = 4  # the clip's own speaker left out, at least 3 others make a crowd
# Kinds that need something the simulation may not have; the others can always be drawn.
NEEDS = {"music": lambda src: bool(src.music),
         "babble": lambda src: src.babble and len(src.talkers) >= BABBLE_MIN_SPEAKERS,
         "talker": lambda src: bool(_other_speakers(src))}
CLEAN = "clean"  # the `degradations` of a clip left undegraded (Ranges.clean_share)


def usable(src: Sources) -> list[str]:
    """The kinds `src` can supply, in signal-chain order."""
    return [n for n in DEGRADATIONS if NEEDS.get(n, lambda _: True)(src)]


def _draw(rng: np.random.Generator, names: list[str], count: int) -> set[str]:
    """`count` different kinds of `names`, each as likely as its weight."""
    p = np.array([WEIGHTS[n] for n in names])
    return set(rng.choice(names, size=count, replace=False, p=p / p.sum()).tolist())


def degrade(wav: np.ndarray, rng: np.random.Generator, src: Sources) -> tuple[np.ndarray, dict]:
    """Apply one to three randomly drawn degradations; returns float32 in [-1, 1] and all parameters.

    A share of clips (Ranges.clean_share) stays clean: a model must also learn where the top is. The
    length stays the clip's, except where chop deletes segments.
    """
    # No draw at share 0, so simulations from before clean clips existed replay draw for draw.
    if src.ranges.clean_share and rng.random() < src.ranges.clean_share:
        return wav.astype(np.float32), {"degradations": CLEAN}
    names = usable(src)
    regular = [n for n in names if n not in FAULT_KINDS]
    common = [n for n in regular if n not in CALL_KINDS]
    combine = np.asarray(src.ranges.combine, float)
    count = int(rng.choice(len(combine), p=combine / combine.sum())) + 1
    # No draw at share 0 either, so simulations from before the call kinds (or the faults) existed replay.
    if src.ranges.call_share and rng.random() < src.ranges.call_share:
        picked = _draw(rng, [n for n in regular if n in CALL_KINDS], 1)
        picked |= _draw(rng, [n for n in regular if n not in picked], count - 1)
    elif src.ranges.fault_share and rng.random() < src.ranges.fault_share:
        picked = _draw(rng, list(FAULT_KINDS), 1) | _draw(rng, common, count - 1)
    else:
        picked = _draw(rng, common, count)
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
