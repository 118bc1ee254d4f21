"""The impairments of real calls (calls.py, and how degrade.py draws them): each does what its name says
on a synthetic signal, at the values it records in meta.csv."""

import numpy as np
import pytest
from scipy.signal import correlate

from mosqa import calls
from mosqa.defaults import builtin_speech_dir, generated_noises
from mosqa.degrade import DEGRADATIONS, Sources
from mosqa.ranges import Ranges

SR = 16000


def talking(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Broadband noise with a syllable-rate envelope: speech-like in level, but with no pitch period, so
    a correlation has one peak."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return 0.1 * rng.standard_normal(len(t)) * (0.2 + np.sin(np.pi * 3 * t) ** 2)


def talkers() -> dict:
    out: dict = {}
    for path in sorted(builtin_speech_dir().glob("*/*.flac")):
        out.setdefault(path.parent.name, []).append(str(path))
    return {speaker: tuple(paths) for speaker, paths in out.items()}


def draw(kind: str, wav: np.ndarray, seed: int, **ranges):
    src = Sources({"white": np.random.default_rng(9).standard_normal(4 * SR)}, talkers=talkers(),
                  speaker="spk1", ranges=Ranges(**ranges))
    return DEGRADATIONS[kind](wav, np.random.default_rng(seed), src)


def level_db(x: np.ndarray) -> float:
    return 20 * np.log10(calls.rms(x))


def test_the_echo_peaks_at_its_delay_in_every_rendering():
    wav = talking()
    modes = set()
    for seed in range(16):
        out, p = draw("echo", wav, seed, echo_delay=(40.0, 300.0), echo_feedback=(0.3, 0.3))
        lags = correlate(out - wav, wav, method="fft")
        lag = int(np.argmax(lags)) - (len(wav) - 1)
        assert lag == round(p["echo_delay_ms"] * SR / 1000), p
        modes.add(p["echo_mode"])
    assert modes == {"line", "band", "room"}
    # one plain repeat: its level below the speech is the return loss (of what is not pushed past the end)
    for seed in range(20):
        out, p = draw("echo", wav, seed, echo_loss=(12.0, 12.0), echo_feedback=(0.0, 0.0))
        if p["echo_mode"] == "line":
            break
    delay = round(p["echo_delay_ms"] * SR / 1000)
    heard = level_db(wav) - level_db(np.pad(wav[: len(wav) - delay], (delay, 0)))
    assert p["echo_level_db"] == pytest.approx(12.0 + heard, abs=0.02)
    fed, q = draw("echo", wav, seed, echo_loss=(12.0, 12.0), echo_feedback=(0.6, 0.6))
    assert q["echo_mode"] == "line" and q["echo_level_db"] < p["echo_level_db"] - 1.0  # the repeats add up


def test_the_competing_talker_is_another_speaker_at_the_drawn_snr():
    wav = talking()
    modes = set()
    for seed in range(8):
        out, p = draw("talker", wav, seed, talker_snr=(7.0, 7.0 + 1e-9))
        assert p["talker"] != "spk1" and p["talker"] in talkers()
        assert level_db(wav) - level_db(out - wav) == pytest.approx(7.0, abs=0.01)
        modes.add(p["talker_mode"])
    assert modes == {"near", "room"}


def test_chopping_deletes_zeroes_or_repeats_the_drawn_segments():
    wav = talking(4.0)
    seen = set()
    for seed in range(12):
        out, p = draw("chop", wav, seed, chop_length=(20.0, 20.0), chop_rate=(3.0, 3.0))
        length, total = 320, round(p["chop_total_ms"] * SR / 1000)
        count = round(p["chops_per_s"] * 4.0)
        assert count >= 1 and total == count * length and p["chop_ms"] == 20.0
        if p["chop_mode"] == "delete":  # the signal closes up: shorter by the drawn total
            assert len(wav) - len(out) == total
        else:
            assert len(out) == len(wav)
            changed = np.flatnonzero(out != wav)
            assert len(changed) == total and (p["chop_mode"] != "zero" or not out[changed].any())
        seen.add(p["chop_mode"])
    assert seen == {"delete", "zero", "repeat"}
    repeated = calls.chop(np.arange(10.0), [4], 2, "repeat")
    assert repeated.tolist() == [0, 1, 2, 3, 2, 3, 6, 7, 8, 9]


@pytest.mark.parametrize("mode", sorted(calls.SUPPRESSORS))
def test_the_suppressor_lowers_a_noise_only_pause_by_its_floor(mode):
    """A talk spurt between two noise-only pauses: at a strong over-subtraction the suppressed pause sits
    the floor below the noise; at a weak one, spectral subtraction leaves musical noise above it."""
    rng = np.random.default_rng(0)
    wav = np.concatenate([np.zeros(SR), talking(2.0), np.zeros(SR)])
    noise = 0.01 * rng.standard_normal(len(wav))
    pause = slice(3 * SR + SR // 4, 4 * SR - SR // 8)  # clear of the gate's hold after the spurt
    for floor in (-12.0, -25.0):
        out = calls.SUPPRESSORS[mode](wav + noise, 4.0, floor)
        assert level_db(out[pause]) - level_db(noise[pause]) == pytest.approx(floor, abs=1.0)
        assert level_db(out[SR:3 * SR]) == pytest.approx(level_db(wav[SR:3 * SR]), abs=1.5)  # speech stays
    weak = calls.SUPPRESSORS[mode](wav + noise, 1.0, -25.0)
    if mode == "subtract":
        assert level_db(weak[pause]) - level_db(noise[pause]) > -25.0 + 3
    # drawn as a kind: the noise it is given, at the drawn SNR, falls by the drawn floor in the pause
    for seed in range(8):
        out, p = draw("suppressor", wav, seed, suppressor_snr=(10.0, 10.0), suppressor_floor=(-20.0, -20.0),
                      suppressor_oversub=(4.0, 4.0))
        if p["ns_mode"] == mode:
            break
    given = calls.rms(wav) * 10 ** (-10 / 20)
    assert level_db(out[pause]) - 20 * np.log10(given) == pytest.approx(-20.0, abs=1.0)


def test_the_agc_gain_follows_the_envelope():
    """A 1 kHz tone (one period a 1 ms frame) whose level steps from -40 to -10 dBFS and back: the gain
    settles at target minus level, falls at the attack time and recovers at the (slower) release time."""
    levels = np.repeat([-40.0, -10.0, -40.0], SR)
    wav = np.sqrt(2) * np.sin(2 * np.pi * 1000 * np.arange(3 * SR) / SR) * 10 ** (levels / 20)
    gain = calls.agc_gain_db(wav, attack_ms=5.0, release_ms=150.0)
    target = calls.AGC_TARGET_DBFS
    for at, level in ((SR - 100, -40.0), (2 * SR - 100, -10.0), (3 * SR - 100, -40.0)):
        assert gain[at] == pytest.approx(target - level, abs=1.0)
    assert gain[SR + 30 * SR // 1000] == pytest.approx(target + 10, abs=1.0)  # 6 attack times after the rise
    after_fall = gain[2 * SR + 30 * SR // 1000]  # a fifth of the release time: 18 % of the way back up
    assert after_fall == pytest.approx(target + 10 + 30 * (1 - np.exp(-0.2)), abs=1.0)
    out = wav * 10 ** (gain / 20)
    assert level_db(out[SR // 2:SR]) == pytest.approx(target, abs=1.0)  # quiet and loud both at the target
    assert level_db(out[3 * SR // 2:2 * SR]) == pytest.approx(target, abs=1.0)


def test_gain_faults_set_the_speech_level_and_step_the_gain():
    wav = talking()
    modes = set()
    for seed in range(8):
        out, p = draw("gain", wav, seed, speech_level=(-30.0, -30.0), gain_step=(6.0, 6.0),
                      agc_attack=(1.0, 1.0), agc_release=(20.0, 20.0))
        ratio_db = 20 * np.log10(np.abs(out) / np.abs(wav * 10 ** (-30 / 20) / calls.rms(wav)))
        if p["gain_mode"] == "steps":  # a gain of 0 or +-6 dB, changing only at the steps
            assert set(np.round(ratio_db, 6)) <= {-6.0, 0.0, 6.0} and p["gain_swing_db"] <= 12.0
            assert np.count_nonzero(np.diff(np.round(ratio_db, 6))) <= p["gain_steps"]
        else:  # a pumping AGC: its gain swings with the syllables
            assert p["gain_swing_db"] > 6.0
        modes.add(p["gain_mode"])
    assert modes == {"agc", "steps"}
    steps = calls.gain_steps_db(10, [2, 4, 6, 8], 5.0, [1, 1, -1, -1])
    assert steps.tolist() == [0, 0, 5, 5, 0, 0, -5, -5, 0, 0]  # up, turned back at +5, down, down


def test_a_gain_fade_moves_the_level_once_and_only_where_its_range_is_given():
    wav = talking()
    fades = 0
    for seed in range(12):
        out, p = draw("gain", wav, seed, speech_level=(-30.0, -30.0), gain_fade=(-30.0, 6.0))
        if p["gain_mode"] != "fade":
            continue
        fades += 1
        gain_db = 20 * np.log10(np.abs(out) / np.abs(wav * 10 ** (-30 / 20) / calls.rms(wav)))
        low, high = sorted((p["fade_start_db"], p["fade_end_db"]))
        assert -30 <= low <= high <= 6 and 0.2 <= p["fade_s"] <= 4.0
        assert low - 0.01 <= gain_db.min() and gain_db.max() <= high + 0.01  # params keep 2 decimals
        steps = np.diff(gain_db)  # one way only: a fade, not a swing
        assert np.all(steps >= -1e-9) or np.all(steps <= 1e-9)
    assert fades >= 2
    for seed in range(12):  # the default range draws no fade
        assert draw("gain", wav, seed)[1]["gain_mode"] != "fade"


def test_saturation_bends_more_with_drive_and_bias_adds_even_harmonics():
    t = np.arange(SR) / SR
    tone = 0.5 * np.sin(2 * np.pi * 200 * t)
    sdr = [calls.signal_to_distortion_db(tone, calls.saturate(tone, drive, 0.0)) for drive in (-12, 0, 12)]
    assert sdr[0] > sdr[1] > sdr[2]

    def harmonic_db(x, k):
        spec = np.abs(np.fft.rfft(x))
        return 20 * np.log10(spec[200 * k] / spec[200])

    symmetric, biased = calls.saturate(tone, 6.0, 0.0), calls.saturate(tone, 6.0, 0.25)
    assert harmonic_db(symmetric, 2) < -80 < -40 < harmonic_db(biased, 2)  # tanh alone: odd harmonics only
    assert harmonic_db(symmetric, 3) > -40


def test_hum_shows_at_its_frequency_with_its_dc():
    wav = talking()
    seen = set()
    for seed in range(10):
        out, p = draw("hum", wav, seed, hum_snr=(10.0, 10.0), dc_offset=(0.02, 0.02))
        added = out - wav
        assert np.mean(added) == pytest.approx(0.02 * np.max(np.abs(wav)), rel=1e-6)
        added = added - np.mean(added)
        assert level_db(wav) - level_db(added) == pytest.approx(10.0, abs=0.01)
        spec = np.abs(np.fft.rfft(added[:SR]))  # 1 Hz bins
        assert int(np.argmax(spec)) == p["hum_hz"], p
        peaks = np.flatnonzero(spec > 1e-3 * spec.max())
        assert np.all(peaks % p["hum_hz"] == 0)  # harmonics only
        seen.add((p["hum_mode"], p["hum_hz"]))
        if p["hum_mode"] == "buzz":
            assert spec[20 * p["hum_hz"]] > 0.02 * spec.max()  # a buzz reaches into the speech band
    assert {mode for mode, _ in seen} == {"mains", "buzz"} and {hz for _, hz in seen} == {50, 60}


def test_generated_noise_is_enough_for_the_suppressor():
    """Without --noise-dir the suppressor draws from the generated noises, like additive noise."""
    src = Sources(generated_noises(seconds=2.0))
    out, p = DEGRADATIONS["suppressor"](talking(), np.random.default_rng(0), src)
    assert p["ns_noise"] in generated_noises(seconds=2.0) and np.all(np.isfinite(out))
