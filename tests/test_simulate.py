"""degrade.py, defaults.py and simulate.py: labels, determinism, resume, skipped clips, CLI, and the
campaign options (noise/RIR/music lists, babble, music and clean clips, diagnostic columns)."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from mosqa import simulate as sim
from mosqa.audio import load_audio, write_audio
from mosqa.codecs import mulaw
from mosqa.defaults import builtin_speech_dir, generated_noises
from mosqa.degrade import (
    CALL_KINDS,
    CLEAN,
    COLUMNS,
    DEGRADATIONS,
    NEEDS,
    WEIGHTS,
    Sources,
    babble,
    clip,
    degrade,
    normalise_rir,
    usable,
)
from mosqa.errors import MosqaError
from mosqa.lists import Item, read_list
from mosqa.metrics import pesq_wb
from mosqa.ranges import Ranges, RoomRanges

BUILTIN = sorted(builtin_speech_dir().glob("*/*.flac"))


@pytest.fixture(scope="module")
def speech():
    return load_audio(BUILTIN[0])


@pytest.fixture
def clean_dir(tmp_path):
    """Three speakers x one utterance (the package's own espeak-ng speech), plus a flat file."""
    root = tmp_path / "clean"
    for spk, src in zip(("alice", "bob", "carol"), BUILTIN[::12], strict=True):
        (root / spk).mkdir(parents=True)
        shutil.copy(src, root / spk / "u1.flac")
    return root


def test_builtin_data_is_small_16k_mono_and_has_speakers():
    import soundfile as sf

    assert len(BUILTIN) >= 30
    assert len({p.parent.name for p in BUILTIN}) >= 4
    assert sum(p.stat().st_size for p in BUILTIN) < 3e6
    assert all(sf.info(p).samplerate == 16000 and sf.info(p).channels == 1 for p in BUILTIN)
    assert (builtin_speech_dir() / "sentences.txt").is_file()


def test_pesq_of_a_clean_copy_is_the_maximum_and_of_0db_white_noise_is_low(speech):
    assert pesq_wb(speech, speech.copy()) == pytest.approx(4.64, abs=0.02)
    noise = np.random.default_rng(0).standard_normal(len(speech)).astype(np.float32)
    noisy = speech + noise * np.sqrt(np.mean(speech ** 2) / np.mean(noise ** 2))
    assert pesq_wb(speech, noisy) < 2.0


def test_generated_noises_are_deterministic_and_coloured():
    a, b = generated_noises(seconds=2.0), generated_noises(seconds=2.0)
    assert sorted(a) == ["babble", "brown", "pink", "white"]
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert len(a[name]) == 32000 and np.sqrt(np.mean(a[name] ** 2)) == pytest.approx(0.1, rel=1e-3)

    def low_to_high(x):
        spec = np.abs(np.fft.rfft(x)) ** 2
        return spec[20:500].mean() / spec[-5000:].mean()  # ~10-250 Hz vs ~5.5-8 kHz

    assert low_to_high(a["white"]) < 2 < low_to_high(a["pink"]) < low_to_high(a["brown"])


def test_rir_is_normalised_to_a_unit_direct_path():
    rir = np.concatenate([np.zeros(50), [0.2, -0.5, 0.1], np.zeros(10)]).astype(np.float32)
    out = normalise_rir(rir)
    assert out[0] == 1.0 and len(out) == len(rir) - 51


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_each_degradation_is_deterministic_same_length_and_recorded(speech, name):
    src = Sources(generated_noises(seconds=2.0), music=generated_noises(seconds=2.0), speaker="spk1",
                  talkers={p.parent.name: (str(p),) for p in BUILTIN})
    outs = [DEGRADATIONS[name](speech.astype(np.float64), np.random.default_rng(3), src) for _ in range(2)]
    (a, pa), (b, pb) = outs
    np.testing.assert_array_equal(a, b)
    assert pa == pb and pa
    deleted = round(pa["chop_total_ms"] * 16) if pa.get("chop_mode") == "delete" else 0
    assert len(a) == len(speech) - deleted and np.all(np.isfinite(a))
    assert not np.allclose(a, speech[: len(a)])


def test_additive_noise_hits_the_drawn_snr(speech):
    src = Sources(generated_noises(seconds=2.0), ranges=Ranges(snr=(10.0, 10.0 + 1e-9)))
    out, params = DEGRADATIONS["noise"](speech.astype(np.float64), np.random.default_rng(0), src)
    noise = out - speech
    assert 10 * np.log10(np.mean(speech ** 2) / np.mean(noise ** 2)) == pytest.approx(10.0, abs=0.01)
    assert params["snr_db"] == 10.0


def test_mulaw_is_close_but_not_identical(speech):
    out = mulaw(speech)
    assert len(out) == len(speech)
    err = np.mean((out - speech) ** 2) / np.mean(speech ** 2)
    assert 1e-5 < err < 0.5  # band-limited to 4 kHz plus 8-bit companding noise


def test_degrade_combines_in_chain_order_and_keeps_headroom(speech):
    src = Sources(generated_noises(seconds=2.0))
    seen = set()
    for i in range(30):
        out, params = degrade(speech * 3, np.random.default_rng(i), src)
        names = params["degradations"].split("+")
        assert names == [n for n in DEGRADATIONS if n in names]
        assert out.dtype == np.float32 and np.max(np.abs(out)) <= 0.99 + 1e-6
        seen.add(len(names))
    assert seen >= {1, 2}


def test_plan_speakers_ids_map_and_subset(tmp_path, clean_dir):
    write_audio(clean_dir / "flat.wav", np.zeros(100, np.float32))
    tasks = sim.plan(clean_dir, 2, seed=0, max_utts=None, speaker_map={"bob": "alice"})
    assert [(t.clean_id, t.k, t.speaker) for t in tasks[:2]] == [("alice__u1", 0, "alice"),
                                                                  ("alice__u1", 1, "alice")]
    assert {t.speaker for t in tasks} == {"alice", "carol", "flat"}  # bob mapped; flat file -> its stem
    sub = sim.plan(clean_dir, 1, seed=0, max_utts=2, speaker_map={})
    assert len(sub) == 2 and sub == sim.plan(clean_dir, 1, seed=0, max_utts=2, speaker_map={})
    assert sim.parse_speaker_map("a=x, b=x") == {"a": "x", "b": "x"}
    with pytest.raises(MosqaError, match="FOLDER=SPEAKER"):
        sim.parse_speaker_map("oops")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(MosqaError, match="no audio files"):
        sim.plan(tmp_path / "nothing", 1, 0, None, {})


def run(clean_dir, out_dir, **kw):
    return sim.simulate(clean_dir, out_dir=out_dir, per_utt=2, seed=7, codecs="none", **kw)


def outputs(out_dir):
    files = {p.relative_to(out_dir).as_posix(): p.read_bytes() for p in sorted(out_dir.rglob("*"))
             if p.is_file() and p.name not in ("progress.jsonl", "simulate.json", "summary.json")}
    return files


@pytest.mark.slow
def test_same_seed_gives_identical_output_with_any_worker_count(tmp_path, clean_dir):
    s1 = run(clean_dir, tmp_path / "a", jobs=1)
    s2 = run(clean_dir, tmp_path / "b", jobs=2)
    assert s1["clips"] == s2["clips"] == 6 and not s1["skipped"]
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    items = read_list(tmp_path / "a" / "all.list")
    assert len(items) == 6 and all(1.0 <= it.score <= 4.65 for it in items)
    pairs = read_list(tmp_path / "a" / "pairs.list")
    assert all(p.clean.is_file() and len(load_audio(p.clean)) == len(load_audio(p.path)) for p in pairs)
    rows = list(csv.DictReader(open(tmp_path / "a" / "meta.csv")))
    assert [r["speaker"] for r in rows] == ["alice"] * 2 + ["bob"] * 2 + ["carol"] * 2
    assert {"clean_id", "k", "degradations", "pesq"} <= set(rows[0])
    s3 = sim.simulate(clean_dir, out_dir=tmp_path / "c", per_utt=2, seed=8, codecs="none")
    assert outputs(tmp_path / "c")["meta.csv"] != outputs(tmp_path / "a")["meta.csv"]
    assert s3["clips"] == 6


@pytest.mark.slow
def test_same_seed_same_corpus_with_synthetic_and_recorded_rooms_and_codecs(tmp_path, clean_dir):
    (tmp_path / "rir").mkdir()
    decay = np.random.default_rng(0).standard_normal(8000) * np.exp(-np.arange(8000) / 1200)
    write_audio(tmp_path / "rir" / "hall.wav", 0.3 * decay / np.max(np.abs(decay)))
    # no call impairments: they would take draws from the rooms and codecs this test is about
    kw = dict(per_utt=6, seed=3, rir_dir=tmp_path / "rir",
              ranges=Ranges(combine=(0.0, 0.5, 0.5), call_share=0.0))
    sim.simulate(clean_dir, out_dir=tmp_path / "a", jobs=1, **kw)
    sim.simulate(clean_dir, out_dir=tmp_path / "b", jobs=2, **kw)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    rows = list(csv.DictReader(open(tmp_path / "a" / "meta.csv")))
    assert {r["rir"] for r in rows} >= {"synthetic", "hall"}
    assert any(r["codec"] for r in rows)


@pytest.mark.slow
def test_rerunning_a_finished_run_with_jobs_does_nothing(tmp_path, clean_dir):
    first = run(clean_dir, tmp_path / "o", jobs=2)
    again = run(clean_dir, tmp_path / "o", jobs=2)  # no utterance left: was a 0-worker pool
    assert again["new_clips"] == 0 and again["clips"] == first["clips"]


def test_interrupted_run_resumes_and_skips_finished_items(tmp_path, clean_dir, monkeypatch):
    real = sim.run_item
    calls = []

    def crash_on_fourth(task, clean):
        calls.append(task.name)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(task, clean)

    monkeypatch.setattr(sim, "run_item", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        run(clean_dir, tmp_path / "o", jobs=1)
    assert not (tmp_path / "o" / "all.list").exists()  # final lists only when complete
    assert len((tmp_path / "o" / "progress.jsonl").read_text().splitlines()) == 3
    with open(tmp_path / "o" / "progress.jsonl", "a") as fh:
        fh.write('{"name": "carol__u1_k01", "resu')  # a line torn by the crash
    calls.clear()
    summary = run(clean_dir, tmp_path / "o", jobs=1)
    assert len(calls) == 3 and summary["new_clips"] == 3 and summary["clips"] == 6
    assert calls == ["bob__u1_k01", "carol__u1_k00", "carol__u1_k01"]
    # A finished item whose wav was deleted is redone; everything else is skipped.
    (tmp_path / "o" / "wav" / "alice__u1_k00.wav").unlink()
    calls.clear()
    run(clean_dir, tmp_path / "o", jobs=1)
    assert calls == ["alice__u1_k00"]
    monkeypatch.setattr(sim, "run_item", real)
    run(clean_dir, tmp_path / "ref", jobs=1)
    assert outputs(tmp_path / "o") == outputs(tmp_path / "ref")


@pytest.mark.slow
def test_voice_perturbation_gives_each_clip_its_own_reference(tmp_path, clean_dir):
    run(clean_dir, tmp_path / "vp", jobs=1, voice_perturb=0.2)
    rows = list(csv.DictReader(open(tmp_path / "vp" / "meta.csv")))
    factors = [float(r["voice_speed"]) for r in rows]
    assert len(rows) == 6 and all(0.8 <= f <= 1.2 for f in factors) and len(set(factors)) == 6
    for r, f in zip(rows, factors, strict=True):
        assert Path(r["clean"]).stem == Path(r["wav"]).stem  # one reference per clip, not per utterance
        original = load_audio(clean_dir / r["speaker"] / "u1.flac")
        clean, deg = load_audio(tmp_path / "vp" / r["clean"]), load_audio(tmp_path / "vp" / r["wav"])
        assert len(deg) == len(clean) and abs(len(clean) - len(original) / f) <= 2
        # The label is PESQ against the perturbed reference (16-bit files differ a little from floats).
        assert pesq_wb(clean, deg, 16000) == pytest.approx(float(r["pesq"]), abs=0.05)
    with pytest.raises(MosqaError, match=r"--voice-perturb must be a finite number in \[0, 0.5\)"):
        run(clean_dir, tmp_path / "bad", voice_perturb=0.6)
    # A folder simulated before the option existed (no key in simulate.json) still resumes.
    run(clean_dir, tmp_path / "old", jobs=1)
    settings = json.loads((tmp_path / "old" / "simulate.json").read_text())
    del settings["voice_perturb"]
    (tmp_path / "old" / "simulate.json").write_text(json.dumps(settings))
    assert run(clean_dir, tmp_path / "old", jobs=1)["new_clips"] == 0


def test_other_settings_in_the_same_folder_are_refused(tmp_path, clean_dir, monkeypatch):
    monkeypatch.setattr(sim, "run_item", lambda task, clean: {"skipped": "test"})
    with pytest.raises(MosqaError, match="no clip could be labelled"):
        run(clean_dir, tmp_path / "o", jobs=1)
    with pytest.raises(MosqaError, match="other settings"):
        sim.simulate(clean_dir, out_dir=tmp_path / "o", per_utt=3, seed=7, codecs="none")
    with pytest.raises(MosqaError, match="no clip"):  # --overwrite starts afresh instead
        sim.simulate(clean_dir, out_dir=tmp_path / "o", per_utt=3, seed=7, codecs="none", overwrite=True)
    assert json.loads((tmp_path / "o" / "simulate.json").read_text())["per_utt"] == 3


def test_bad_clean_files_are_skipped_and_named(tmp_path, clean_dir):
    write_audio(clean_dir / "dave" / "quiet.wav", np.zeros(16000, np.float32))
    write_audio(clean_dir / "erin" / "hum.wav", (0.001 * np.random.default_rng(0).standard_normal(16000)))
    write_audio(clean_dir / "fred" / "short.wav", load_audio(BUILTIN[1])[:4800])  # 0.3 s of speech
    # Without babble, which would also draw the bad files as other clips' talkers (test_simulate_kinds).
    summary = sim.simulate(clean_dir, out_dir=tmp_path / "o", per_utt=1, seed=1, codecs="none", babble=False)
    reasons = {Path(s["source"]).name: s["reason"] for s in summary["skipped"]}
    assert reasons["quiet.wav"].startswith("silent clean file")
    assert "duration 0.30 s outside 0.5..60 s" in reasons["short.wav"]  # what prepare-list would say
    assert summary["clips"] + len(summary["skipped"]) == 6
    assert all("quiet" not in it.path.name for it in read_list(tmp_path / "o" / "all.list"))
    rows = list(csv.DictReader(open(tmp_path / "o" / "skipped.csv")))
    assert {Path(r["source"]).name for r in rows} == set(reasons) and all(r["clip"] for r in rows)


def test_a_clip_prepare_list_would_refuse_is_not_written(tmp_path, speech):
    from mosqa.prepare import validate

    path = tmp_path / "quiet.wav"
    reason = sim.write_accepted(path, speech * 1e-4)  # about -95 dBFS: 16-bit leaves (nearly) nothing
    assert reason.startswith("silent") and not path.exists()
    assert sim.write_accepted(path, speech) is None and path.is_file()
    assert validate([Item(path, 3.0)])[0]  # accepted by prepare-list's own check


def test_bad_folders_are_clear_errors(tmp_path, clean_dir):
    with pytest.raises(MosqaError, match="clean speech folder not found"):
        sim.simulate(tmp_path / "none", out_dir=tmp_path / "o")
    with pytest.raises(MosqaError, match="--noise-dir folder or list file not found"):
        sim.simulate(clean_dir, out_dir=tmp_path / "o", noise_dir=tmp_path / "nn")
    (tmp_path / "noise").mkdir()
    write_audio(tmp_path / "noise" / "zero.wav", np.zeros(1600, np.float32))
    with pytest.raises(MosqaError, match=r"zero\.wav: silent file"):
        run(clean_dir, tmp_path / "o2", noise_dir=tmp_path / "noise", jobs=1)
    (tmp_path / "noise" / "zero.wav").write_bytes(b"not audio")
    with pytest.raises(MosqaError, match=r"zero\.wav: cannot decode audio"):
        run(clean_dir, tmp_path / "o2", noise_dir=tmp_path / "noise", jobs=1)
    assert not (tmp_path / "o2").exists()  # inputs are read before anything is written
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(MosqaError, match=r"file\.txt is a file, not a folder"):
        run(clean_dir, tmp_path / "file.txt" / "sim", jobs=1)


@pytest.mark.slow
def test_cli_help_and_a_tiny_run(tmp_path, clean_dir):
    from typer.testing import CliRunner

    from cli.main import app

    help_text = CliRunner().invoke(app, ["simulate", "--help"]).output
    for flag in ("--noise-dir", "--rir-dir", "--out-dir", "--per-utt", "--seed", "--max-utts", "--jobs",
                 "--builtin", "--speaker-map", "--stoi"):
        assert flag in help_text
    write_audio(clean_dir / "dave" / "quiet.wav", np.zeros(16000, np.float32))
    args = ["--per-utt", "2", "--jobs", "1", "--no-codecs", "--stoi"]
    result = CliRunner().invoke(app, ["simulate", str(clean_dir), "--out-dir", str(tmp_path / "o"), *args])
    assert result.exit_code == 0, result.output
    assert "PESQ-WB labels" in result.output and "Label coverage per impairment kind" in result.output
    assert "skipped 2 clip(s) of" in result.output and "quiet.wav: silent clean file" in result.output
    rows = list(csv.DictReader(open(tmp_path / "o" / "meta.csv")))
    assert len(rows) == 6 and all(0 <= float(r["stoi"]) <= 1 for r in rows)
    for name in ("pesq_hist.png", "coverage.png"):
        assert (tmp_path / "o" / name).stat().st_size > 1000
    cover = {r["kind"]: r for r in csv.DictReader(open(tmp_path / "o" / "coverage.csv"))}
    for kind in [CLEAN, *DEGRADATIONS]:  # the report counts exactly the clips whose chain holds the kind
        assert int(cover[kind]["clips"]) == sum(kind in r["degradations"].split("+") for r in rows)
        assert int(cover[kind]["clips"]) == sum(int(v) for k, v in cover[kind].items() if "-" in k)
    assert int(cover["combined"]["clips"]) == sum("+" in r["degradations"] for r in rows)
    bad = CliRunner().invoke(app, ["simulate", str(clean_dir), "--builtin", "--out-dir", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "not both" in bad.output


def test_without_pyav_or_ffmpeg_only_the_numpy_codec_is_used(monkeypatch, speech):
    from mosqa import codecs
    from mosqa import degrade as dg

    monkeypatch.setattr(codecs.shutil, "which", lambda name: None)
    monkeypatch.setattr(codecs.importlib.util, "find_spec", lambda name: None)
    assert codecs.codec_backends.__wrapped__() == {}
    out, params = dg.codec(speech.astype(np.float64), np.random.default_rng(0), Sources({}, codecs=()))
    assert params["codec"] in ("mulaw", "mulaw+mulaw") and len(out) == len(speech)


@pytest.mark.parametrize("name", ["opus", "mp3", "aac", "amr-nb", "g722", "g723.1", "gsm", "codec2"])
def test_codecs_round_trip_in_process_or_through_ffmpeg(speech, name):
    from mosqa.codecs import CODECS, codec_backends, run_codec

    if name not in codec_backends():
        pytest.skip(f"{name}: neither PyAV nor ffmpeg has it here")
    c = CODECS[name]
    setting = (c.modes or c.bitrates or (None,))[0]  # the lowest bit-rate
    out = run_codec(speech * 0.5, name, setting)
    assert len(out) == len(speech) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, run_codec(speech * 0.5, name, setting))  # deterministic
    assert 1.0 < pesq_wb(speech, out) < 4.0


def test_an_output_folder_inside_the_clean_folder_is_not_read_as_speech(tmp_path, clean_dir):
    first = run(clean_dir, clean_dir / "sim", jobs=1)
    again = run(clean_dir, clean_dir / "sim", jobs=1)
    assert first["clips"] == again["clips"] == 6 and again["new_clips"] == 0


def _label(speech, degradation, ranges, rirs=None):
    src = Sources(generated_noises(seconds=2.0), rirs=rirs or {}, ranges=ranges)
    out, params = DEGRADATIONS[degradation](speech.astype(np.float64), np.random.default_rng(0), src)
    return pesq_wb(speech, out.astype(np.float32)), params


def test_harsher_clipping_and_a_reverberant_hall_score_lower(speech):
    mild_clip, _ = _label(speech, "clip", Ranges(clip=(0.9, 0.9)))
    harsh_clip, params = _label(speech, "clip", Ranges(clip=(0.02, 0.02)))
    assert params["clip_fraction"] == 0.02 and harsh_clip < mild_clip - 1.0 and harsh_clip < 2.0
    dry, _ = _label(speech, "reverb", Ranges(drr=(30.0, 30.0), room=RoomRanges(rt60=(0.1, 0.1))))
    hall, params = _label(speech, "reverb", Ranges(drr=(0.0, 0.0), room=RoomRanges(rt60=(1.5, 1.5))))
    assert params["rt60_s"] == 1.5 and hall < dry - 1.0 and hall < 2.0


@pytest.mark.parametrize("rt60", [0.3, 1.5])
def test_a_synthetic_room_decays_at_its_rt60_and_places_the_talker_by_drr(rt60):
    from scipy.signal import sosfilt

    from mosqa.rooms import OCTAVE_SOS, direct_to_reverberant_db, draw_room, room_rir

    rng = np.random.default_rng(1)
    room = draw_room(rng, RoomRanges(rt60=(rt60, rt60), length=(12.0, 12.0)), drr_db=0.0)
    rir = room_rir(rng, room)
    assert rir[0] == 1.0 and np.all(np.isfinite(rir))
    # Schroeder backward integration in the 710-1420 Hz octave, whose RT60 is the drawn one: T20.
    band = sosfilt(OCTAVE_SOS[3], rir.astype(np.float64))
    decay = np.cumsum(band[::-1] ** 2)[::-1]
    decay_db = 10 * np.log10(decay / decay[0])
    t5, t25 = np.argmax(decay_db <= -5), np.argmax(decay_db <= -25)
    assert 3 * (t25 - t5) / 16000 == pytest.approx(rt60, rel=0.15)
    near = room_rir(rng, draw_room(np.random.default_rng(1), RoomRanges(rt60=(rt60, rt60)), drr_db=20.0))
    assert direct_to_reverberant_db(near) > direct_to_reverberant_db(rir) + 5


RIRS = {"hall": np.concatenate([[1.0], 0.05 * np.random.default_rng(0).standard_normal(4000)])}
# (ranges, degradation, recorded RIRs, what the drawn parameters must show)
RANGE_CASES = [
    (Ranges(snr=(20.0, 20.5)), "noise", None, lambda p: 20.0 <= p["snr_db"] <= 20.5),
    (Ranges(clip=(0.05, 0.06)), "clip", None, lambda p: 0.05 <= p["clip_fraction"] <= 0.06),
    (Ranges(band_high=(3400.0, 3400.0), band_low=(300.0, 300.0)), "bandlimit", None,
     lambda p: (p["band_low_hz"], p["band_high_hz"]) == (300, 3400)),
    (Ranges(band_high=(2000.0, 2000.0), band_low=(0.0, 40.0)), "bandlimit", None,
     lambda p: (p["band_low_hz"], p["band_high_hz"]) == (0, 2000)),
    (Ranges(band_order=(2, 3)), "bandlimit", None, lambda p: p["band_order"] in (2, 3)),
    (Ranges(loss=(0.2, 0.2), burst=(4.0, 4.0)), "packet_loss", None,
     lambda p: p["loss_rate"] == 0.2 and p["loss_burst"] == 4.0 and p["lost_frames"] > 0),
    (Ranges(drr=(12.0, 12.0), synthetic_rooms=0.0), "reverb", RIRS,
     lambda p: p["rir"] == "hall" and p["drr_db"] == 12.0),
    (Ranges(synthetic_rooms=1.0, room=RoomRanges(rt60=(0.7, 0.7), length=(8.0, 8.0))), "reverb", RIRS,
     lambda p: p["rir"] == "synthetic" and p["rt60_s"] == 0.7 and p["room_m"].startswith("8.0x")),
    (Ranges(tandem=1.0), "codec", None, lambda p: p["codec"].count("+") == 1),
    (Ranges(tandem=0.0), "codec", None, lambda p: "+" not in p["codec"]),
    (Ranges(echo_delay=(50.0, 60.0), echo_loss=(7.0, 8.0), echo_feedback=(0.2, 0.3)), "echo", None,
     lambda p: 50 <= p["echo_delay_ms"] <= 60 and 7 <= p["echo_loss_db"] <= 8
     and 0.2 <= p["echo_feedback"] <= 0.3),
    (Ranges(talker_snr=(3.0, 4.0)), "talker", None, lambda p: 3 <= p["talker_snr_db"] <= 4),
    (Ranges(chop_length=(30.0, 30.0), chop_rate=(2.0, 2.5)), "chop", None,
     lambda p: p["chop_ms"] == 30 and 2 <= p["chop_rate_hz"] <= 2.5),
    (Ranges(suppressor_snr=(12.0, 13.0), suppressor_oversub=(2.0, 2.5), suppressor_floor=(-15.0, -14.0)),
     "suppressor", None,
     lambda p: 12 <= p["ns_snr_db"] <= 13 and 2 <= p["ns_oversub"] <= 2.5 and -15 <= p["ns_floor_db"] <= -14),
    (Ranges(speech_level=(-33.0, -32.0), agc_attack=(2.0, 3.0), agc_release=(100.0, 110.0),
            gain_step=(4.0, 5.0), gain_step_rate=(1.0, 1.0)), "gain", None,
     lambda p: -33 <= p["speech_level_dbfs"] <= -32 and (
         2 <= p["agc_attack_ms"] <= 3 and 100 <= p["agc_release_ms"] <= 110 if p["gain_mode"] == "agc"
         else 4 <= p["gain_step_db"] <= 5)),
    (Ranges(saturation_drive=(-3.0, -2.0)), "saturation", None,
     lambda p: -3 <= p["saturation_drive_db"] <= -2),
    (Ranges(hum_snr=(20.0, 21.0), dc_offset=(0.01, 0.02)), "hum", None,
     lambda p: 20 <= p["hum_snr_db"] <= 21 and 0.01 <= p["dc_offset"] <= 0.02),
]


@pytest.mark.parametrize("ranges,degradation,rirs,check", RANGE_CASES)
def test_each_range_bounds_what_its_degradation_draws(speech, ranges, degradation, rirs, check):
    for seed in range(4):
        src = Sources(generated_noises(seconds=2.0), rirs=rirs or {}, ranges=ranges, talkers=talkers(),
                      speaker="spk1")
        _, params = DEGRADATIONS[degradation](speech.astype(np.float64), np.random.default_rng(seed), src)
        assert check(params), params


def test_band_limit_slopes_follow_the_drawn_order_and_one_order_replays_the_draws_before_it():
    """Butterworth, forwards and backwards: at twice the cutoff an order n digital low-pass keeps
    1 / (1 + r^2n) of the power, twice over, r = tan(pi/4) / tan(pi/8), the frequency ratio as the bilinear
    transform warps it (order 1: -17 dB, order 8: -123 dB: the tone is gone)."""
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 4000 * t)
    src = {n: Sources({}, ranges=Ranges(band_high=(2000.0, 2000.0), band_low=(0.0, 0.0), band_order=(n, n)))
           for n in (1, 8)}
    for order, s in src.items():
        out, params = DEGRADATIONS["bandlimit"](tone, np.random.default_rng(0), s)
        kept_db = 20 * np.log10(np.std(out[2000:-2000]) / np.std(tone[2000:-2000]))
        assert params["band_order"] == order
        ratio = np.tan(np.pi / 4) / np.tan(np.pi / 8)
        expected = -20 * np.log10(1 + ratio ** (2 * order))
        assert kept_db == pytest.approx(expected, abs=0.3) if order == 1 else kept_db < -100
    # a range of one order draws nothing: the draws after the band limit are those from before the option
    gen = {n: np.random.default_rng(5) for n in ("one", "default")}
    DEGRADATIONS["bandlimit"](tone, gen["one"], Sources({}, ranges=Ranges(band_order=(4, 4))))
    DEGRADATIONS["bandlimit"](tone, gen["default"], Sources({}, ranges=Ranges()))
    assert gen["one"].random() == gen["default"].random()


def test_combine_probs_set_how_many_degradations_a_clip_gets(speech):
    src = Sources(generated_noises(seconds=2.0), ranges=Ranges(combine=(0.0, 0.0, 1.0)))
    drawn = [degrade(speech, np.random.default_rng(i), src)[1]["degradations"] for i in range(5)]
    assert {len(names.split("+")) for names in drawn} == {3}


def test_every_range_option_is_a_flag_and_reaches_the_simulation(tmp_path, clean_dir):
    from typer.testing import CliRunner

    from cli.main import app
    from mosqa.ranges import RANGE_OPTIONS, SHARE_OPTIONS

    flags = {"--snr-range": "10,20", "--drr-range": "5,6", "--rt60-range": "0.2,0.3",
             "--room-size-range": "3,4", "--synthetic-rooms": "0.25", "--clip-range": "0.1,0.2",
             "--band-high-range": "2000,3000", "--band-low-range": "100,200", "--loss-range": "0.01,0.02",
             "--burst-range": "2,3", "--tandem-prob": "0.75", "--combine-probs": "1,2,3",
             "--music-snr-range": "7,9", "--babble-snr-range": "11,13", "--babble-talkers": "2,4",
             "--clean-share": "0.125", "--call-share": "0.5", "--echo-delay-range": "10,20",
             "--echo-loss-range": "3,4", "--echo-feedback-range": "0.1,0.2", "--talker-snr-range": "5,6",
             "--chop-length-range": "8,9", "--chop-rate-range": "1,2", "--suppressor-snr-range": "14,15",
             "--suppressor-oversub-range": "1.5,2", "--suppressor-floor-range": "-20,-10",
             "--speech-level-range": "-30,-20", "--agc-attack-range": "2,4", "--agc-release-range": "50,60",
             "--gain-step-range": "5,6", "--gain-step-rate-range": "0.5,0.75",
             "--gain-fade-range": "-20,-10",
             "--saturation-drive-range": "-4,-2", "--hum-snr-range": "25,30", "--dc-offset-range": "0,0.25",
             "--recording-chain": "0.5", "--chain-level-range": "-30,-25", "--chain-eq-freq-range": "200,300",
             "--chain-eq-gain-range": "-2,2", "--chain-eq-q-range": "1,2", "--chain-highpass-range": "50,60",
             "--fault-share": "0.25", "--aliasing-rate-range": "5000,6000", "--dropout-length-range": "90,95",
             "--band-order-range": "2,3"}
    assert set(flags) == {o for o, *_ in RANGE_OPTIONS.values()} | set(SHARE_OPTIONS.values()) | {
        "--combine-probs"}
    args = [a for pair in flags.items() for a in pair]
    result = CliRunner().invoke(app, ["simulate", str(clean_dir), "-o", str(tmp_path / "o"), "-k", "1",
                                      "--max-utts", "1", "-j", "1", "--codecs", "none", *args])
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "o" / "simulate.json").read_text())["ranges"]
    assert stored == {"snr": [10, 20], "drr": [5, 6], "room": {"rt60": [0.2, 0.3], "length": [3, 4]},
                      "synthetic_rooms": 0.25, "clip": [0.1, 0.2], "band_high": [2000, 3000],
                      "band_low": [100, 200], "loss": [0.01, 0.02], "burst": [2, 3], "tandem": 0.75,
                      "combine": [1, 2, 3], "music_snr": [7, 9], "babble_snr": [11, 13],
                      "babble_talkers": [2, 4], "clean_share": 0.125, "call_share": 0.5,
                      "echo_delay": [10, 20], "echo_loss": [3, 4], "echo_feedback": [0.1, 0.2],
                      "talker_snr": [5, 6], "chop_length": [8, 9], "chop_rate": [1, 2],
                      "suppressor_snr": [14, 15], "suppressor_oversub": [1.5, 2],
                      "suppressor_floor": [-20, -10], "speech_level": [-30, -20], "agc_attack": [2, 4],
                      "agc_release": [50, 60], "gain_step": [5, 6], "gain_step_rate": [0.5, 0.75],
                      "gain_fade": [-20, -10],
                      "saturation_drive": [-4, -2], "hum_snr": [25, 30], "dc_offset": [0, 0.25],
                      "recording_chain": 0.5, "chain_level": [-30, -25], "chain_eq_freq": [200, 300],
                      "chain_eq_gain": [-2, 2], "chain_eq_q": [1, 2], "chain_highpass": [50, 60],
                      "fault_share": 0.25, "aliasing_rate": [5000, 6000], "dropout_length": [90, 95],
                      "band_order": [2, 3]}
    bounds = {o: (low, high) for o, low, high in RANGE_OPTIONS.values()}
    for flag in flags:  # reversed, out of range, not finite: one line naming the option, exit 2
        bads = ["0.9,0.1", "nan,1", "1,inf"] if "," in flags[flag] else ["1.5", "nan"]
        bads = ["-1,1,1"] if flag == "--combine-probs" else bads
        if flag in bounds and np.isfinite(bounds[flag][1]):  # above its highest
            bads.append(f"{bounds[flag][0]:g},{bounds[flag][1] * 2 + 1:g}")
        for bad in bads:
            result = CliRunner().invoke(app, ["simulate", str(clean_dir), "-o", str(tmp_path / "x"), flag,
                                              bad])
            assert result.exit_code == 2 and "Traceback" not in result.output, (flag, bad)
            assert result.output.strip().splitlines()[-1].startswith(f"error: {flag} "), (flag, bad)
    assert not (tmp_path / "x" / "wav").exists()


