"""The ranges every degradation of `mosqa simulate` draws its strength from (and the recording chain a
reference may pass through first), and their checks.

Plain data, free of numpy, so the command line can show the defaults in --help without loading the
signal-processing stack. Each field is one option of `mosqa simulate` (RANGE_OPTIONS names it).
"""

import functools
import math
from dataclasses import dataclass

from mosqa.errors import MosqaError

INF = float("inf")


@dataclass(frozen=True)
class RoomRanges:
    """The ranges a synthetic room is drawn from (log-uniform: dry booths as common as halls); the
    talker's distance follows from the drawn direct-to-reverberant ratio (Ranges.drr)."""

    rt60: tuple = (0.1, 2.0)  # seconds, at mid frequencies
    length: tuple = (2.5, 30.0)  # metres, the longest side; the others are drawn as fractions of it


@dataclass(frozen=True)
class Ranges:
    """Where each degradation draws its strength from; every field is a `mosqa simulate` option.

    The defaults reach past the harshest audio users bring (clipping at 2 % of the peak, telephone
    band, RT60 2 s halls, 30 % packet loss in bursts, codecs in tandem), so a quality model trained on
    the corpus has seen the bottom of the scale for every kind, not only for additive noise.
    """

    # Wideband PESQ is harsh: below ~10 dB SNR nearly every clip scores ~1.05, and only above ~45 dB
    # does white noise score 4 and more. This range spreads noisy clips over the whole label scale.
    snr: tuple = (5.0, 55.0)
    # Music and babble follow the same curve a few dB apart (median PESQ-WB of 8 real utterances with
    # music: 1.27 at 5 dB, 2.53 at 20, 4.13 at 35, ~4.5 at 45; babble of 5 talkers is ~3 dB harsher:
    # 1.14 at 5 dB, 1.33 at 10, 2.23 at 20, 4.36 at 40): each range spans ~1.3 to ~4.5, labels spread.
    music_snr: tuple = (5.0, 45.0)
    babble_snr: tuple = (8.0, 48.0)
    babble_talkers: tuple = (3, 8)  # other speakers in a babble clip (fewer if the clean set has fewer)
    drr: tuple = (0.0, 30.0)  # dB, direct-to-reverberant ratio (recorded RIRs rescaled, rooms placed)
    room: RoomRanges = RoomRanges()
    synthetic_rooms: float = 0.5  # share of reverberant clips in a synthetic room when RIRs are given
    clip: tuple = (0.02, 0.95)  # clipping level as a fraction of the peak
    band_high: tuple = (1000.0, 7000.0)  # Hz, upper band edge (log-uniform)
    band_low: tuple = (0.0, 300.0)  # Hz, lower band edge (uniform; below 50 Hz no high-pass)
    # Butterworth order (a whole number, uniform), run forwards and backwards: 12 dB/octave per order. One
    # order draws nothing, so simulations from before it replay; 1-8 gives gentle slopes (a cheap
    # headset's, an equaliser's) beside the steep ones of a codec's filter.
    band_order: tuple = (8, 8)
    loss: tuple = (0.005, 0.3)  # stationary share of lost 20 ms frames (log-uniform)
    burst: tuple = (1.0, 6.0)  # mean length of a loss burst, frames
    tandem: float = 0.3  # probability that the codec stage is two codecs in a chain
    combine: tuple = (0.6, 0.28, 0.12)  # probability of 1, 2 or 3 degradations in one clip
    # Share of clips left undegraded (label: PESQ of the clean file, ~4.64): without them a model never
    # sees the top of the scale and rates clean input a little worse than it is.
    clean_share: float = 0.05
    # The impairments of real calls (degrade.CALL_KINDS): a degraded clip carries one with this
    # probability. A minority: as 2 % of a training set three crude kinds helped a model rank real calls,
    # as 26 % they hurt.
    call_share: float = 0.15
    echo_delay: tuple = (5.0, 600.0)  # ms (log-uniform): a comb filter's colour below ~30 ms, an echo above
    echo_loss: tuple = (0.0, 40.0)  # dB, echo return loss of the first repeat
    echo_feedback: tuple = (0.0, 0.6)  # each further repeat this times the one before
    # dB, the clip's talker over one other voice: median PESQ-WB 1.3 at 10 dB, 2.7 at 25, 4.1 at 40, so the
    # range reaches past the 25 dB of real calls to spread labels over the scale, as babble's does.
    talker_snr: tuple = (-5.0, 40.0)
    chop_length: tuple = (5.0, 100.0)  # ms (log-uniform), each deleted, zeroed or repeated segment
    chop_rate: tuple = (0.5, 10.0)  # segments per second (log-uniform)
    suppressor_snr: tuple = (0.0, 40.0)  # dB, the noise a suppressor is given to remove
    suppressor_oversub: tuple = (1.0, 4.0)  # over-subtraction (gate: threshold) factor
    suppressor_floor: tuple = (-40.0, -6.0)  # dB, what is left of a suppressed bin or a closed gate
    speech_level: tuple = (-45.0, -10.0)  # dBFS (RMS) of the speech before gain faults
    agc_attack: tuple = (1.0, 50.0)  # ms (log-uniform), AGC envelope rising
    agc_release: tuple = (20.0, 1000.0)  # ms (log-uniform), falling: short ones pump
    gain_step: tuple = (3.0, 20.0)  # dB, each sudden gain step
    gain_step_rate: tuple = (0.2, 2.0)  # steps per second
    # dB, where a slow fade (a fader moved, a talker turning from the microphone) starts and ends, each drawn
    # from it: a range of one value draws no fade, so simulations from before it replay (e.g. -30,6)
    gain_fade: tuple = (0.0, 0.0)
    # dB the peak is driven past the knee of the tanh (median PESQ-WB 4.55 at -12 dB, 2.95 at 0, 1.26 at 12)
    saturation_drive: tuple = (-12.0, 12.0)
    hum_snr: tuple = (0.0, 40.0)  # dB, speech over mains hum
    dc_offset: tuple = (0.0, 0.05)  # DC added with hum, as a fraction of the peak
    # Share of clips whose clean utterance first passes a drawn recording chain (mosqa/recording.py) that
    # becomes their reference: 0 leaves references as recorded and replays simulations from before it.
    recording_chain: float = 0.0
    chain_level: tuple = (-40.0, -16.0)  # dBFS (RMS) the reference is stored at (lower where it would clip)
    chain_eq_freq: tuple = (100.0, 7000.0)  # Hz (log-uniform), each microphone EQ band's centre or corner
    chain_eq_gain: tuple = (-8.0, 8.0)  # dB, each band's gain
    chain_eq_q: tuple = (0.5, 4.0)  # a peaking band's Q (log-uniform): broad colour to a narrow resonance
    chain_highpass: tuple = (40.0, 300.0)  # Hz (log-uniform), the front end's low cut
    # Share of degraded clips that carry a signal-path fault (degrade.FAULT_KINDS: a converter without an
    # anti-aliasing filter, a link outage): kinds real pipelines have and the other kinds never render.
    # 0 leaves them out and replays simulations from before them.
    fault_share: float = 0.0
    aliasing_rate: tuple = (6000.0, 15000.0)  # Hz (log-uniform), the rate the faulty converter runs at
    dropout_length: tuple = (80.0, 800.0)  # ms (log-uniform), each of an outage's 1-3 lost stretches


