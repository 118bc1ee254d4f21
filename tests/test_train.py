"""train-qa: config precedence, exact resume, NaN stop, bad flags, feature cache, bucketed batches.

The corpus is synthetic: a speech-like harmonic tone with 4 Hz syllable modulation plus white
noise at SNRs from -5 to 30 dB; the label rises with the SNR, so a tiny model learns it quickly.
"""

import numpy as np
import pytest
import torch
import yaml
from conftest import QA_TINY, run_cli

from mosqa.data import BucketBatchSampler, FeatureSet, collate, load_features
from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd
from mosqa.lists import read_list

TINY = QA_TINY


def train_args(corpus, exp, *extra):
    return ["train-qa", "--train", str(corpus["train"]), "--valid", str(corpus["valid"]),
            "--exp-dir", str(exp), *TINY, *extra]


# ---------------------------------------------------------------- data


def test_sampler_buckets_lengths_and_is_keyed_by_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(10, 500, size=200)
    s = BucketBatchSampler(lengths, 8, shuffle=True, seed=3, bucket_batches=5)
    s.set_epoch(1)
    a = list(s)
    s.set_epoch(1)
    assert list(s) == a  # same seed+epoch -> same batches (exact resume)
    s.set_epoch(2)
    assert list(s) != a
    assert sorted(i for b in a for i in b) == list(range(200))
    # Sorting within buckets: the mean spread of lengths inside a batch is far below random batching.
    spread = np.mean([np.ptp(lengths[b]) for b in a])
    assert spread < 0.5 * np.ptp(lengths)
    # DDP: ranks get disjoint, equally many batches covering everything.
    r0 = list(BucketBatchSampler(lengths, 8, seed=3, rank=0, world_size=2))
    r1 = list(BucketBatchSampler(lengths, 8, seed=3, rank=1, world_size=2))
    assert len(r0) == len(r1)
    assert {i for b in r0 + r1 for i in b} == set(range(200))


def test_feature_cache_is_reused_and_keyed_by_settings(corpus, tmp_path):
    items = read_list(corpus["valid"])
    fe = FrontEnd(compress=0.5)
    feats, offsets = load_features(items, fe, tmp_path)
    assert feats.dtype == np.float16 and len(offsets) == len(items) + 1
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again, _ = load_features(items, fe, tmp_path)
    np.testing.assert_array_equal(feats, again)
    load_features(items, FrontEnd(compress=1.0), tmp_path)  # other settings -> another file
    assert len(list(tmp_path.glob("*.npz"))) == 2
    ds = FeatureSet(feats, offsets, [it.score for it in items])
    x, lengths, y, idx = collate([ds[0], ds[1], ds[2]])
    assert x.shape[0] == 3 and int(lengths.max()) == x.shape[1]
    assert torch.all(x[0, lengths[0]:] == 0)  # zero padding beyond each clip


# ---------------------------------------------------------------- config


def test_yaml_then_cli_override_precedence(corpus, tmp_path):
    from mosqa.train import resolve

    conf = tmp_path / "c.yaml"
    conf.write_text("arch: crn\nC: 64\nlstm_hidden: 32\ncompress: 0.5\nlr: 1e-2\n")  # YAML reads 1e-2 as text
    cfg = resolve(conf, {"train": str(corpus["train"]), "valid": str(corpus["valid"]), "C": 16})
    assert cfg["C"] == 16 and cfg["lstm_hidden"] == 32 and cfg["lr"] == 0.01  # flag > YAML > default
    assert cfg["trans"] == 256  # crn's own default fills what neither set
    assert cfg["compress"] == 0.5 and cfg["name"] == "crn_cp_qn"
    assert "local_mask" not in cfg  # options crn does not use are not stored
    q = resolve(None, {"train": str(corpus["train"]), "valid": str(corpus["valid"])})
    assert q["window"] == "hamming" and q["name"] == "qualitynet_qn"  # the arch's own front end
    n = resolve(None, {"train": str(corpus["train"]), "valid": str(corpus["valid"]), "arch": "nisqa"})
    assert n["feature"] == "logmel" and n["hop"] == 160
    c = resolve(None, {"train": str(corpus["train"]), "valid": str(corpus["valid"]), "arch": "can2d",
                       "head": "cls", "compress": 0.5})
    assert c["name"] == "can2dClass_cp_qn" and c["step"] == 0.2