def test_codec_sets_and_names(monkeypatch):
    from mosqa import codecs

    monkeypatch.setattr(codecs, "codec_backends", lambda: {"opus": "pyav", "gsm": "ffmpeg"})
    assert codecs.select_codecs("in-process") == ("opus",)
    assert codecs.select_codecs("all") == ("opus", "gsm") and codecs.select_codecs("none") == ()
    assert codecs.select_codecs("gsm") == ("gsm",)
    with pytest.raises(MosqaError, match="expected none, in-process, all or names"):
        codecs.select_codecs("bogus")
    with pytest.raises(MosqaError, match="codec2 not available here"):
        codecs.select_codecs("opus,codec2")


# ---------------------------------------------------------------- campaign options (issue 19)
# noise/RIR/music as folders or lists, the babble, music and clean kinds, meta.csv's diagnostic columns,
# and what a resumed run must match.
SPEAKERS = ("spk1", "spk2", "spk3", "spk4", "spk5")


def talkers(speakers=SPEAKERS) -> dict:
    """The built-in speech as babble's pool: speaker -> files."""
    return {s: tuple(str(p) for p in BUILTIN if p.parent.name == s) for s in speakers}


def full_sources(**kw) -> Sources:
    """Sources that can supply every kind (music: a generated noise stands in for a tune)."""
    noises = generated_noises(seconds=2.0)
    kw = {"music": {"tune": noises["pink"]}, "talkers": talkers(), "speaker": "spk1"} | kw
    return Sources(noises, **kw)


