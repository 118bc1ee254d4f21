"""DNSMOS must reproduce Microsoft's reference: golden numbers and mel arrays were computed once by the
reference (speechmos 0.0.1.1 + librosa 0.11, recipes/bench/dnsmos_reference.py golden) on the fixtures
here."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mosqa import dnsmos, sigmos
from mosqa.audio import load_audio
from mosqa.errors import MosqaError

FIXTURES = Path(__file__).parent / "fixtures" / "dnsmos"
GOLDEN = json.loads((FIXTURES / "golden.json").read_text())["scores"]
MEL = np.load(FIXTURES / "mel_reference.npz")
MODES = {"normal": False, "personalized": True}
SHORT_FIXTURES = sorted(name for name in GOLDEN["normal"] if name != "speech_60s.flac")
SKIPPED_HOPS = list(range(7, 24))  # of the 51 hops of a 60 s clip, per DNS-Challenge issue #130
TOL = 1e-4


@pytest.fixture(scope="module")
def scorers():
    return {mode: dnsmos.Scorer(personalized=p) for mode, p in MODES.items()}


@pytest.fixture(scope="module")
def long_clip():
    return load_audio(FIXTURES / "speech_60s.flac")


def assert_matches(got: dict, expected: dict):
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=TOL), key


# ---------------------------------------------------------------- features
def test_filterbank_equals_librosa_slaney():
    assert dnsmos.mel_filterbank().shape == (120, 161)
    np.testing.assert_allclose(dnsmos.mel_filterbank(), MEL["filterbank"], rtol=0, atol=1e-7)


def test_mel_power_and_scaled_db_equal_librosa():
    power = dnsmos.mel_power(MEL["signal"])
    assert power.shape == MEL["power"].shape == (20, 120)  # centred, odd n_fft: 1 + (3200 + 320 - 321) // 160
    np.testing.assert_allclose(power, MEL["power"], rtol=1e-5, atol=1e-6 * MEL["power"].max())
    np.testing.assert_allclose(dnsmos.log_mel(MEL["signal"]), MEL["features"], rtol=0, atol=1e-5)


def test_p808_features_shape_and_top_db_floor():
    feats = dnsmos.p808_features(load_audio(FIXTURES / "speech_10s.flac")[: dnsmos.SEGMENT])
    assert feats.shape == (900, 120) and feats.dtype == np.float32
    assert feats.max() == pytest.approx(1.0)  # 0 dB at the maximum -> (0 + 40) / 40
    assert feats.min() >= 1.0 - 80 / 40 - 1e-6
    silence = dnsmos.p808_features(np.zeros(dnsmos.SEGMENT, np.float32))
    assert np.all(silence == 1.0)  # the reference's ref=max of an all-zero spectrogram


# ---------------------------------------------------------------- segmenting
def test_reference_skips_hops_7_to_23_of_a_60s_clip():
    n = 60 * dnsmos.FS
    assert dnsmos.num_hops(n) == 51
    default = [a // dnsmos.HOP for a, _ in dnsmos.segment_bounds(n)]
    every = [a // dnsmos.HOP for a, _ in dnsmos.segment_bounds(n, all_hops=True)]
    assert every == list(range(51))
    assert sorted(set(every) - set(default)) == SKIPPED_HOPS
    assert all(b - a == dnsmos.SEGMENT for a, b in dnsmos.segment_bounds(n, all_hops=True))


def test_short_clips_are_doubled_and_empty_ones_refused():
    clip = np.arange(8000, dtype=np.float32)  # 0.5 s
    full = dnsmos.repeat_short(clip)
    assert full.size == 8000 * 32 and np.array_equal(full[8000:16000], clip)
    assert dnsmos.repeat_short(np.ones(dnsmos.SEGMENT)).size == dnsmos.SEGMENT
    with pytest.raises(MosqaError, match="empty"):
        dnsmos.repeat_short(np.zeros(0, np.float32))


# ---------------------------------------------------------------- golden numbers
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", SHORT_FIXTURES)
def test_matches_reference(scorers, mode, name):
    got = scorers[mode].score(load_audio(FIXTURES / name), dnsmos.FS)
    assert_matches(got, GOLDEN[mode][name])


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_on_60s_clip_with_skipped_hops(scorers, mode, long_clip):
    assert_matches(scorers[mode].score(long_clip, dnsmos.FS), GOLDEN[mode]["speech_60s.flac"])


def test_module_score_function_uses_reference_settings():
    name = "speech_3s.flac"
    assert_matches(dnsmos.score(load_audio(FIXTURES / name), 16000), GOLDEN["normal"][name])


def test_all_hops_adds_exactly_the_skipped_segment(scorers, long_clip):
    clip = long_clip[: 17 * dnsmos.FS]  # 8 hops; the reference skips hop 7, the first of 7-23
    every = dnsmos.Scorer(all_hops=True).score(clip)
    default = scorers["normal"].score(clip)
    hop7 = scorers["normal"].score(clip[7 * dnsmos.FS: 7 * dnsmos.FS + dnsmos.SEGMENT])
    for key in ("OVRL_raw", "SIG", "BAK", "P808_MOS"):
        assert every[key] == pytest.approx((7 * default[key] + hop7[key]) / 8, abs=1e-6), key
        assert abs(every[key] - default[key]) > 10 * TOL, key
    assert every["num_hops"] == default["num_hops"] == 8


def test_all_hops_equals_default_when_nothing_is_skipped(scorers):
    audio = load_audio(FIXTURES / "speech_10s.flac")
    assert dnsmos.Scorer(all_hops=True).score(audio) == scorers["normal"].score(audio)


def test_any_rate_is_resampled_and_odd_input_refused(scorers):
    t = np.arange(3 * 44100) / 44100
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    row = scorers["normal"].score(tone, 44100)
    assert row["len_in_sec"] == pytest.approx(3.0) and row["sr"] == 16000 and 1 <= row["OVRL"] <= 5
    with pytest.raises(MosqaError, match="NaN"):
        scorers["normal"].score(np.full(16000, np.nan, np.float32), 16000)
    with pytest.raises(MosqaError, match="mono"):
        scorers["normal"].score(np.zeros((2, 16000), np.float32), 16000)
    with pytest.raises(MosqaError, match="empty"):  # the reference would loop forever
        scorers["normal"].score(np.zeros(0, np.float32), 44100)


# ---------------------------------------------------------------- files, CLI, pool
def bad_and_good_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in ("a_empty.wav", "b_corrupt.wav", "c_nan.wav", "d_short.wav",
                                              "e_stereo44k.flac")}
    sf.write(files["a_empty.wav"], np.zeros(0, np.float32), 16000)
    files["b_corrupt.wav"].write_bytes(b"RIFF" + bytes(range(256)))
    sf.write(files["c_nan.wav"], np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    t = np.arange(8000) / 16000
    sf.write(files["d_short.wav"], 0.3 * np.sin(2 * np.pi * 440 * t), 16000)
    t = np.arange(3 * 44100) / 44100
    stereo = 0.2 * np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)], axis=1)
    sf.write(files["e_stereo44k.flac"], stereo, 44100)
    return files


def test_collect_inputs_walks_folders_and_lists(tmp_path):
    files = bad_and_good_files(tmp_path / "in" / "sub")
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    listed = tmp_path / "files.txt"
    listed.write_text("in/sub/d_short.wav\n")
    found = dnsmos.collect_inputs([tmp_path / "in"], [listed])
    assert found == sorted(files.values()) + [files["d_short.wav"]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(MosqaError, match="no audio files"):
        dnsmos.collect_inputs([tmp_path / "empty"])


@pytest.mark.slow
def test_cli_reports_bad_files_and_scores_the_rest(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    files = bad_and_good_files(tmp_path / "in")
    out, summary = tmp_path / "scores.csv", tmp_path / "summary.json"
    result = CliRunner().invoke(app, ["dnsmos", str(tmp_path / "in"), "--out", str(out), "--summary-json",
                                      str(summary), "--jobs", "1", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["filename"]).name for r in rows] == sorted(files)
    assert list(rows[0]) == dnsmos.COLUMNS + ["P808_MOS", "warning", "error"]
    reasons = {Path(r["filename"]).name: r["error"] for r in rows}
    assert "empty" in reasons["a_empty.wav"] and "cannot decode" in reasons["b_corrupt.wav"]
    assert "NaN" in reasons["c_nan.wav"] and "a_empty.wav" in reasons["a_empty.wav"]
    assert reasons["d_short.wav"] == reasons["e_stereo44k.flac"] == ""
    short = next(r for r in rows if r["filename"].endswith("d_short.wav"))
    assert "shorter than 1 s" in short["warning"]
    assert float(short["len_in_sec"]) == 0.5 and int(short["num_hops"]) == 7
    stats = json.loads(summary.read_text())
    assert stats["files"] == 5 and stats["scores"]["OVRL"]["count"] == 2


@pytest.mark.slow
def test_process_pool_keeps_input_order_and_scores(tmp_path):
    names = ["speech_3s.flac", "white_noise_10s.flac", "silence_10s.flac"]
    paths = [FIXTURES / n for n in names] + [tmp_path / "missing.wav"]
    rows = dnsmos.score_files(paths, jobs=2, device="cpu", p808=False)
    assert [r["filename"] for r in rows] == [str(p) for p in paths]
    for name, row in zip(names, rows, strict=False):
        assert_matches(row, {k: v for k, v in GOLDEN["normal"][name].items() if k != "P808_MOS"})
    assert "no such audio file" in rows[-1]["error"]


def test_pool_only_for_many_files_on_cpu(monkeypatch):
    monkeypatch.setattr(dnsmos, "available_cpus", lambda: 4)
    assert dnsmos.plan_jobs(10, None, "cpu") == (1, 4)
    assert dnsmos.plan_jobs(dnsmos.POOL_MIN_FILES, None, "cpu") == (4, 1)
    assert dnsmos.plan_jobs(1000, None, "cuda") == (1, 4)
    assert dnsmos.plan_jobs(1000, 2, "cpu") == (2, 2) and dnsmos.plan_jobs(3, 8, "cpu") == (3, 1)


def test_csv_written_atomically_with_the_same_header_whatever_the_files(tmp_path):
    good = {"filename": "a.wav", **GOLDEN["normal"]["speech_3s.flac"]}
    dnsmos.write_csv(tmp_path / "ok.csv", [good], dnsmos.output_columns())
    header, row = (tmp_path / "ok.csv").read_text().splitlines()
    assert header == ",".join(dnsmos.COLUMNS + ["P808_MOS", "warning", "error"]) and row.endswith(",,")
    assert list(tmp_path.iterdir()) == [tmp_path / "ok.csv"]  # no temporary left behind


def test_summary_has_mean_std_and_confidence_interval():
    rows = [{"OVRL": 2.0}, {"OVRL": 4.0}, {"error": "x"}]
    s = dnsmos.summarize(rows, dnsmos.output_columns())["OVRL"]
    assert s["count"] == 2 and s["mean"] == 3.0 and s["std"] == pytest.approx(np.sqrt(2))
    assert s["ci95_low"] < 3.0 < s["ci95_high"]


def test_missing_model_dir_and_cuda_without_provider_are_user_errors(tmp_path):
    with pytest.raises(MosqaError, match="no such ONNX model"):
        dnsmos.Scorer(model_dir=tmp_path)
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(MosqaError, match="CUDAExecutionProvider"):
            dnsmos.Scorer(device="cuda")


@pytest.mark.parametrize("engine_args", [["--device", "cpu"], ["--engine", "onnx", "--device", "auto"]])
def test_dnsmos_never_imports_torch(tmp_path, engine_args):
    """Not with the onnx engine, nor when auto chooses it (on CPU) or is deciding."""
    clip = tmp_path / "tone.wav"
    sf.write(clip, 0.1 * np.sin(np.arange(10 * 16000) / 5), 16000)  # 10 s: one segment
    code = (
        "import sys\n"
        "import mosqa.dnsmos, mosqa.sigmos\n"
        "assert 'torch' not in sys.modules, 'import mosqa.dnsmos loaded torch'\n"
        "from typer.testing import CliRunner\n"
        "from cli.main import app\n"
        "assert 'torch' not in sys.modules, 'a cli module imports torch at top level'\n"
        f"r = CliRunner().invoke(app, ['dnsmos', {str(clip)!r}, '--out', {str(tmp_path / 's.csv')!r},"
        f" '--no-p808', '--jobs', '1', *{engine_args!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "assert mosqa.dnsmos.resolve_engine('auto', 'cpu') == ('onnx', 'cpu')\n"
        "assert 'torch' not in sys.modules, 'mosqa dnsmos loaded torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- SIGMOS features
def test_sigmos_window_is_sqrt_hann_that_overlap_adds_to_one():
    w = sigmos.window()
    assert w.shape == (960,) and w[0] == 0 and w[480] == pytest.approx(1.0)
    np.testing.assert_allclose(w[:480] ** 2 + w[480:] ** 2, 1.0, atol=1e-6)


@pytest.mark.parametrize("n", [480, 481, 4800, 4999])
def test_sigmos_stft_pads_480_zeros_before_and_covers_the_end(n):
    audio = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    spec = sigmos.stft(audio)
    assert spec.shape == (-(-n // 480) + 1, 481) and spec.dtype == np.complex64
    first = np.fft.irfft(spec[0], n=960)[480:] / sigmos.window()[480:]
    np.testing.assert_allclose(first, audio[:480], atol=1e-4)
    last = np.fft.irfft(spec[-1], n=960)
    tail = n % 480 or 480
    np.testing.assert_allclose(last[960 - tail:], 0, atol=1e-5)  # zeros after the clip's end


def test_sigmos_compression_channels():
    spec = np.array([[3 + 4j, 0j]], dtype=np.complex64)
    x = sigmos.compress(spec)
    assert x.shape == (1, 3, 1, 2) and x.dtype == np.float32
    assert x[0, :, 0, 0] == pytest.approx([5**0.3, 3 * 5**-0.7, 4 * 5**-0.7], rel=1e-5)
    assert np.all(np.isfinite(x)) and x[0, 0, 0, 1] == pytest.approx(1e-12**0.15, rel=1e-4)


def test_sigmos_features_resample_to_48k():
    x = sigmos.features(np.zeros(16000, np.float32), 16000)
    assert x.shape == (1, 3, 48000 // 480 + 1, 481)


def test_sigmos_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(MosqaError, match="no_model.onnx"):
        sigmos.SigMOS(tmp_path / "no_model.onnx")
    with pytest.raises(MosqaError, match="no_model.onnx"):
        dnsmos.Scorer(sigmos_model=tmp_path / "no_model.onnx")


# A stand-in for the SIGMOS model (not obtainable here), written as raw ONNX protobuf since the onnx
# package is not installed: per-channel means of the features, twice, then their overall mean -> [1, 7].
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    value = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _float_tensor(name: str, dims) -> bytes:
    shape = b"".join(_field(1, _field(2, d) if isinstance(d, str) else _field(1, d)) for d in dims)
    return _field(1, name) + _field(2, _field(1, _field(1, 1) + _field(2, shape)))


def _node(op: str, inputs, output: str, **attrs) -> bytes:
    body = b"".join(_field(1, i) for i in inputs) + _field(2, output) + _field(4, op)
    for name, v in attrs.items():
        value = (b"".join(_field(8, i) for i in v) + _field(20, 7) if isinstance(v, list)
                 else _field(3, v) + _field(20, 2))
        body += _field(5, _field(1, name) + value)
    return body


@pytest.fixture
def fake_sigmos(tmp_path) -> Path:
    graph = (_field(1, _node("ReduceMean", ["x"], "m", axes=[2, 3], keepdims=0))
             + _field(1, _node("ReduceMean", ["m"], "g", axes=[1], keepdims=1))
             + _field(1, _node("Concat", ["m", "m", "g"], "y", axis=1))
             + _field(2, "fake_sigmos") + _field(11, _float_tensor("x", [1, 3, "T", 481]))
             + _field(12, _float_tensor("y", [1, 7])))
    path = tmp_path / "fake_sigmos.onnx"
    path.write_bytes(_field(1, 8) + _field(8, _field(1, "") + _field(2, 13)) + _field(7, graph))
    return path


def test_sigmos_columns_come_from_one_pass_over_the_48k_features(fake_sigmos):
    audio = load_audio(FIXTURES / "speech_3s.flac")
    scores = sigmos.SigMOS(fake_sigmos).score(audio, 16000)
    assert list(scores) == sigmos.COLUMNS
    means = sigmos.features(audio, 16000).mean(axis=(2, 3))[0]
    assert [scores["MOS_COL"], scores["MOS_DISC"], scores["MOS_LOUD"]] == pytest.approx(means, rel=1e-4)
    row = dnsmos.Scorer(sigmos_model=fake_sigmos).score_file(FIXTURES / "speech_3s.flac")
    assert list(row) == dnsmos.output_columns(sigmos=True)
    assert_matches(row, GOLDEN["normal"]["speech_3s.flac"] | scores)