@pytest.mark.parametrize("extra, needle", [
    (["--arch", "nosuch"], "arch"),
    (["--arch", "hasa", "--C", "256"], "'C'"),
    (["--optimizer", "sgd9"], "--optimizer"),
    (["--loss", "ce"], "cls"),
    (["--compress", "2"], "compress"),
])
def test_bad_flags_exit_2_with_one_line(corpus, tmp_path, extra, needle):
    result = run_cli(*train_args(corpus, tmp_path, *extra))
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.output


def test_unknown_yaml_key_is_refused(corpus, tmp_path):
    conf = tmp_path / "bad.yaml"
    conf.write_text("arch: crn\nchanels: 3\n")
    result = run_cli(*train_args(corpus, tmp_path, "--config", conf))
    assert result.exit_code == 2 and "chanels" in result.output


# ---------------------------------------------------------------- training


def _metrics(run_dir):
    import csv

    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(corpus, tmp_path, monkeypatch):
    import mosqa.train as train_mod

    common = {"train": str(corpus["train"]), "valid": str(corpus["valid"]), "arch": "qualitynet",
              "lstm_hidden": 8, "batch_size": 4, "epochs": 3, "threads": 1, "device": "cpu",
              "scheduler": "cosine", "optimizer": "adamw", "exp_dir": str(tmp_path / "a")}
    full = train_mod.train(train_mod.resolve(None, common))
    # Same run, killed during epoch 3 (after two checkpoints), then resumed.
    real = train_mod._train_epoch
    calls = {"n": 0}

    def dies_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_train_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(train_mod.resolve(None, {**common, "exp_dir": str(tmp_path / "b")}))
    monkeypatch.setattr(train_mod, "_train_epoch", real)
    (broken,) = (tmp_path / "b").glob("qualitynet*")
    assert len(_metrics(broken)) == 2
    train_mod.train(resume=broken)
    assert _metrics(broken) == _metrics(full)
    a = torch.load(full / "last.pt", weights_only=True)["model"]
    b = torch.load(broken / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cosine_resumed_with_more_epochs_replans_the_rest_of_the_curve(corpus, tmp_path):
    import mosqa.train as train_mod

    common = {"train": str(corpus["train"]), "valid": str(corpus["valid"]), "arch": "qualitynet",
              "lstm_hidden": 8, "batch_size": 4, "epochs": 2, "threads": 1, "device": "cpu", "lr": 0.01,
              "scheduler": "cosine", "exp_dir": str(tmp_path)}
    run_dir = train_mod.train(train_mod.resolve(None, common))
    train_mod.train(resume=run_dir, overrides={"epochs": 4})
    lrs = [float(r["lr"]) for r in _metrics(run_dir)]
    # Epochs 1-2 followed the 2-epoch curve; epochs 3-4 the rest of a 4-epoch one: never 0, never back up.
    assert lrs[:2] == pytest.approx([0.01, 0.005])
    assert lrs[2:] == pytest.approx([0.01 * 0.5 * (1 + np.cos(np.pi * k / 4)) for k in (2, 3)], rel=1e-3)


def test_nan_loss_stops_cleanly_and_keeps_last_checkpoint(corpus, tmp_path, monkeypatch):
    import mosqa.train as train_mod

    real = train_mod.build_loss

    def poisoned(spec, opts, head=None):
        fn = real(spec, opts, head=head)
        calls = {"n": 0}

        def loss(out, target):
            calls["n"] += 1
            total, parts = fn(out, target)
            return (total * float("nan") if calls["n"] > 5 else total), parts  # epoch 1 has 5 batches

        return loss

    monkeypatch.setattr(train_mod, "build_loss", poisoned)
    cfg = train_mod.resolve(None, {"train": str(corpus["train"]), "valid": str(corpus["valid"]),
                                   "lstm_hidden": 8, "batch_size": 4, "epochs": 3, "threads": 1,
                                   "exp_dir": str(tmp_path)})
    with pytest.raises(MosqaError, match="NaN"):
        train_mod.train(cfg)
    (run_dir,) = tmp_path.glob("qualitynet*")
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values()
                                       if v.is_floating_point())
    assert len(_metrics(run_dir)) == 1