@pytest.fixture
def crowd_dir(clean_dir):
    """test_simulate's three speakers and two more: enough for babble (the clip's own speaker left out)."""
    for spk, src in (("dave", BUILTIN[6]), ("erin", BUILTIN[18])):
        (clean_dir / spk).mkdir()
        shutil.copy(src, clean_dir / spk / "u1.flac")
    return clean_dir


@pytest.fixture
def sounds(tmp_path):
    """A folder of three recordings (a, b, sub/c) and a list naming two of them, c held out."""
    root = tmp_path / "sounds"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(("a", "b", "sub/c")):
        write_audio(root / f"{name}.wav", 0.1 * rng.standard_normal(16000 + 4000 * i))
    listed = tmp_path / "lists" / "keep.list"
    listed.parent.mkdir()
    listed.write_text("# held out: sub/c.wav\n../sounds/a.wav\n\n../sounds/b.wav\n")
    return root, listed


def test_the_registry_lists_each_kind_once_with_weight_and_columns():
    assert list(WEIGHTS) == list(COLUMNS) == list(DEGRADATIONS)
    assert set(NEEDS) <= set(DEGRADATIONS)
    names = list(DEGRADATIONS)
    # additive sounds after the room and before clipping, like a real chain
    assert names.index("reverb") < names.index("babble") < names.index("clip")
    assert names.index("reverb") < names.index("music") < names.index("clip")
    columns = [c for cs in COLUMNS.values() for c in cs]
    assert len(columns) == len(set(columns))  # no column is filled by two kinds


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_each_kind_reports_only_its_declared_columns(speech, name):
    seen = set()
    src = full_sources(ranges=Ranges(gain_fade=(-20.0, 0.0)))  # fades are drawn only where asked for
    for seed in range(6):
        _, params = DEGRADATIONS[name](speech.astype(np.float64), np.random.default_rng(seed), src)
        assert set(params) <= set(COLUMNS[name]), params
        seen |= set(params)
    assert seen == set(COLUMNS[name]) or name == "reverb"  # a recorded room has no room geometry


