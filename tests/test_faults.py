"""The signal-path faults of issue 30 item 3 (degrade.FAULT_KINDS): aliasing folds what lies above the
faulty converter's Nyquist frequency back into the band, an outage loses whole stretches, and
--fault-share sets how many degraded clips carry one while share 0 draws as before they existed."""

import numpy as np
import pytest

from mosqa.audio import SAMPLE_RATE, load_audio
from mosqa.defaults import builtin_speech_dir, generated_noises
from mosqa.degrade import CALL_KINDS, COMFORT_NOISE_DB, DEGRADATIONS, FAULT_KINDS, Sources, degrade
from mosqa.ranges import Ranges


@pytest.fixture(scope="module")
def speech():
    return load_audio(sorted(builtin_speech_dir().glob("*/*.flac"))[0]).astype(np.float64)


def sources(**ranges) -> Sources:
    return Sources(generated_noises(seconds=2.0), ranges=Ranges(**ranges))


def fault(kind: str, wav, seed: int = 0, **ranges):
    return DEGRADATIONS[kind](wav, np.random.default_rng(seed), sources(**ranges))


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


@pytest.mark.parametrize("seed", range(4))  # both modes: holding and joining the kept samples
def test_aliasing_folds_a_tone_above_the_lower_nyquist_back_into_the_band(seed):
    tone = np.sin(2 * np.pi * 7000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    out, params = fault("aliasing", tone, seed, aliasing_rate=(10000.0, 10000.0))
    assert params["aliasing_hz"] == 10000 and len(out) == len(tone)
    assert peak_hz(out) == pytest.approx(3000, abs=20)  # 7 kHz folds about 5 kHz to 10 - 7 = 3 kHz
    low_tone = np.sin(2 * np.pi * 1000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    assert peak_hz(fault("aliasing", low_tone, seed, aliasing_rate=(10000.0, 10000.0))[0]) == pytest.approx(
        1000, abs=20)  # below the lower Nyquist a tone stays where it was


def test_an_outage_loses_what_it_reports_silent_or_under_comfort_noise(speech):
    speech = speech + 1e-4 * np.random.default_rng(0).standard_normal(len(speech))  # no sample exactly 0
    modes = set()
    for seed in range(12):
        out, params = fault("dropout", speech, seed, dropout_length=(200.0, 300.0))
        changed = out != speech
        assert 1 <= params["dropouts"] <= 3 and len(out) == len(speech)
        assert params["dropout_ms"] == pytest.approx(changed.sum() * 1000 / SAMPLE_RATE, abs=0.01)
        assert 200 <= params["dropout_ms"] <= params["dropouts"] * 300 + 0.1  # stretches may overlap
        if params["dropout_mode"] == "silence":
            assert np.all(out[changed] == 0)
        else:
            level = 10 * np.log10(np.mean(out[changed] ** 2) / np.mean(speech ** 2))
            assert level == pytest.approx(COMFORT_NOISE_DB, abs=1.5)
        modes.add(params["dropout_mode"])
    assert modes == {"silence", "comfort"}


def test_no_outage_takes_more_than_a_quarter_of_the_clip_each(speech):
    _, params = fault("dropout", speech[:8000], 0, dropout_length=(4000.0, 4000.0))
    assert params["dropout_ms"] <= params["dropouts"] * 8000 / 4 * 1000 / SAMPLE_RATE


BEFORE_FAULTS = ["reverb+saturation", "noise", "gain", "gain", "bandlimit+packet_loss+reverb", "clip+noise",
                 "echo", "codec+noise", "noise", "codec+suppressor", "chop+echo+noise", "suppressor"]


def drawn(speech, n: int, **ranges) -> list[set]:
    src = sources(clean_share=0.0, **ranges)
    return [set(degrade(speech[:16000], np.random.default_rng(i), src)[1]["degradations"].split("+"))
            for i in range(n)]


def test_fault_share_is_the_share_of_clips_with_a_fault_and_zero_draws_as_before(speech):
    kinds = drawn(speech, 300, call_share=0.0, fault_share=0.3)
    carrying = [bool(k & set(FAULT_KINDS)) for k in kinds]
    assert np.mean(carrying) == pytest.approx(0.3, abs=0.06)
    assert set().union(*drawn(speech, 60, call_share=0.0, fault_share=1.0)) >= set(FAULT_KINDS)
    # share 0: what these seeds drew (call share 0.5) before the faults existed
    assert ["+".join(sorted(k)) for k in drawn(speech, 12, call_share=0.5, fault_share=0.0)] == BEFORE_FAULTS
    # a clip carries a call impairment or a fault, never both: each share is its own minority
    assert not any(k & set(CALL_KINDS) and k & set(FAULT_KINDS)
                   for k in drawn(speech, 100, call_share=0.5, fault_share=0.5))
