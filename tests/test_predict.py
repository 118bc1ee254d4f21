"""mosqa predict and the shipped model: bad inputs, rates and channels, chunking, export, determinism.

A tiny qualitynet trained in a second stands in where the test is about plumbing (export, batching,
chunks); the shipped pesq-wb model is used where its real weights matter (stereo vs mono agreement).
"""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import QA_TINY, make_corpus, run_cli

from mosqa import predict
from mosqa.audio import load_audio
from mosqa.pretrained import PRETRAINED_DIR, export, names
from mosqa.qa import load_qa
from mosqa.runs import load_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "dnsmos"
SPEECH = load_audio(FIXTURES / "speech_10s.flac")


def tiny_run(corpus, exp, *extra):
    res = run_cli("train-qa", "--train", corpus["train"], "--valid", corpus["valid"], "--exp-dir", exp,
                   *QA_TINY, "--epochs", "1", *extra)
    assert res.exit_code == 0, res.output
    return next(exp.glob("*/best.pt")).parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    return tiny_run(make_corpus(root / "corpus"), root / "exp")


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write(path, wav, sr=16000, **kw):
    sf.write(path, wav, sr, **kw)
    return path


def test_bad_inputs_get_error_rows_in_input_order_and_exit_1(run_dir, tmp_path):
    good = write(tmp_path / "good.wav", SPEECH[:32000])
    files = [
        write(tmp_path / "empty.wav", np.zeros(0, np.float32)),
        good,
        tmp_path / "missing.wav",
        write(tmp_path / "nan.wav", np.full(16000, np.nan, np.float32), subtype="FLOAT"),
        write(tmp_path / "short.wav", SPEECH[:3200]),  # 0.2 s
    ]
    files.append(write(tmp_path / "silent.wav", np.zeros(16000, np.float32)))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)))
    files.append(corrupt)
    out = tmp_path / "scores.csv"
    res = run_cli("predict", *files, "--model", run_dir, "--out", out, "--device", "cpu")
    assert res.exit_code == 1, res.output
    rows = read_rows(out)
    assert [r["filename"] for r in rows] == [str(f) for f in files]
    assert list(rows[0]) == [*predict.COLUMNS, "warning", "error"]  # a train-qa model: no listener_mos
    reasons = {"empty.wav": "empty", "missing.wav": "no such", "nan.wav": "NaN",
               "short.wav": "duration 0.20 s outside",
               "corrupt.wav": "cannot decode"}
    for row in rows:
        name = row["filename"].rsplit("/", 1)[-1]
        if name == "good.wav":
            assert row["error"] == row["warning"] == "" and 1 <= float(row["score"]) <= 5
            assert row["num_chunks"] == "1"
        elif name == "silent.wav":  # scored, but flagged: PESQ needs speech
            assert row["error"] == "" and row["score"] and "silent" in row["warning"]
        else:
            assert reasons[name] in row["error"] and row["score"] == "", row
    assert "5 of 7 file(s) could not be scored" in res.output


def test_a_clip_scores_the_same_alone_and_padded_in_a_batch(run_dir):
    # The STFT's last frames of a padded row must see the row's own end, not the batch's zeros.
    scorer = load_qa(run_dir)
    short, long_ = torch.from_numpy(SPEECH[:16000]), torch.from_numpy(SPEECH[:48000])
    batch = torch.zeros(2, 48000)
    batch[0, :16000], batch[1] = short, long_
    with torch.inference_mode():
        alone = scorer(short[None]).item()
        together = scorer(batch, torch.tensor([16000, 48000]))
    assert together[0].item() == pytest.approx(alone, abs=1e-5)
    assert together[1].item() == pytest.approx(scorer(long_[None]).item(), abs=1e-5)


def test_three_shards_concatenate_to_the_unsharded_csv(run_dir, tmp_path):
    files = [write(tmp_path / f"{k}.wav", SPEECH[: 8000 * (k + 2)]) for k in range(5)]
    texts = []
    for spec in (None, "1/3", "2/3", "3/3"):
        out = tmp_path / f"{spec or 'all'}.csv".replace("/", "-")
        res = run_cli("predict", *files, "--model", run_dir, "--out", out, "--device", "cpu",
                      *(["--shard", spec] if spec else []))
        assert res.exit_code == 0, res.output
        texts.append(out.read_text().splitlines())
    whole, first, *rest = texts
    assert first + [line for lines in rest for line in lines[1:]] == whole