def test_music_babble_and_a_talker_are_drawn_only_when_they_can_be(speech):
    assert usable(full_sources()) == list(DEGRADATIONS)
    assert "music" not in usable(full_sources(music={}))
    assert "babble" not in usable(full_sources(talkers=talkers(SPEAKERS[:3])))  # 3 speakers: too few
    assert "babble" not in usable(full_sources(babble=False))  # --no-babble: the talker stays
    assert "talker" in usable(full_sources(babble=False, talkers=talkers(SPEAKERS[:2])))
    assert "talker" not in usable(full_sources(talkers=talkers(SPEAKERS[:1])))  # only the clip's own
    src = full_sources(music={}, talkers={}, ranges=Ranges(clean_share=0.0, call_share=0.5, fault_share=0.5))
    drawn = {n for i in range(80) for n in degrade(speech, np.random.default_rng(i), src)[1]["degradations"]
             .split("+")}
    assert drawn == set(DEGRADATIONS) - {"music", "babble", "talker"}


def test_babble_never_uses_the_clips_own_speaker(speech):
    ranges = Ranges(babble_talkers=(3, 8), babble_snr=(10.0, 10.0 + 1e-9))
    for own in SPEAKERS:
        for seed in range(5):
            src = full_sources(speaker=own, ranges=ranges)
            out, params = babble(speech.astype(np.float64), np.random.default_rng(seed), src)
            used = params["babble_speakers"].split("+")
            # four others: all of them, however many were asked for
            assert own not in used and len(used) == params["babble_talkers"] == 4
            crowd = out - speech
            assert 10 * np.log10(np.mean(speech ** 2) / np.mean(crowd ** 2)) == pytest.approx(10.0, abs=0.01)
    few = full_sources(ranges=Ranges(babble_talkers=(2, 2)))
    assert babble(speech.astype(np.float64), np.random.default_rng(0), few)[1]["babble_talkers"] == 2