@pytest.mark.slow
def test_cli_run_dir_holds_everything(corpus, tmp_path):
    extra = ["--epochs", "2", "--compress", "0.5", "--early-stop-metric", "srcc", "--optimizer", "rmsprop",
             "--scheduler", "plateau"]
    result = run_cli(*train_args(corpus, tmp_path, *extra))
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.glob("qualitynet_cp_qn*")
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "metrics.csv", "best.pt", "last.pt", "train.log"} <= names
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["compress"] == 0.5 and cfg["optimizer"] == "rmsprop" and cfg["lstm_hidden"] == 8
    assert cfg["train"] == str(corpus["train"].absolute())
    rows = _metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "valid_mse", "valid_lcc", "valid_srcc", "lr"} <= set(rows[0])
    # The saved config works again as a --config file.
    again = run_cli("train-qa", "--config", run_dir / "config.yaml", "--epochs", "1",
                    "--exp-dir", tmp_path / "x")
    assert again.exit_code == 0, again.output


def test_every_recipe_config_resolves(corpus):
    """Each recipes/conf YAML of a quality model is a valid train-qa config (the log's experiments)."""
    from pathlib import Path

    from mosqa.models import MODELS
    from mosqa.train import resolve

    confs = [p for p in sorted((Path(__file__).parent.parent / "recipes" / "conf").glob("*.yaml"))
             if yaml.safe_load(p.read_text()).get("arch") in MODELS]
    assert len(confs) >= 40
    lists = {"train": str(corpus["train"]), "valid": str(corpus["valid"])}
    names = {resolve(p, lists)["name"] for p in confs}
    assert {"crn_cp_qn", "cnnA_cp_qn", "hasaClass_cp_qn", "can2dClass_qn", "hasa_qn", "hasa_cp_qn"} <= names


def test_every_option_is_a_flag():
    """Front end, model, loss and training options: each one a train-qa flag and a YAML key."""
    import inspect

    from cli.train_qa import command
    from mosqa.train import DEFAULTS

    params = set(inspect.signature(command).parameters) - {"config", "resume"}
    assert params == set(DEFAULTS)


# ---------------------------------------------------------------- curves.png and TensorBoard


def test_curves_png_is_redrawn_every_epoch_with_best_pt_marked(corpus, tmp_path, monkeypatch):
    import mosqa.plots as plots
    import mosqa.train as train_mod

    calls, real = [], plots.curves_png

    def spy(path, rows, losses, metric, best_epoch):
        calls.append((len(rows), tuple(losses), metric, best_epoch))
        real(path, rows, losses, metric, best_epoch)

    monkeypatch.setattr(plots, "curves_png", spy)
    cfg = train_mod.resolve(None, {"train": str(corpus["train"]), "valid": str(corpus["valid"]),
                                   "lstm_hidden": 8, "batch_size": 4, "epochs": 2, "threads": 1,
                                   "early_stop_metric": "mse", "exp_dir": str(tmp_path)})
    run_dir = train_mod.train(cfg)
    assert [c[0] for c in calls] == [1, 2]  # once per epoch, from all rows so far
    best = torch.load(run_dir / "best.pt", weights_only=True)["epoch"]
    assert calls[-1][1:] == (("train_loss", "valid_mse_norm"), "valid_mse", best)
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    train_mod.train(resume=run_dir, overrides={"epochs": 3})
    assert calls[-1][0] == 3 and calls[-1][3] in (best, 3)  # resumed: best.pt's epoch read back


def test_tensorboard_without_its_extra_is_one_line_before_any_run(corpus, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorboard" else real(name, *args))
    result = run_cli(*train_args(corpus, tmp_path / "exp", "--epochs", "1", "--tensorboard"))
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'mosqa[tensorboard]'" in lines[0]
    assert not (tmp_path / "exp").exists()


def test_tensorboard_gets_every_epochs_scalars(corpus, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_cli(*train_args(corpus, tmp_path, "--epochs", "2", "--tensorboard"))
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.glob("qualitynet*")
    board = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    rows = _metrics(run_dir)
    for name in ("train_loss", "lr", "valid_lcc", "valid_mse"):
        events = board.Scalars(name)
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([float(r[name]) for r in rows], rel=1e-5)