# Ranges field ("room.x": RoomRanges) -> (the simulate option that sets it, lowest and highest allowed).
RANGE_OPTIONS = {
    "snr": ("--snr-range", -INF, INF),
    "music_snr": ("--music-snr-range", -INF, INF),
    "babble_snr": ("--babble-snr-range", -INF, INF),
    "babble_talkers": ("--babble-talkers", 1, 64),
    "drr": ("--drr-range", -INF, INF),
    "room.rt60": ("--rt60-range", 0.05, 10.0),
    "room.length": ("--room-size-range", 2.5, 200.0),
    "clip": ("--clip-range", 1e-4, 1.0),
    "band_high": ("--band-high-range", 100.0, 7900.0),
    "band_low": ("--band-low-range", 0.0, 4000.0),
    "band_order": ("--band-order-range", 1, 10),
    "loss": ("--loss-range", 1e-4, 0.9),
    "burst": ("--burst-range", 1.0, 100.0),
    "echo_delay": ("--echo-delay-range", 1.0, 2000.0),
    "echo_loss": ("--echo-loss-range", 0.0, 100.0),
    "echo_feedback": ("--echo-feedback-range", 0.0, 0.95),  # 1 would never die away
    "talker_snr": ("--talker-snr-range", -INF, INF),
    "chop_length": ("--chop-length-range", 1.0, 1000.0),
    "chop_rate": ("--chop-rate-range", 0.01, 50.0),
    "suppressor_snr": ("--suppressor-snr-range", -INF, INF),
    "suppressor_oversub": ("--suppressor-oversub-range", 0.1, 20.0),
    "suppressor_floor": ("--suppressor-floor-range", -100.0, 0.0),
    "speech_level": ("--speech-level-range", -60.0, 0.0),
    "agc_attack": ("--agc-attack-range", 0.1, 10000.0),
    "agc_release": ("--agc-release-range", 0.1, 10000.0),
    "gain_step": ("--gain-step-range", 0.0, 60.0),
    "gain_step_rate": ("--gain-step-rate-range", 0.01, 50.0),
    "gain_fade": ("--gain-fade-range", -60.0, 20.0),
    "saturation_drive": ("--saturation-drive-range", -60.0, 60.0),
    "hum_snr": ("--hum-snr-range", -INF, INF),
    "dc_offset": ("--dc-offset-range", 0.0, 1.0),
    "chain_level": ("--chain-level-range", -60.0, 0.0),
    "chain_eq_freq": ("--chain-eq-freq-range", 20.0, 7900.0),  # below the 8 kHz Nyquist frequency
    "chain_eq_gain": ("--chain-eq-gain-range", -24.0, 24.0),
    "chain_eq_q": ("--chain-eq-q-range", 0.1, 20.0),
    "chain_highpass": ("--chain-highpass-range", 10.0, 1000.0),
    "aliasing_rate": ("--aliasing-rate-range", 1000.0, 15999.0),  # below 16 kHz, or nothing folds
    "dropout_length": ("--dropout-length-range", 1.0, 4000.0),
}
SHARE_OPTIONS = {"synthetic_rooms": "--synthetic-rooms", "tandem": "--tandem-prob",
                 "clean_share": "--clean-share", "call_share": "--call-share",
                 "recording_chain": "--recording-chain", "fault_share": "--fault-share"}