def test_a_babble_talker_that_cannot_be_read_is_named(tmp_path, speech):
    write_audio(tmp_path / "quiet.wav", np.zeros(16000, np.float32))
    src = full_sources(talkers={s: (str(tmp_path / "quiet.wav"),) for s in SPEAKERS})
    with pytest.raises(MosqaError, match=r"quiet\.wav: silent babble talker"):
        babble(speech.astype(np.float64), np.random.default_rng(0), src)


def test_clipped_share_is_measured_not_the_drawn_level(speech):
    shares = []
    for level in (0.9, 0.3, 0.05):
        out, params = clip(speech.astype(np.float64), np.random.default_rng(0), full_sources(
            ranges=Ranges(clip=(level, level))))
        limit = level * np.max(np.abs(speech))
        assert params["clipped_share"] == pytest.approx(np.mean(np.abs(out) >= limit), abs=1e-4)
        shares.append(params["clipped_share"])
    assert 0 < shares[0] < shares[1] < shares[2] < 1
    assert shares[2] != 0.05  # not the drawn level


def test_clean_share_leaves_clips_undegraded(speech):
    src = full_sources(ranges=Ranges(clean_share=1.0))
    out, params = degrade(speech, np.random.default_rng(0), src)
    assert params == {"degradations": CLEAN} and np.array_equal(out, speech)
    none = full_sources(ranges=Ranges(clean_share=0.0))
    assert all(degrade(speech, np.random.default_rng(i), none)[1]["degradations"] != CLEAN for i in range(40))


