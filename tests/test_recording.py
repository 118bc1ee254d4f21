"""recording.py and simulate's --recording-chain (issue 30 item 3): each stage does what its columns say,
share 0 replays the clips from before the chain, and a chained clip is labelled against its chained
reference."""

import csv
import json

import numpy as np
import pytest
from conftest import run_cli, tone
from scipy.signal import sosfilt

from mosqa import recording
from mosqa import simulate as sim
from mosqa.audio import SAMPLE_RATE, load_audio
from mosqa.calls import rms
from mosqa.defaults import builtin_speech_dir
from mosqa.errors import MosqaError
from mosqa.metrics import pesq_wb
from mosqa.ranges import Ranges

CHAINED = Ranges(recording_chain=1.0)
# What simulate wrote for the built-in speech (seed 1, 3 utterances x 2, no codecs) before the chain existed.
BEFORE_CHAIN = [("reverb+babble", 1.1457), ("noise+babble", 1.9696), ("reverb", 1.1221), ("noise", 3.6107),
                ("hum", 2.2183), ("bandlimit+codec", 2.2813)]
TINY = dict(per_utt=2, seed=1, max_utts=3, codecs="none", jobs=1)


@pytest.fixture(scope="module")
def speech():
    return load_audio(sorted(builtin_speech_dir().glob("*/*.flac"))[0]).astype(np.float64)


def level_db(x) -> float:
    return 20 * float(np.log10(rms(x)))


def response_db(impulse_response: np.ndarray, freq: float) -> float:
    """The gain of a filter at `freq`, from its impulse response (the DTFT at one frequency)."""
    n = np.arange(len(impulse_response))
    return 20 * float(np.log10(abs(np.sum(impulse_response * np.exp(-2j * np.pi * freq * n / SAMPLE_RATE)))))


def test_the_high_pass_cuts_a_30_hz_tone_far_more_than_a_1_khz_one():
    low, high = tone(30.0, seconds=2.0).astype(np.float64), tone(1000.0, seconds=2.0).astype(np.float64)
    for seed in range(8):
        for ranges, margin in ((Ranges(), 3.0), (Ranges(chain_highpass=(150.0, 300.0)), 12.0)):
            cut = [level_db(x[SAMPLE_RATE:]) - level_db(recording.highpass(x, np.random.default_rng(seed),
                                                                            ranges)[0][SAMPLE_RATE:])
                   for x in (low, high)]
            assert cut[0] > cut[1] + margin and abs(cut[1]) < 0.5, (seed, cut)


def test_an_eq_band_has_its_drawn_gain_at_its_frequency_and_the_column_is_the_filter(monkeypatch):
    impulse = np.zeros(4 * SAMPLE_RATE)
    impulse[0] = 1.0
    kinds = set()
    for seed in range(12):  # a stage of several bands: its column names exactly the filter it ran
        out, params = recording.mic_eq(impulse, np.random.default_rng(seed), CHAINED)
        bands = [band.split(":") for band in params["chain_eq"].split("+")]
        assert len(bands) == params["chain_eq_bands"] in (1, 2, 3)
        expected = impulse
        for kind, freq, gain, q in bands:
            expected = sosfilt(recording.BANDS[kind](float(freq), float(gain), float(q)), expected)
        np.testing.assert_allclose(out, expected, atol=1e-12)
    monkeypatch.setattr(recording, "EQ_BANDS", (1, 1))
    for seed in range(30):  # one band alone: a peak has its gain at its centre, a shelf half of it
        out, params = recording.mic_eq(impulse, np.random.default_rng(seed), CHAINED)
        kind, freq, gain, _ = params["chain_eq"].split(":")
        kinds.add(kind)
        at_centre = float(gain) if kind == "peak" else float(gain) / 2
        assert response_db(out, float(freq)) == pytest.approx(at_centre, abs=0.5), params
    assert kinds == set(recording.BANDS)


def test_a_resampling_round_trip_keeps_a_tones_level_and_the_length():
    x = tone(1000.0, seconds=2.0).astype(np.float64)[:-7]  # an odd length the polyphase path rounds up
    seen = set()
    for seed in range(40):
        out, params = recording.resampling(x, np.random.default_rng(seed), CHAINED)
        seen.add(params["chain_resampler"])
        assert len(out) == len(x)
        assert params.get("chain_resample_hz", 16000) in (16000, *recording.RATES)
        middle = slice(1600, -1600)  # the ends ring with either resampler's filter
        assert level_db(out[middle]) == pytest.approx(level_db(x[middle]), abs=0.1), params
    assert seen == set(recording.RESAMPLERS)


def test_the_level_stage_hits_its_drawn_level_and_never_clips(speech):
    hit = 0
    for seed in range(12):
        drawn = np.random.default_rng(seed).uniform(*CHAINED.chain_level)
        out, params = recording.level(speech, np.random.default_rng(seed), CHAINED)
        peak = np.max(np.abs(out))
        assert peak <= recording.PEAK + 1e-12
        assert params["chain_level_dbfs"] == pytest.approx(level_db(out), abs=0.01)
        if peak < recording.PEAK - 1e-9:
            assert level_db(out) == pytest.approx(drawn, abs=0.1)
            hit += 1
        else:  # the speech's peaks ~18 dB over its RMS would clip at the loudest levels: lowered instead
            assert level_db(out) < drawn
    assert hit >= 8