def check_ranges(ranges: Ranges) -> None:
    """One line naming the option for a range that is reversed, out of bounds, or a bad probability."""
    for key, (option, lowest, highest) in RANGE_OPTIONS.items():
        low, high = functools.reduce(getattr, key.split("."), ranges)
        if not (lowest <= low <= high <= highest and math.isfinite(low) and math.isfinite(high)):
            raise MosqaError(f"{option} {low:g},{high:g}: expected finite LOW <= HIGH within "
                             f"{lowest:g}..{highest:g}")
    for key, option in SHARE_OPTIONS.items():
        if not 0.0 <= getattr(ranges, key) <= 1.0:
            raise MosqaError(f"{option} {getattr(ranges, key):g}: expected a probability in 0..1")
    for option, counts, what in (("--babble-talkers", ranges.babble_talkers, "talkers"),
                                 ("--band-order-range", ranges.band_order, "filter orders")):
        if any(n != int(n) for n in counts):
            shown = ",".join(f"{n:g}" for n in counts)
            raise MosqaError(f"{option} {shown}: expected whole numbers of {what}")
    combine = ranges.combine
    if len(combine) != 3 or min(combine) < 0 or sum(combine) <= 0:
        raise MosqaError(f"--combine-probs {','.join(f'{p:g}' for p in combine)}: expected three weights "
                         "P1,P2,P3 (>= 0, not all 0) for 1, 2 and 3 degradations in one clip")


def ranges_from_dict(data: dict) -> Ranges:
    """Ranges back from their JSON form in simulate.json (lists -> tuples, room -> RoomRanges)."""
    room = RoomRanges(**{k: tuple(v) for k, v in data["room"].items()})
    return Ranges(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k != "room"},
                  room=room)