def test_a_list_file_restricts_the_recordings_drawn(tmp_path, sounds, crowd_dir):
    folder, listed = sounds
    assert set(sim.load_source(str(folder))) == {"a", "b", "sub/c"}
    assert set(sim.load_source(str(listed))) == {"a", "b"}  # names as the folder gives them
    ranges = Ranges(combine=(0.0, 0.0, 1.0), synthetic_rooms=0.0, clean_share=0.0)
    summary = sim.simulate(crowd_dir, out_dir=tmp_path / "o", noise_dir=listed, rir_dir=listed,
                           music_dir=listed, per_utt=4, seed=1, codecs="none", ranges=ranges, babble=False)
    rows = list(csv.DictReader(open(tmp_path / "o" / "meta.csv")))
    assert len(rows) == summary["clips"] == 20
    for column in ("noise", "rir", "music"):
        drawn = {r[column] for r in rows} - {""}
        assert drawn and drawn <= {"a", "b"}, column  # sub/c is held out
    assert summary["sources"]["noise"] == str(listed.resolve())


def test_a_bad_list_line_is_one_line_naming_it(tmp_path, sounds, crowd_dir):
    folder, listed = sounds
    listed.write_text("../sounds/a.wav\n../sounds/gone.wav\n")
    for option in ("--noise-dir", "--rir-dir", "--music-dir"):
        result = run_cli("simulate", crowd_dir, "-o", tmp_path / "o", option, listed)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        error = result.output.splitlines()[-1]  # after the codecs line
        assert error.startswith("error: ") and f"{listed}:2: no such audio file" in error
    listed.write_text("../sounds/a.wav\n../sounds/a.wav 3.5 extra\n")
    result = run_cli("simulate", crowd_dir, "-o", tmp_path / "o", "--noise-dir", listed)
    assert result.exit_code == 2 and "keep.list:2:" in result.output
    write_audio(folder / "silent.wav", np.zeros(16000, np.float32))
    listed.write_text("# one silent file\n../sounds/silent.wav\n")
    with pytest.raises(MosqaError, match=r"keep\.list:2: .*silent\.wav: silent file"):
        sim.simulate(crowd_dir, out_dir=tmp_path / "o", music_dir=listed)
    with pytest.raises(MosqaError, match="--music-dir folder or list file not found"):
        sim.simulate(crowd_dir, out_dir=tmp_path / "o", music_dir=tmp_path / "none.list")
    assert not (tmp_path / "o").exists()


