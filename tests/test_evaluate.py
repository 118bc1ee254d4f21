"""eval-qa and the QAScorer API: end to end from the CLI, reload from the run dir alone, gradients."""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import QA_TINY, make_corpus, run_cli

from mosqa import load_qa
from mosqa.data import FeatureSet, load_features
from mosqa.errors import MosqaError
from mosqa.evaluate import predict
from mosqa.frontend import FrontEnd, features
from mosqa.lists import read_list
from mosqa.models import build_model
from mosqa.qa import QAScorer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One regression run and one classifier run, trained from the CLI."""
    root = tmp_path_factory.mktemp("qa")
    corpus = make_corpus(root / "corpus")
    exp = root / "exp"
    base = ["train-qa", "--train", corpus["train"], "--valid", corpus["valid"], "--exp-dir", exp, *QA_TINY,
            "--epochs", "3", "--lr", "0.01"]
    reg = run_cli(*base, "--compress", "0.5")
    assert reg.exit_code == 0, reg.output
    cls = run_cli(*base, "--head", "cls", "--step", "0.5", "--loss", "norm-mse+ce", "--no-norm-output")
    assert cls.exit_code == 0, cls.output
    (reg_dir,) = exp.glob("qualitynet_cp_qn*")
    (cls_dir,) = exp.glob("qualitynetClass_qn*")
    return corpus, reg_dir, cls_dir


@pytest.mark.slow
def test_eval_cli_writes_metrics_predictions_scatter_and_comparison(trained, tmp_path):
    corpus, reg_dir, cls_dir = trained
    result = run_cli("eval-qa", reg_dir, cls_dir, "--list", corpus["test"], "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    reg_out, cls_out = tmp_path / reg_dir.name, tmp_path / cls_dir.name
    assert (reg_out / "scatter_score.png").stat().st_size > 1000
    assert (cls_out / "scatter_cls.png").is_file() and (cls_out / "scatter_avg_cls.png").is_file()
    m = yaml.safe_load((reg_out / "metrics.yaml").read_text())["metrics"]["score"]
    assert {"mse", "mse_norm", "rmse", "lcc", "srcc", "ktau", "rmse_map", "lcc_con", "srcc_con"} <= set(m)
    assert m["lcc"] > 0.8  # the synthetic label is easy: 3 epochs learn it
    assert m["mse_norm"] == pytest.approx(m["mse"] / 16)
    # Predictions CSV: one row per test clip, in list order, matching the metrics.
    with open(reg_out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    items = read_list(corpus["test"])
    assert [r["path"] for r in rows] == [str(it.path) for it in items]
    pred = np.array([float(r["score"]) for r in rows])
    true = np.array([it.score for it in items])
    assert np.mean((pred - true) ** 2) == pytest.approx(m["mse"], rel=1e-4)
    # Comparison table: both prediction modes of the classifier, the differing options only.
    with open(tmp_path / "compare_test.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["run"], r["predict"]) for r in table] == [
        (reg_dir.name, "score"), (cls_dir.name, "cls"), (cls_dir.name, "avg+cls")]
    assert "head=cls" in table[1]["options"] and "compress=0.5" in table[0]["options"]
    assert "lstm_hidden" not in table[0]["options"]  # the same in both runs
    cls_metrics = yaml.safe_load((cls_out / "metrics.yaml").read_text())["metrics"]
    assert set(cls_metrics) == {"cls", "avg+cls"}


def test_run_dir_reloads_and_predicts_identically(trained):
    corpus, reg_dir, _ = trained
    a, b = load_qa(reg_dir), load_qa(reg_dir / "best.pt")
    assert a.frontend == FrontEnd.from_dict(yaml.safe_load((reg_dir / "config.yaml").read_text()))
    assert a.frontend.compress == 0.5 and a.frontend.window == "hamming"
    items = read_list(corpus["test"])
    wav = torch.from_numpy(sf.read(items[3].path, dtype="float32")[0])[None]
    assert torch.equal(a(wav), b(wav))
    # The scorer on the waveform agrees with eval's cached float16 features, up to their rounding.
    feats, offsets = load_features(items, a.frontend, reg_dir.parent / ".cache", "test")
    cached = predict(a.model, FeatureSet(feats, offsets, [it.score for it in items]), 4, "cpu")
    i = int(np.where(cached["index"] == 3)[0][0])
    with torch.no_grad():
        assert float(a(wav)) == pytest.approx(float(cached["score"][i]), abs=2e-3)
    # ... and with the weights saved at the best epoch.
    state = torch.load(reg_dir / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(state[k], v) for k, v in a.model.state_dict().items())


def test_scorer_is_differentiable_and_batches_with_lengths(trained):
    _, reg_dir, cls_dir = trained
    scorer = load_qa(reg_dir)
    wav = (0.1 * torch.randn(2, 12000)).requires_grad_()
    lengths = torch.tensor([12000, 8000])
    q = scorer(wav, lengths)
    assert q.shape == (2,) and torch.all((q >= 1) & (q <= 5))
    assert torch.allclose(scorer.normalised(wav, lengths), (q - 1) / 4)
    q.sum().backward()
    assert wav.grad.abs().sum() > 0
    # Padding changes nothing: clip 2 alone scores as in the padded batch.
    with torch.no_grad():
        alone = scorer(wav[1:, :8000])
    assert float(alone) == pytest.approx(float(q[1].detach()), abs=1e-3)
    out = load_qa(cls_dir).full(wav.detach(), lengths)
    assert {"score", "frame", "mask", "logits", "reg", "cls"} <= set(out)


def test_scorer_from_a_fresh_model():
    fe = FrontEnd(compress=0.5)
    model = build_model({"arch": "crn", "C": 8, "lstm_hidden": 8, "trans": 8}, fe.n_bins)
    scorer = QAScorer(model, fe, {"arch": "crn"})
    assert scorer(torch.zeros(1, 4000) + 0.01).shape == (1,)


def test_level_norm_ignores_gain_and_padding():
    fe = FrontEnd(compress=0.5, level_norm=-26.0)
    torch.manual_seed(0)
    model = build_model({"arch": "crn", "C": 8, "lstm_hidden": 8, "trans": 8}, fe.n_bins).eval()
    scorer = QAScorer(model, fe, {"arch": "crn"})
    wav = 0.1 * torch.randn(2, 12000)
    with torch.no_grad():
        loud, quiet = scorer(wav[:1]), scorer(0.001 * wav[:1])
        # Padding must not enter the level: clip 2 alone scores as in the padded batch.
        batch = scorer(wav, torch.tensor([12000, 8000]))
        alone = scorer(wav[1:, :8000])
        plain = QAScorer(model, FrontEnd(compress=0.5), {"arch": "crn"})(0.001 * wav[:1])
    assert float(quiet) == pytest.approx(float(loud), abs=1e-4)
    assert float(batch[1]) == pytest.approx(float(alone), abs=1e-4)
    inner = slice(0, 25)  # frames whose STFT window lies inside the 8000 valid samples
    padded = features(wav, fe, torch.tensor([12000, 8000]))[1, inner]
    assert torch.allclose(padded, features(wav[1:, :8000], fe)[0, inner], atol=1e-5)
    assert float(plain) != pytest.approx(float(quiet), abs=1e-4)  # without it, the level does matter
    # Unset, the option leaves the cache key of older runs unchanged; set, it changes it.
    assert "level_norm" not in FrontEnd().key() and fe.key() != FrontEnd(compress=0.5).key()


def test_bad_run_dir_and_list_give_one_line(trained, tmp_path):
    corpus, reg_dir, _ = trained
    with pytest.raises(MosqaError, match="no such run directory"):
        load_qa(tmp_path / "nope")
    result = run_cli("eval-qa", reg_dir, "--list", tmp_path / "missing.list")
    assert result.exit_code == 2 and "missing.list" in result.output
    result = run_cli("eval-qa", corpus["test"], "--list", corpus["test"])
    assert result.exit_code == 2 and "not a run directory" in result.output