def test_chain_ranges_bound_what_is_drawn_and_the_share_how_often(speech):
    narrow = Ranges(recording_chain=1.0, chain_level=(-30.0, -29.0), chain_eq_freq=(500.0, 600.0),
                    chain_eq_gain=(2.0, 3.0), chain_eq_q=(1.0, 1.5), chain_highpass=(80.0, 90.0))
    for seed in range(6):
        out, params = recording.recorded(speech[:16000], (seed, 0, 0), narrow)
        assert out.dtype == np.float32 and len(out) == 16000
        assert set(params) <= {c for columns in recording.COLUMNS.values() for c in columns}
        assert -30 <= params["chain_level_dbfs"] <= -29 and 80 <= params["chain_highpass_hz"] <= 90
        for kind, freq, gain, q in (band.split(":") for band in params["chain_eq"].split("+")):
            assert 500 <= float(freq) <= 600 and 2 <= float(gain) <= 3
            assert 1 <= float(q) <= 1.5 if kind == "peak" else float(q) == 0.71
    chained = [bool(recording.recorded(speech[:1600], (0, i, 0), Ranges(recording_chain=0.4))[1])
               for i in range(200)]
    assert np.mean(chained) == pytest.approx(0.4, abs=0.08)
    same, none = recording.recorded(speech, (0, 0, 0), Ranges())
    assert same is speech and none == {}


@pytest.mark.slow
def test_share_zero_replays_the_clips_from_before_and_share_one_labels_against_the_chained_reference(
        tmp_path):
    sim.simulate(None, out_dir=tmp_path / "off", **TINY)
    sim.simulate(None, out_dir=tmp_path / "on", ranges=CHAINED, **TINY)
    off = list(csv.DictReader(open(tmp_path / "off" / "meta.csv")))
    on = list(csv.DictReader(open(tmp_path / "on" / "meta.csv")))
    assert [(r["degradations"], float(r["pesq"])) for r in off] == BEFORE_CHAIN
    chain_columns = [c for columns in recording.COLUMNS.values() for c in columns]
    assert list(off[0]) == list(on[0]) and not any(r[c] for r in off for c in chain_columns)
    # The chain draws from its own generator: each clip has the degradations it had without one.
    assert [r["degradations"] for r in on] == [r["degradations"] for r in off]
    tasks = sim.plan(builtin_speech_dir(), TINY["per_utt"], TINY["seed"], TINY["max_utts"], {})
    for task, r in zip(tasks, on, strict=True):
        assert all(r[c] for c in chain_columns if c != "chain_resample_hz")
        assert r["clean"] == f"clean/{task.name}.wav"  # its own reference, not the utterance's
        source = load_audio(task.clean)
        chained, params = recording.recorded(source, (TINY["seed"], task.index, task.k), CHAINED)
        assert {k: str(v) for k, v in params.items()} == {c: r[c] for c in params}
        reference = load_audio(tmp_path / "on" / r["clean"])
        np.testing.assert_allclose(reference, chained, atol=1 / 32768)  # the 16-bit file of that chain
        assert len(reference) == len(source) and np.max(np.abs(reference - source)) > 1e-3
    r, task = on[1], tasks[1]  # the label is PESQ of the clip against the chained reference
    deg = load_audio(tmp_path / "on" / r["wav"])
    chained, _ = recording.recorded(load_audio(task.clean), (TINY["seed"], task.index, task.k), CHAINED)
    assert pesq_wb(chained, deg) == pytest.approx(float(r["pesq"]), abs=0.05)


def test_a_folder_from_before_the_chain_resumes_without_it_and_only_so(tmp_path, monkeypatch):
    monkeypatch.setattr(sim, "run_item", lambda task, clean: {"skipped": "test"})  # only settings matter
    monkeypatch.setattr(sim, "_finish", lambda *a: {})
    sim.simulate(None, out_dir=tmp_path / "old", **TINY)
    settings = json.loads((tmp_path / "old" / "simulate.json").read_text())
    for key in ("recording_chain", "chain_level", "chain_eq_freq", "chain_eq_gain", "chain_eq_q",
                "chain_highpass"):
        del settings["ranges"][key]
    (tmp_path / "old" / "simulate.json").write_text(json.dumps(settings))
    sim.simulate(None, out_dir=tmp_path / "old", **TINY)
    with pytest.raises(MosqaError, match="other settings"):
        sim.simulate(None, out_dir=tmp_path / "old", ranges=Ranges(recording_chain=0.5), **TINY)


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "nan", "inf"])
def test_a_share_outside_0_1_is_one_error_line(tmp_path, bad):
    result = run_cli("simulate", "--builtin", "-o", tmp_path / "x", "--recording-chain", bad)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: --recording-chain "), result.output
    assert not (tmp_path / "x").exists()