def test_music_babble_and_clean_clips_carry_their_columns(tmp_path, sounds, crowd_dir):
    folder, _ = sounds
    ranges = Ranges(clean_share=0.25, combine=(0.0, 0.5, 0.5), music_snr=(20.0, 30.0),
                    babble_snr=(12.0, 18.0), babble_talkers=(2, 3))
    summary = sim.simulate(crowd_dir, out_dir=tmp_path / "o", music_dir=folder, per_utt=8, seed=2,
                           codecs="none", ranges=ranges, jobs=1)
    rows = list(csv.DictReader(open(tmp_path / "o" / "meta.csv")))
    header = rows[0].keys()
    assert {c for cs in COLUMNS.values() for c in cs} <= set(header)  # every kind's, drawn or not
    kinds = {r["wav"]: r["degradations"].split("+") for r in rows}
    by_kind = {kind: [r for r in rows if kind in kinds[r["wav"]]] for kind in [CLEAN, *DEGRADATIONS]}
    assert by_kind["music"] and by_kind["babble"] and by_kind[CLEAN]
    for r in by_kind["music"]:
        assert r["music"] in {"a", "b", "sub/c"} and 20 <= float(r["music_snr_db"]) <= 30
    for r in by_kind["babble"]:
        used = r["babble_speakers"].split("+")
        assert int(r["babble_talkers"]) == len(used) in (2, 3) and 12 <= float(r["babble_snr_db"]) <= 18
        assert r["speaker"] not in used and set(used) <= {"alice", "bob", "carol", "dave", "erin"}
    for r in by_kind[CLEAN]:
        assert kinds[r["wav"]] == [CLEAN] and float(r["pesq"]) > 4.4
        assert not any(r[c] for cs in COLUMNS.values() for c in cs)  # nothing was drawn for it
    for r in by_kind["clip"]:
        assert 0 < float(r["clipped_share"]) <= 1 and r["clip_fraction"]
    for r in rows:
        numbers = ("snr_db", "music_snr_db", "babble_snr_db", "clipped_share", "pesq")
        assert all(np.isfinite(float(r[c])) for c in numbers if r[c])
    cover = {r["kind"]: r for r in summary["coverage"]}
    assert list(cover) == [CLEAN, *DEGRADATIONS, "combined"]
    for kind in (CLEAN, "music", "babble"):
        assert cover[kind]["clips"] == len(by_kind[kind])
    assert cover[CLEAN]["alone"] == len(by_kind[CLEAN])
    stored = json.loads((tmp_path / "o" / "simulate.json").read_text())
    assert stored["music_dir"] == str(folder.resolve()) and stored["babble"] is True
    assert stored["ranges"]["babble_talkers"] == [2, 3] and stored["ranges"]["clean_share"] == 0.25
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["ranges"]["music_snr"] == [20, 30]


@pytest.mark.slow
def test_same_seed_same_corpus_with_babble_music_and_clean_clips_with_any_jobs(tmp_path, sounds, crowd_dir):
    folder, listed = sounds
    kw = dict(per_utt=4, seed=5, noise_dir=listed, music_dir=folder, codecs="none",
              ranges=Ranges(clean_share=0.2, combine=(0.3, 0.4, 0.3)))
    sim.simulate(crowd_dir, out_dir=tmp_path / "a", jobs=1, **kw)
    sim.simulate(crowd_dir, out_dir=tmp_path / "b", jobs=2, **kw)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    rows = csv.DictReader(open(tmp_path / "a" / "meta.csv"))
    drawn = {k for r in rows for k in r["degradations"].split("+")}
    assert {"babble", "music", CLEAN} <= drawn


def test_resuming_with_other_campaign_options_is_refused(tmp_path, sounds, crowd_dir, monkeypatch):
    folder, listed = sounds
    monkeypatch.setattr(sim, "run_item", lambda task, clean: {"skipped": "test"})  # only settings matter
    monkeypatch.setattr(sim, "_finish", lambda *a: {})
    base = dict(per_utt=1, seed=0, codecs="none")
    sim.simulate(crowd_dir, out_dir=tmp_path / "o", music_dir=folder, **base)
    for other in (dict(music_dir=listed), dict(music_dir=None), dict(babble=False),
                  dict(ranges=Ranges(clean_share=0.1)), dict(ranges=Ranges(babble_talkers=(3, 4))),
                  dict(ranges=Ranges(music_snr=(0.0, 10.0))), dict(noise_dir=listed)):
        with pytest.raises(MosqaError, match="other settings"):
            sim.simulate(crowd_dir, out_dir=tmp_path / "o", **({"music_dir": folder} | base | other))
    # A folder simulated before these options existed resumes when they are off, and only then.
    old = Ranges(clean_share=0.0, call_share=0.0)
    sim.simulate(crowd_dir, out_dir=tmp_path / "old", babble=False, ranges=old, **base)
    settings = json.loads((tmp_path / "old" / "simulate.json").read_text())
    for key in ("music_dir", "babble"):
        del settings[key]
    for key in ("music_snr", "babble_snr", "babble_talkers", "clean_share", "call_share", *CALL_RANGES):
        del settings["ranges"][key]
    (tmp_path / "old" / "simulate.json").write_text(json.dumps(settings))
    sim.simulate(crowd_dir, out_dir=tmp_path / "old", babble=False, ranges=old, **base)
    with pytest.raises(MosqaError, match="other settings"):
        sim.simulate(crowd_dir, out_dir=tmp_path / "old", **base)  # babble, clean clips and call kinds on
    with pytest.raises(MosqaError, match="other settings"):
        sim.simulate(crowd_dir, out_dir=tmp_path / "old", babble=False, ranges=Ranges(clean_share=0.0),
                     **base)