def test_unknown_model_is_one_line_and_exit_2(tmp_path):
    res = run_cli("predict", write(tmp_path / "a.wav", SPEECH[:16000]), "--model", "no-such-model",
                  "--out", tmp_path / "s.csv")
    assert res.exit_code == 2 and "no-such-model" in res.output and "pesq-wb" in res.output
    assert not (tmp_path / "s.csv").exists()


def test_chunks_are_equal_and_cover_the_file():
    bounds = predict.chunk_bounds(25 * 16000, 8 * 16000)
    assert len(bounds) == 4 and bounds[0][0] == 0 and bounds[-1][1] == 25 * 16000
    assert {b - a for a, b in bounds} == {100000}
    assert all(b0[1] == b1[0] for b0, b1 in zip(bounds, bounds[1:], strict=False))
    assert predict.chunk_bounds(16000, 8 * 16000) == [(0, 16000)]


def test_long_file_is_the_weighted_mean_of_its_chunks_and_batching_changes_nothing(run_dir, tmp_path):
    long_wav = np.tile(SPEECH, 3)[: 25 * 16000]
    long_file = write(tmp_path / "long.wav", long_wav)
    short_file = write(tmp_path / "short.wav", SPEECH[:24000])
    one = predict.Predictor(predict.Options(model=str(run_dir), batch_size=1, chunk_seconds=8.0))
    many = predict.Predictor(predict.Options(model=str(run_dir), batch_size=16, chunk_seconds=8.0))
    rows_one = one.score_group([long_file, short_file])
    rows_many = many.score_group([long_file, short_file])
    assert rows_one[0]["num_chunks"] == 4
    for a, b in zip(rows_one, rows_many, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)  # float rounding of other shapes
    chunks = [long_wav[a:b] for a, b in predict.chunk_bounds(len(long_wav), 8 * 16000)]
    expected = np.average([s["score"] for s in one.score_chunks(chunks)], weights=[len(c) for c in chunks])
    assert rows_one[0]["score"] == pytest.approx(expected, abs=1e-6)
    whole = predict.Predictor(predict.Options(model=str(run_dir), chunk_seconds=30.0))
    assert whole.score_group([long_file])[0]["num_chunks"] == 1  # --chunk-seconds changes the cut


def test_batches_stay_within_batch_size(run_dir, tmp_path, monkeypatch):
    files = [write(tmp_path / f"{i}.wav", np.tile(SPEECH, 2)[: (5 + 4 * i) * 16000]) for i in range(4)]
    predictor = predict.Predictor(predict.Options(model=str(run_dir), batch_size=3, chunk_seconds=4.0))
    sizes, score = [], predictor.score_chunks
    monkeypatch.setattr(predictor, "score_chunks", lambda chunks: sizes.append(len(chunks)) or score(chunks))
    rows = predictor.score_group(files)
    assert [r["num_chunks"] for r in rows] == [2, 3, 4, 5] and sum(sizes) == 14 and max(sizes) == 3


def test_worker_processes_give_the_same_rows(run_dir, tmp_path):
    files = [write(tmp_path / f"{i}.wav", SPEECH[i * 8000: i * 8000 + 20000]) for i in range(5)]
    options = predict.Options(model=str(run_dir), batch_size=2)
    serial = predict.score_files(files, options, jobs=1)
    pooled = predict.score_files(files, options, jobs=2)
    assert [r["filename"] for r in pooled] == [str(f) for f in files]
    for a, b in zip(serial, pooled, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)


def test_export_scores_exactly_as_the_run_and_loads_weights_only(run_dir, tmp_path):
    card = tmp_path / "card.md"
    card.write_text("# card\n")
    dest = export(run_dir, tmp_path / "shipped", card=card)
    assert sorted(p.name for p in dest.iterdir()) == ["MODEL_CARD.md", "best.pt", "config.yaml"]
    assert "train" not in (dest / "config.yaml").read_text().split(":")[0]
    state = torch.load(dest / "best.pt", weights_only=True)
    assert set(state) == {"model", "source_run", "epoch"}  # no optimiser state
    wav = torch.from_numpy(np.stack([SPEECH[:40000], SPEECH[40000:80000]]))
    lengths = torch.tensor([40000, 31000])
    with torch.no_grad():
        assert torch.equal(load_qa(run_dir)(wav, lengths), load_qa(dest)(wav, lengths))