def test_campaign_options_are_flags_that_reach_the_simulation(tmp_path, sounds, crowd_dir):
    folder, listed = sounds
    result = run_cli("simulate", crowd_dir, "-o", tmp_path / "o", "-k", "1", "-j", "1", "--codecs", "none",
                     "--noise-dir", listed, "--rir-dir", listed, "--music-dir", folder, "--no-babble",
                     "--music-snr-range", "1,2", "--babble-snr-range", "3,4", "--babble-talkers", "4,5",
                     "--clean-share", "0.5")
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "o" / "simulate.json").read_text())
    assert (stored["noise_dir"], stored["rir_dir"], stored["music_dir"], stored["babble"]) == (
        str(listed.resolve()), str(listed.resolve()), str(folder.resolve()), False)
    assert {k: stored["ranges"][k] for k in ("music_snr", "babble_snr", "babble_talkers", "clean_share")} == {
        "music_snr": [1, 2], "babble_snr": [3, 4], "babble_talkers": [4, 5], "clean_share": 0.5}
    for flag, bad in (("--babble-talkers", "3.5,4"), ("--babble-talkers", "0,3"), ("--clean-share", "1.5"),
                      ("--music-snr-range", "9,1"), ("--babble-snr-range", "x")):
        result = run_cli("simulate", crowd_dir, "-o", tmp_path / "x", flag, bad)
        assert result.exit_code == 2 and flag in result.output and "Traceback" not in result.output, flag


# ---------------------------------------------------------------- the impairments of real calls (issue 29)
CALL_RANGES = ("echo_delay", "echo_loss", "echo_feedback", "talker_snr", "chop_length", "chop_rate",
               "suppressor_snr", "suppressor_oversub", "suppressor_floor", "speech_level", "agc_attack",
               "agc_release", "gain_step", "gain_step_rate", "saturation_drive", "hum_snr", "dc_offset")
# What degrade drew for seeds 0-7 (speech, full_sources(), call share 0) before the call kinds existed.
BEFORE_CALLS = [("reverb", "drr_db", -1.76), ("noise+music+packet_loss", "music_snr_db", 26.98),
                ("codec", "codec", "mulaw+mulaw"), ("codec", "codec", "mulaw"),
                ("packet_loss", "loss_burst", 4.04),
                ("noise+music", "snr_db", 24.17), ("babble", "babble_snr_db", 10.07),
                ("noise+codec+packet_loss", "loss_rate", 0.034)]


def test_every_call_kind_is_registered_with_ranges_and_a_target():
    from mosqa.diagnostics import CALL_TARGETS, TARGETS
    from mosqa.ranges import RANGE_OPTIONS

    assert set(CALL_KINDS) < set(DEGRADATIONS) and set(CALL_RANGES) <= set(RANGE_OPTIONS)
    targets = {column for t in CALL_TARGETS.values() for column in t.columns}
    for kind in CALL_KINDS:  # one number a kind describes it
        assert len(targets & set(COLUMNS[kind])) == 1, kind
    assert not set(CALL_TARGETS) & set(TARGETS)


def test_call_share_zero_replays_a_simulation_from_before_the_call_kinds(speech):
    src = full_sources(ranges=Ranges(call_share=0.0))
    for seed, (kinds, column, value) in enumerate(BEFORE_CALLS):
        params = degrade(speech, np.random.default_rng(seed), src)[1]
        assert (params["degradations"], params[column]) == (kinds, value), seed


def test_call_share_is_the_share_of_clips_with_a_call_kind_alone_or_combined(speech):
    def drawn(share, combine=(0.6, 0.28, 0.12), n=300):
        src = full_sources(ranges=Ranges(clean_share=0.0, call_share=share, combine=combine))
        return [set(degrade(speech[:16000], np.random.default_rng(i), src)[1]["degradations"].split("+"))
                for i in range(n)]

    carrying = [bool(kinds & set(CALL_KINDS)) for kinds in drawn(0.3)]
    assert np.mean(carrying) == pytest.approx(0.3, abs=0.06)
    assert not any(kinds & set(CALL_KINDS) for kinds in drawn(0.0, n=100))
    triples = drawn(1.0, combine=(0.0, 0.0, 1.0), n=60)
    assert all(len(kinds) == 3 and kinds & set(CALL_KINDS) for kinds in triples)
    assert any(kinds - set(CALL_KINDS) for kinds in triples)  # with the older kinds too
    assert {k for kinds in triples for k in kinds} >= set(CALL_KINDS)


@pytest.mark.slow
def test_every_call_kind_is_simulated_labelled_against_the_clean_talker_and_reproducible(tmp_path, crowd_dir):
    kw = dict(per_utt=12, seed=3, codecs="none", ranges=Ranges(clean_share=0.0, call_share=1.0))
    summary = sim.simulate(crowd_dir, out_dir=tmp_path / "a", jobs=1, **kw)
    sim.simulate(crowd_dir, out_dir=tmp_path / "b", jobs=2, **kw)
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    rows = list(csv.DictReader(open(tmp_path / "a" / "meta.csv")))
    assert {c for k in CALL_KINDS for c in COLUMNS[k]} <= set(rows[0])
    kinds = [set(r["degradations"].split("+")) for r in rows]
    assert all(k & set(CALL_KINDS) for k in kinds) and set().union(*kinds) >= set(CALL_KINDS)
    cover = {r["kind"]: r for r in summary["coverage"]}
    for kind in CALL_KINDS:
        assert cover[kind]["clips"] == sum(kind in k for k in kinds) > 0
    for r in rows:
        clean, wav = load_audio(tmp_path / "a" / r["clean"]), load_audio(tmp_path / "a" / r["wav"])
        if r["talker"]:
            assert r["talker"] != r["speaker"] and r["talker"] in {"alice", "bob", "carol", "dave", "erin"}
        if r["chop_mode"] == "delete":
            assert len(clean) - len(wav) == round(float(r["chop_total_ms"]) * 16)
        else:
            assert len(wav) == len(clean)
        if r["talker"] or r["echo_mode"]:  # the label: PESQ against the clean talker alone (of the clip
            # before it was written in 16 bits, which moves PESQ by a few hundredths)
            assert float(r["pesq"]) == pytest.approx(pesq_wb(clean, wav), abs=0.05)