def test_same_seed_on_cpu_gives_the_same_weights(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=12)
    weights = [load_checkpoint(tiny_run(corpus, tmp_path / name, "--seed", seed) / "best.pt")["model"]
               for name, seed in (("a", "3"), ("b", "3"), ("c", "4"))]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


# ---------------------------------------------------------------- the shipped model
def test_shipped_weights_fit_the_package_budget():
    size = sum(p.stat().st_size for p in PRETRAINED_DIR.rglob("*") if p.is_file())
    assert size <= 40e6  # every shipped model, their ONNX graphs and the encoder they share (issue 32)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_listener_mos_is_the_encoders_own_score_on_the_same_windows(engine):
    """listener_mos is Distill-MOS's own output on each chunk (at most 7.68 s: one window, unpadded),
    duration-weighted like the score; files of 3 to 60 s, silence and noise included."""
    from mosqa.distill_mos import SEGMENT, load_encoder

    files = sorted(FIXTURES.glob("*.flac"))
    rows = predict.Predictor(predict.Options(engine=engine)).score_group(files)
    encoder = load_encoder()
    for path, row in zip(files, rows, strict=True):
        wav = load_audio(path)
        own = 0.0
        for a, b in predict.chunk_bounds(len(wav), min(int(predict.CHUNK_SECONDS * 16000), SEGMENT)):
            with torch.no_grad():
                own += float(encoder.frames(torch.from_numpy(wav[a:b])[None])["score"]) * (b - a) / len(wav)
        assert 1 <= row["listener_mos"] <= 5
        assert row["listener_mos"] == pytest.approx(own, abs=1e-4), path.name


@pytest.mark.parametrize("name", ["pesq-wb", "pesq-wb-nisqa"])
def test_shipped_model_loads_offline_with_weights_only(name):
    assert name in names()
    folder = PRETRAINED_DIR / name
    assert (folder / "MODEL_CARD.md").is_file()
    torch.load(folder / "best.pt", weights_only=True)
    qa = load_qa(name)
    with torch.no_grad():
        score = float(qa(torch.from_numpy(SPEECH[None])))
    assert 1 <= score <= 5


def test_stereo_44k_scores_as_mono_16k(tmp_path):
    """One 44.1 kHz stereo recording, and the mono 16 kHz copy a user would make of it (both 16-bit)."""
    from mosqa.audio import resample

    left = resample(SPEECH, 16000, 44100)
    right = left + 0.02 * np.random.default_rng(0).standard_normal(len(left)).astype(np.float32)  # noisy mic
    stereo = write(tmp_path / "stereo44k.wav", np.stack([left, right], axis=1), 44100)
    mono = write(tmp_path / "mono16k.wav", resample((left + right) / 2, 44100, 16000))
    clean = write(tmp_path / "left16k.wav", SPEECH)
    rows = predict.Predictor(predict.Options()).score_group([mono, stereo, clean])
    assert rows[1]["sr"] == 44100 and rows[0]["sr"] == 16000
    assert abs(rows[0]["score"] - rows[1]["score"]) <= 0.02
    assert abs(rows[2]["score"] - rows[1]["score"]) > 0.1  # so the right channel's noise was heard


def test_the_shipped_critic_gives_a_finite_gradient_through_digital_silence():
    """An enhancer's output can hold exact zeros (a muted or padded stretch): the encoder's compressed
    spectrum must give a finite gradient there, or guided training stops with a NaN loss."""
    half_silent = np.concatenate([SPEECH[:8000], np.zeros(8000, np.float32)])
    wav = torch.from_numpy(half_silent[None]).requires_grad_(True)
    load_qa("pesq-wb").normalised(wav).sum().backward()
    assert torch.isfinite(wav.grad).all() and wav.grad[0, :8000].abs().sum() > 0


def test_train_se_takes_the_shipped_model_as_its_critic():
    from mosqa.guidance import load_critic

    cfg = {"qa": "frozen", "qa_model": "pesq-wb", "sample_rate": 16000, "crop_seconds": 1.0}
    wav = torch.from_numpy(SPEECH[None])
    with torch.no_grad():
        assert torch.equal(load_critic(cfg, "cpu")(wav, None), load_qa("pesq-wb").normalised(wav))
