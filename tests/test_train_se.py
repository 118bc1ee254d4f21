"""train-se: data, losses, quality-guided modes, CLI end to end, resume, bad input."""

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import SR, run_cli, runs_in, speech, write_pairs

from mosqa.errors import MosqaError
from mosqa.guidance import (
    NormalisedQA,
    check_qa_compatible,
    critic_loss,
    grad_reverse,
    load_critic,
    qa_frozen,
    qa_grl,
    qa_joint,
    true_pesq,
)
from mosqa.losses import SPECTRAL_LOSSES, build_spectral_loss, spectral_terms
from mosqa.se_data import MixDataset, PairDataset, collate, mix, read_pairs
from mosqa.se_models import build_se_model
from mosqa.train_se import DEFAULTS

torch.set_num_threads(1)
# ---------------------------------------------------------------- data


def test_pairs_crop_and_collate(tmp_path):
    train, _ = write_pairs(tmp_path)
    ds = PairDataset(train, SR, crop_samples=8000, seed=3)
    ds.set_epoch(0)
    a = ds[1]
    assert a[0].shape == a[1].shape == (8000,)
    assert np.array_equal(ds[1][0], a[0])  # same (seed, epoch, index) -> same crop
    ds.set_epoch(1)
    assert not np.array_equal(ds[1][0], a[0])
    noisy, clean, lengths = collate([(np.ones(5, np.float32), np.ones(5, np.float32)),
                                     (np.ones(3, np.float32), np.ones(3, np.float32))])
    assert noisy.shape == (2, 5) and lengths.tolist() == [5, 3] and noisy[1, 3:].abs().sum() == 0


def test_pair_list_errors(tmp_path):
    write_pairs(tmp_path)
    sf.write(tmp_path / "short.wav", speech(0.5, 100), SR)
    (tmp_path / "bad.list").write_text("n0.wav,c0.wav\nn1.wav,short.wav\n")
    with pytest.raises(MosqaError, match=r"bad.list:2: noisy and clean differ in length"):
        read_pairs(tmp_path / "bad.list")
    (tmp_path / "miss.list").write_text("n0.wav,gone.wav\n")
    with pytest.raises(MosqaError, match=r"miss.list:1: no such audio file .*gone.wav"):
        read_pairs(tmp_path / "miss.list")
    (tmp_path / "single.list").write_text("n0.wav\n")
    with pytest.raises(MosqaError, match="no clean reference"):
        read_pairs(tmp_path / "single.list")


def test_mixing_hits_snr_and_validation_is_fixed(tmp_path):
    s = speech(1.0, 120)
    noise = np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    noisy, clean = mix(s, noise, 5.0, -25.0)
    snr = 10 * np.log10(np.sum(clean.astype(float) ** 2) / np.sum((noisy - clean).astype(float) ** 2))
    assert abs(snr - 5.0) < 0.01
    assert abs(20 * np.log10(np.sqrt(np.mean(noisy.astype(float) ** 2))) + 25) < 0.01
    for i in range(3):
        sf.write(tmp_path / f"s{i}.wav", speech(1.0 + i * 0.3, 100 + 30 * i), SR)
    sf.write(tmp_path / "noise.wav", noise * 0.1, SR)
    clean_files = sorted(tmp_path.glob("s*.wav"))
    valid = MixDataset(clean_files, [tmp_path / "noise.wav"], SR, None, seed=7)
    again = MixDataset(clean_files, [tmp_path / "noise.wav"], SR, None, seed=7)
    assert len(valid) == 3 and [len(valid[i][0]) for i in range(3)] == [SR, int(1.3 * SR), int(1.6 * SR)]
    assert all(np.array_equal(valid[i][0], again[i][0]) for i in range(3))
    train = MixDataset(clean_files, [tmp_path / "noise.wav"], SR, 4000, items=10, seed=7)
    train.set_epoch(0)
    assert len(train) == 10 and train[4][0].shape == (4000,)


# ---------------------------------------------------------------- losses and quality terms


class TinyCritic(torch.nn.Module):
    """Stand-in quality model: normalised score from the waveform's log energy, differentiable."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.3))
        self.b = torch.nn.Parameter(torch.tensor(0.1))

    def normalised(self, wav, lengths):
        return torch.sigmoid(self.w * torch.log(wav.pow(2).mean(-1) + 1e-6) + self.b)


def _batch():
    torch.manual_seed(0)
    clean = torch.from_numpy(np.stack([speech(1.0, 120), speech(1.0, 160)]))
    noisy = clean + 0.05 * torch.randn_like(clean)
    return noisy, clean, torch.tensor([SR, 12000])


def test_every_spectral_loss_trains_the_enhancer():
    noisy, clean, lengths = _batch()
    for name in SPECTRAL_LOSSES:
        model = build_se_model({"arch": "lstm", "hidden": 16, "conv_channels": 16, "layers": 1})
        out = model.run(noisy, lengths)
        loss = build_spectral_loss([(1.0, name)], model.fe, 0.3)(out, clean, lengths)
        loss.backward()
        assert torch.isfinite(loss) and model.out.weight.grad.abs().sum() > 0, name


def test_spectral_terms():
    assert spectral_terms("mag+complex+sisnr", "1,0.5,2") == [(1.0, "mag"), (0.5, "complex"), (2.0, "sisnr")]
    assert spectral_terms("mag+0.5*complex") == [(1.0, "mag"), (0.5, "complex")]  # train-qa's syntax
    assert spectral_terms("mag+complex", "1,0.5", target="iam") == [(1.0, "iam")]
    with pytest.raises(MosqaError, match="unknown loss 'l1'"):
        spectral_terms("mag+l1")
    with pytest.raises(MosqaError, match="2 weights for 1"):
        spectral_terms("mag", "1,2")


def test_gradient_reversal_flips_sign_and_scales():
    x = torch.randn(5, requires_grad=True)
    (x * torch.arange(5.0)).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    (grad_reverse(x, 0.5) * torch.arange(5.0)).sum().backward()
    assert torch.allclose(x.grad, -0.5 * plain)


def _mode_grads(term, critic, cfg):
    """Gradients of a quality term on the enhancer output and on the critic's parameters."""
    noisy, clean, lengths = _batch()
    enh = (noisy * 0.9).requires_grad_(True)
    for p in critic.parameters():
        p.grad = None
    loss = term(NormalisedQA(critic), enh, clean, lengths, cfg, 0)
    loss.backward()
    return enh.grad, [None if p.grad is None else p.grad.clone() for p in critic.parameters()], loss


def test_frozen_mode_reaches_enhancer_only():
    critic = TinyCritic()
    for p in critic.parameters():
        p.requires_grad_(False)
    g_enh, g_critic, _ = _mode_grads(qa_frozen, critic, DEFAULTS | {"qa_weight": 1.0})
    assert g_enh.abs().sum() > 0
    assert all(g is None for g in g_critic)


def test_grl_mode_reverses_the_enhancer_gradient():
    cfg = DEFAULTS | {"grl_lambda": 1.0, "qa_weight": 1.0}
    g_enh, g_critic, loss = _mode_grads(qa_grl, TinyCritic(), cfg)
    assert all(g is not None and g.abs() > 0 for g in g_critic)  # the critic learns true PESQ
    # The same critic loss without reversal: the enhancer gradient has exactly the opposite sign.

    noisy, clean, lengths = _batch()
    enh = (noisy * 0.9).requires_grad_(True)
    critic = TinyCritic()
    plain = critic_loss(critic.normalised(enh, lengths), true_pesq(clean, enh, lengths, SR))
    plain.backward()
    assert torch.allclose(loss, plain)
    assert torch.allclose(g_enh, -enh.grad)
    assert (torch.sign(g_enh) == -torch.sign(enh.grad))[enh.grad != 0].all()


def test_true_pesq_targets_are_normalised_and_clipped():

    noisy, clean, lengths = _batch()
    t = true_pesq(clean, clean, lengths, SR)
    assert torch.allclose(t, torch.full((2,), (4.64 - 1) / 4), atol=0.02)
    assert (true_pesq(clean, noisy, lengths, SR) < t).all()


def test_joint_mode_trains_both_without_teaching_the_critic_to_flatter():
    cfg = DEFAULTS | {"qa_weight": 1.0, "qa_every": 2}
    g_enh, g_critic, _ = _mode_grads(qa_joint, TinyCritic(), cfg)
    assert g_enh.abs().sum() > 0 and all(g is not None for g in g_critic)
    # The critic's gradient is that of its own PESQ-prediction loss alone.

    noisy, clean, lengths = _batch()
    critic = TinyCritic()
    enh = noisy * 0.9
    critic_loss(critic.normalised(enh, lengths), true_pesq(clean, enh, lengths, SR)).backward()
    assert all(torch.allclose(a, p.grad) for a, p in zip(g_critic, critic.parameters(), strict=True))
    assert qa_joint(NormalisedQA(TinyCritic()), noisy, clean, torch.tensor([SR, SR]), cfg, 1) is None


def test_incompatible_quality_front_end_is_refused():
    from mosqa.frontend import FrontEnd

    check_qa_compatible(FrontEnd(), DEFAULTS, "qa")
    with pytest.raises(MosqaError, match="reads 8000 Hz audio but the enhancer produces 16000 Hz"):
        check_qa_compatible(FrontEnd(sample_rate=8000), DEFAULTS, "qa")


# ---------------------------------------------------------------- CLI end to end

TINY = ["--arch", "lstm", "--hidden", "16", "--epochs", "1", "--batch-size", "2", "--crop-seconds", "0.5",
        "--device", "cpu"]


def _train(args):
    return run_cli("train-se", *args)


@pytest.mark.slow
def test_cli_train_resume_enhance_compare(tmp_path):
    train, valid = write_pairs(tmp_path / "d")
    exp = tmp_path / "exp"
    res = _train(["--train", str(train), "--valid", str(valid), "--exp-dir", str(exp),
                  "--arch", "dpcrn", "--epochs", "1", "--batch-size", "2", "--crop-seconds", "0.5",
                  "--no-dnsmos", "--device", "cpu", "--steps-per-epoch", "1"])
    assert res.exit_code == 0, res.output
    (run,) = runs_in(exp)
    assert run.name.startswith("dpcrn_se")
    for f in ("config.yaml", "metrics.csv", "best.pt", "last.pt", "train.log", "input_metrics.yaml"):
        assert (run / f).is_file(), f
    shared = list((exp / ".input_metrics").glob("*.yaml"))
    assert len(shared) == 1 and shared[0].read_text() == (run / "input_metrics.yaml").read_text()
    res = _train(["--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[1]["valid_pesq"]) > 1.0
    assert "resumed from" in (run / "train.log").read_text()
    res = run_cli("enhance", run, tmp_path / "d" / "n0.wav", "-o", tmp_path / "o", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert sf.info(str(tmp_path / "o" / "n0.wav")).frames == sf.info(str(tmp_path / "d" / "n0.wav")).frames
    res = run_cli("enhance", "--compare", run, "-o", tmp_path / "cmp")
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "cmp" / "compare.csv").read_text().splitlines()
    assert lines[0].startswith("run,pesq,stoi") and lines[1].startswith("noisy input,") and len(lines) == 3


def test_cosine_schedule_anneals_per_step_and_is_checked(tmp_path):
    train, valid = write_pairs(tmp_path / "d")
    args = ["--train", str(train), "--valid", str(valid), "--exp-dir", str(tmp_path / "exp"),
            "--arch", "lstm", "--hidden", "8", "--conv-channels", "8", "--epochs", "2", "--batch-size", "2",
            "--crop-seconds", "0.5", "--no-dnsmos", "--device", "cpu", "--lr", "0.001"]
    res = _train([*args, "--scheduler", "cosine"])
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    with open(run / "metrics.csv") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    # 2 steps per epoch, 4 in all: lr after step 2 is half the peak, after step 4 zero.
    assert lrs == pytest.approx([0.0005, 0.0], abs=1e-9)
    res = _train([*args, "--scheduler", "step"])
    assert res.exit_code == 2 and "--scheduler must be one of none, cosine" in res.output


@pytest.mark.slow
def test_cli_mixing_with_dnsmos_validation(tmp_path):
    for i in range(3):
        sf.write(tmp_path / f"s{i}.wav", speech(1.2, 100 + 30 * i), SR)
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.1
    sf.write(tmp_path / "noise.wav", noise, SR)
    (tmp_path / "train_clean.txt").write_text("s0.wav\ns1.wav\n")
    (tmp_path / "valid_clean.txt").write_text("s2.wav\n")
    res = _train([*TINY, "--clean", str(tmp_path / "train_clean.txt"), "--noise", str(tmp_path / "noise.wav"),
                  "--valid-clean", str(tmp_path / "valid_clean.txt"),
                  "--valid-noise", str(tmp_path / "noise.wav"),
                  "--exp-dir", str(tmp_path / "exp"), "--target", "iam", "--mask-act", "sigmoid"])
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    assert run.name.startswith("lstm_se_IAM")
    with open(run / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert all(1.0 <= float(row[f"valid_{k}"]) <= 5.0 for k in ("sig", "bak", "ovrl"))


def test_cli_bad_inputs_are_one_line(tmp_path):
    write_pairs(tmp_path)
    sf.write(tmp_path / "short.wav", speech(0.5, 100), SR)
    (tmp_path / "mismatch.list").write_text("n0.wav,short.wav\n")
    (tmp_path / "missing.list").write_text("n0.wav,nothere.wav\n")
    cases = [
        (["--train", str(tmp_path / "mismatch.list")], "differ in length"),
        (["--train", str(tmp_path / "missing.list")], "no such audio file"),
        (["--qa", "frozen"], "needs --qa-model"),
        (["--qa", "adversarial"], "--qa must be one of"),
        (["--qa", "grl", "--qa-model", str(tmp_path / "nowhere")], "nowhere: no such run directory"),
    ]
    for args, message in cases:
        base = ["--train", str(tmp_path / "train.list"), "--valid", str(tmp_path / "valid.list")]
        res = _train([*TINY, *base, *args, "--exp-dir", str(tmp_path / "exp"), "--no-dnsmos"])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output


# ---------------------------------------------------------------- with a real quality model (mosqa.qa)


def make_qa_run(root, **frontend) -> str:
    """A train-qa style run directory (config.yaml + best.pt) holding an untrained QualityNet."""
    from mosqa.frontend import FrontEnd
    from mosqa.qa import scorer_from_config
    from mosqa.runs import save_checkpoint, save_yaml

    torch.manual_seed(0)
    scorer = scorer_from_config({"arch": "qualitynet", **FrontEnd(**frontend).to_dict()})
    root.mkdir(parents=True)
    save_yaml(root / "config.yaml", scorer.config)
    save_checkpoint(root / "best.pt", {"model": scorer.model.state_dict(), "epoch": 1})
    return str(root)


def test_quality_model_reads_enhanced_waveform_through_its_own_front_end(tmp_path):
    """The log's defect: the QA got the wrong input. It must get features(enhanced, QA front end)."""
    from mosqa.frontend import features

    run = make_qa_run(tmp_path / "qa", window="hamming", compress=0.5)  # differs from the enhancer's STFT
    critic = load_critic(DEFAULTS | {"qa": "frozen", "qa_model": run}, "cpu")
    scorer = critic.scorer
    seen = []
    scorer.model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    enhancer = build_se_model(DEFAULTS)
    noisy, clean, lengths = _batch()
    enh = enhancer(noisy, lengths)
    qa_frozen(critic, enh, clean, lengths, DEFAULTS, 0).backward()
    # Each item's valid frames are the QA front end's features of that enhanced item alone.
    for row, n in enumerate(lengths.tolist()):
        expected = features(enh.detach()[row : row + 1, :n], scorer.frontend)[0]
        assert expected.shape[-1] == 257
        assert torch.allclose(seen[0][row, : len(expected)], expected, atol=1e-5)
        heard = features(noisy[row : row + 1, :n], scorer.frontend)[0]
        assert not torch.allclose(seen[0][row, : len(heard)], heard, atol=1e-3)
    assert enhancer.decoder[0].deconv.weight.grad.abs().sum() > 0


def test_grl_with_quality_model_reverses_enhancer_gradient(tmp_path):

    scorer = load_critic(DEFAULTS | {"qa": "grl", "qa_model": make_qa_run(tmp_path / "qa")}, "cpu").scorer
    noisy, clean, lengths = _batch()
    grads = []
    for reverse in (True, False):
        enh = (noisy * 0.8).requires_grad_(True)
        scorer.zero_grad()
        x = grad_reverse(enh, 2.0) if reverse else enh
        critic_loss(scorer.normalised(x, lengths), true_pesq(clean, enh, lengths, SR)).backward()
        grads.append((enh.grad.clone(), [p.grad.clone() for p in scorer.parameters() if p.grad is not None]))
    (g_rev, critic_rev), (g_plain, critic_plain) = grads
    assert g_plain.abs().sum() > 0 and torch.allclose(g_rev, -2.0 * g_plain, atol=1e-6)
    # The quality model itself still descends its own loss: same gradient with or without reversal.
    assert critic_rev and all(torch.allclose(a, b) for a, b in zip(critic_rev, critic_plain, strict=True))


def test_incompatible_quality_run_is_refused_from_the_cli(tmp_path):
    train, valid = write_pairs(tmp_path / "d")
    run8k = make_qa_run(tmp_path / "qa8k", sample_rate=8000, n_fft=256, hop=128)
    res = _train([*TINY, "--train", str(train), "--valid", str(valid), "--qa", "frozen",
                  "--qa-model", run8k, "--exp-dir", str(tmp_path / "exp"), "--no-dnsmos"])
    assert res.exit_code == 2 and "reads 8000 Hz audio" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "exp").exists()
    broken = tmp_path / "qa_broken"
    make_qa_run(broken)
    (broken / "config.yaml").write_text((broken / "config.yaml").read_text().replace("feature: mag",
                                                                                     "feature: mfcc"))
    res = _train([*TINY, "--train", str(train), "--valid", str(valid), "--qa", "frozen",
                  "--qa-model", str(broken), "--exp-dir", str(tmp_path / "exp"), "--no-dnsmos"])
    assert res.exit_code == 2 and "unusable quality-model front end" in res.output, res.output
    enhancer_run = tmp_path / "se_run"
    make_qa_run(enhancer_run)
    (enhancer_run / "config.yaml").write_text("kind: se\n" + (enhancer_run / "config.yaml").read_text())
    res = _train([*TINY, "--train", str(train), "--valid", str(valid), "--qa", "frozen",
                  "--qa-model", str(enhancer_run), "--exp-dir", str(tmp_path / "exp"), "--no-dnsmos"])
    assert res.exit_code == 2 and "this is a train-se run; --qa-model needs a train-qa run" in res.output


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["frozen", "grl", "joint"])
def test_cli_quality_guided_modes_train(tmp_path, mode):
    from mosqa.runs import load_checkpoint

    train, valid = write_pairs(tmp_path / "d")
    qa = make_qa_run(tmp_path / "qa")
    every = ["--qa-every", "2"] if mode == "joint" else []  # the other modes refuse it
    res = _train([*TINY, "--train", str(train), "--valid", str(valid), "--qa", mode, *every,
                  "--qa-model", qa, "--exp-dir", str(tmp_path / "exp"), "--no-dnsmos",
                  "--steps-per-epoch", "2"])
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    assert run.name.startswith(f"lstm_{mode}")
    with open(run / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["train_qa_loss"]) > 0
    state = load_checkpoint(run / "last.pt")
    assert ("qa" in state) == (mode != "frozen")  # a trained critic is saved for --resume
    if mode != "frozen":
        before = load_checkpoint(tmp_path / "qa" / "best.pt")["model"]
        changed = [k for k, v in state["qa"].items() if not torch.equal(v, before[k])]
        assert changed, "the quality model should have been updated"


def test_recipe_configs_resolve():
    from pathlib import Path

    from mosqa.train_se import resolve

    confs = sorted((Path(__file__).resolve().parents[1] / "recipes" / "conf").glob("se_*.yaml"))
    assert len(confs) >= 3
    for conf in confs:
        cfg = resolve(conf)
        build_se_model(cfg)  # every option in the file is one the model accepts
    assert resolve(confs[0], {"epochs": 3})["epochs"] == 3


# ---------------------------------------------------------------- train-qa's guarantees, for train-se

# A non-default value per option: each must reach the run's config through its flag.
FLAG_VALUES = {
    "arch": "lstm", "sample_rate": 8000, "n_fft": 256, "hop": 128, "window": "hann", "mask_act": "sigmoid",
    "target": "iam", "conv_channels": 8, "hidden": 8, "layers": 1, "compress": 0.5, "identity_init": True,
    "valid": "v.list", "clean": "c", "noise": "n", "rir": "r", "valid_clean": "vc", "valid_noise": "vn",
    "snr_min": -5.0, "snr_max": 5.0, "crop_seconds": 0.5, "valid_crop_seconds": 1.0, "epoch_items": 7,
    "valid_items": 3, "seed": 3, "valid_seed": 9, "loss": "mag", "loss_weights": "2", "spec_compress": 0.5,
    "spec_weight": 2.0, "epochs": 2, "batch_size": 2, "lr": 0.01, "scheduler": "cosine",
    "weight_decay": 0.1, "grad_clip": 0.0, "steps_per_epoch": 3, "early_stop_metric": "stoi", "patience": 0,
    "dnsmos": False, "exp_dir": "e", "name": "nm", "device": "cpu", "amp": True, "num_workers": 1,
    "threads": 2, "tensorboard": True, "keep_every": 2,
}
GUIDED = {"qa": "joint", "qa_model": "qa_run", "qa_weight": 2.0, "qa_every": 3, "qa_lr": 0.01}
DPCRN = {"blocks": 1, "intra_hidden": 8, "inter_hidden": 8}
FIXED_CRITIC = {"qa": "joint", "qa_model": "qa_run", "qa_update": False}
DNSMOS_CRITIC = {"qa": "frozen", "qa_model": "dnsmos", "dnsmos_target": "0.5*sig+bak"}
LEARNING_CRITIC = {"qa": "learn", "qa_model": "qa_run", "critic_init": "scratch", "replay_size": 7,
                   "pesq_workers": 0}
WARMING_CRITIC = {"qa": "learn", "qa_model": "qa_run", "critic_warmup": 5, "critic_warmup_lcc": 0.9,
                  "critic_warmup_from": "rung.pt"}


def _flags(values: dict) -> list[str]:
    out = []
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{key.replace('_', '-')}")
            continue
        out += [flag, str(value)]
    return [("--random-init" if f == "--no-identity-init" else f) for f in out]


def test_every_option_is_a_flag():
    import inspect

    from cli.train_se import command
    from mosqa.train_se import RENAMED

    params = set(inspect.signature(command).parameters) - {"config", "resume"}
    assert params == set(DEFAULTS) | set(RENAMED)
    covered = (set(FLAG_VALUES) | set(GUIDED) | set(DPCRN) | set(FIXED_CRITIC) | set(DNSMOS_CRITIC)
               | set(LEARNING_CRITIC) | set(WARMING_CRITIC))
    assert covered | {"train", "grl_lambda", "init"} == set(DEFAULTS)  # --init: tests/test_guidance.py


GRL_DPCRN = {"arch": "dpcrn", **DPCRN, "qa": "grl", "qa_model": "q", "grl_lambda": 0.5}


@pytest.mark.parametrize("values", [FLAG_VALUES | GUIDED, GRL_DPCRN, FIXED_CRITIC, DNSMOS_CRITIC,
                                    LEARNING_CRITIC, WARMING_CRITIC])
def test_every_flag_reaches_the_run_config(tmp_path, monkeypatch, values):
    import mosqa.train_se as train_se

    seen = {}
    monkeypatch.setattr(train_se, "train", lambda cfg, **kw: seen.update(cfg) or tmp_path)
    res = run_cli("train-se", "--train", tmp_path / "t.list", *_flags(values))
    assert res.exit_code == 0, res.output
    for key, value in values.items():
        paths = (*train_se.PATH_KEYS, "critic_warmup_from")  # paths are made absolute
        got = Path(seen[key]).name if key in paths else seen[key]
        assert got == value, key


def _batches(cfg, n: int = 2):
    """The first n training batches of a run with this config, as the trainer draws them."""
    import mosqa.train_se as train_se
    from mosqa.runs import Distributed, seed_everything

    seed_everything(cfg["seed"])
    enh = train_se._enhancer(cfg, Distributed("cpu"), None)
    enh.run = type("R", (), {"path": "run"})()
    return enh, list(itertools.islice(train_se._loader(enh, 0), n))


def _after_two_steps(cfg) -> dict:
    import mosqa.train_se as train_se

    enh, batches = _batches(cfg)
    for noisy, clean, lengths in batches:
        train_se._update(enh, noisy, clean, lengths, 0)
    return {k: v.clone() for k, v in enh.model.state_dict().items()}


CHANGES = {  # options that shape the model, its loss or its optimisation: each must change the update
    "n_fft": 256, "hop": 100, "window": "hann", "mask_act": "sigmoid", "target": "iam", "conv_channels": 12,
    "hidden": 12, "layers": 2, "compress": 0.5, "identity_init": True, "crop_seconds": 0.4, "seed": 5,
    "loss": "complex", "loss_weights": "3,1", "spec_compress": 0.5, "spec_weight": 3.0, "batch_size": 3,
    "lr": 0.01, "scheduler": "cosine", "weight_decay": 0.5, "grad_clip": 1e-3, "sample_rate": 8000,
}


def test_every_training_option_changes_the_update(tmp_path):
    from mosqa.train_se import resolve

    train, valid = write_pairs(tmp_path / "d")
    base = {"train": str(train), "valid": str(valid), "arch": "lstm", "hidden": 8, "conv_channels": 8,
            "layers": 1, "batch_size": 2, "crop_seconds": 0.5, "epochs": 1, "dnsmos": False, "n_fft": 512,
            "hop": 256}
    reference = _after_two_steps(resolve(None, base))
    for key, value in CHANGES.items():
        assert not _same(reference, _after_two_steps(resolve(None, base | {key: value}))), key
    dpcrn = {k: v for k, v in base.items() if k not in LSTM_ONLY} | {"arch": "dpcrn"}
    reference = _after_two_steps(resolve(None, dpcrn))
    for key, value in DPCRN.items():
        assert not _same(reference, _after_two_steps(resolve(None, dpcrn | {key: value}))), key


LSTM_ONLY = ("hidden", "conv_channels", "layers")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def test_grad_clip_zero_is_off_and_trains(tmp_path):
    from mosqa.runs import load_checkpoint, seed_everything

    train, valid = write_pairs(tmp_path / "d")
    res = _train([*TINY, "--train", str(train), "--valid", str(valid), "--grad-clip", "0", "--no-dnsmos",
                  "--exp-dir", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["grad_clip"] == 0.0 and cfg["kind"] == "se"
    seed_everything(0)  # the run's initial weights, as the trainer drew them
    init = build_se_model(cfg)
    trained = load_checkpoint(run / "last.pt")["model"]
    # Weights, not buffers: BatchNorm statistics move even when no gradient step is taken.
    assert any(not torch.equal(p, trained[k]) for k, p in init.named_parameters())


def _metric_rows(run):
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _resume_matches(tmp_path, monkeypatch, extra):
    import mosqa.train_se as train_se
    from mosqa.runs import load_checkpoint

    train, valid = write_pairs(tmp_path / "d")
    cfg = {"train": str(train), "valid": str(valid), "arch": "lstm", "hidden": 8, "conv_channels": 8,
           "layers": 1, "batch_size": 2, "crop_seconds": 0.5, "epochs": 3, "dnsmos": False, "threads": 1,
           "scheduler": "cosine", "steps_per_epoch": 1, "n_fft": 512, "hop": 256, "window": "hann", **extra}
    full = train_se.train(train_se.resolve(None, cfg | {"exp_dir": str(tmp_path / "a")}))
    real, calls = train_se._train_epoch, {"n": 0}

    def dies_in_third_epoch(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(train_se, "_train_epoch", dies_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_se.train(train_se.resolve(None, cfg | {"exp_dir": str(tmp_path / "b")}))
    monkeypatch.setattr(train_se, "_train_epoch", real)
    (broken,) = runs_in(tmp_path / "b")
    assert len(_metric_rows(broken)) == 2
    train_se.train(resume=broken)
    assert _metric_rows(broken) == _metric_rows(full)
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(broken / "last.pt")
    for holder in ("model", "qa"):
        assert (holder in a) == (holder in b)
        assert all(torch.equal(a[holder][k], b[holder][k]) for k in a.get(holder, {}))
    assert a["scheduler"] == b["scheduler"] and a["early_stop"] == b["early_stop"] and "scaler" in b
    return a


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    _resume_matches(tmp_path, monkeypatch, {})


@pytest.mark.slow
def test_resume_restores_a_learning_critic(tmp_path, monkeypatch):
    state = _resume_matches(tmp_path, monkeypatch, {"qa": "grl", "qa_model": make_qa_run(tmp_path / "qa")})
    assert "qa" in state and "qa_optimizer" in state


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (AMP and its scaler)")
def test_resume_with_amp_on_cuda(tmp_path, monkeypatch):
    state = _resume_matches(tmp_path, monkeypatch, {"amp": True, "device": "cuda"})
    assert "scaler" in state


def test_resume_refuses_flags_that_cannot_change(tmp_path):
    train, valid = write_pairs(tmp_path / "d")
    res = _train([*TINY, "--train", str(train), "--valid", str(valid), "--no-dnsmos",
                  "--exp-dir", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    res = _train(["--resume", str(run), "--lr", "0.1"])
    assert res.exit_code == 2 and "only --epochs" in res.output and "not --lr" in res.output
    res = _train(["--resume", str(run), "--config", str(run / "config.yaml")])
    assert res.exit_code == 2 and "drop --config" in res.output
    res = run_cli("train-qa", "--resume", run)
    assert res.exit_code == 2 and "train-se config; train-qa needs a train-qa one" in res.output


def test_old_names_are_accepted_with_a_warning(tmp_path):
    from mosqa.train_se import resolve

    conf = tmp_path / "old.yaml"
    conf.write_text("arch: lstm\nmonitor: stoi\nclip_grad: 0\ntrain_list: t.list\nvalid_list: v.list\n")
    cfg = resolve(conf)
    assert cfg["early_stop_metric"] == "stoi" and cfg["grad_clip"] == 0.0 and cfg["train"].endswith("t.list")
    assert not {"monitor", "clip_grad", "train_list", "valid_list"} & set(cfg)
    train, valid = write_pairs(tmp_path / "d")
    res = _train([*TINY, "--train-list", str(train), "--valid-list", str(valid), "--no-dnsmos",
                  "--exp-dir", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    assert "'train_list' is deprecated, use 'train'" in res.output


@pytest.mark.parametrize("args, message", [
    (["--arch", "dpcrn", "--hidden", "16"], "--hidden: no effect on arch dpcrn"),
    (["--qa", "frozen", "--qa-model", "x", "--grl-lambda", "2"], "--grl-lambda: no effect on --qa frozen"),
    (["--qa-weight", "2"], "--qa-weight: no effect on --qa none"),
    (["--epochs", "0"], "--epochs must be a whole number >= 1, got 0"),
    (["--grad-clip", "-1"], "--grad-clip must be a finite number >= 0"),
    (["--early-stop-metric", "mos"], "--early-stop-metric must be one of pesq"),
])
def test_options_the_run_would_not_use_are_refused(tmp_path, args, message):
    train, valid = write_pairs(tmp_path / "d")
    res = _train([*TINY, "--train", str(train), "--valid", str(valid), "--no-dnsmos",
                  "--exp-dir", str(tmp_path / "exp"), *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "exp").exists()


def test_a_run_failing_in_its_first_epoch_leaves_nothing(tmp_path, monkeypatch):
    import mosqa.train_se as train_se

    train, valid = write_pairs(tmp_path / "d")
    real = train_se.build_spectral_loss
    monkeypatch.setattr(train_se, "build_spectral_loss",
                        lambda *a: (lambda *b: real(*a)(*b) * float("nan")))
    res = _train([*TINY, "--train", str(train), "--valid", str(valid), "--no-dnsmos",
                  "--exp-dir", str(tmp_path / "exp")])
    assert res.exit_code == 2 and "NaN" in res.output, res.output
    assert [p.name for p in (tmp_path / "exp").iterdir()] == [".input_metrics"]  # shared cache only


def test_a_run_from_before_the_renaming_resumes(tmp_path):
    """Old config keys (train_list, clip_grad, monitor; no kind) and an old last.pt ("early", no scaler)."""
    from mosqa.runs import load_checkpoint, save_checkpoint

    train, valid = write_pairs(tmp_path / "d")
    res = _train([*TINY, "--train", str(train), "--valid", str(valid), "--no-dnsmos",
                  "--steps-per-epoch", "1", "--exp-dir", str(tmp_path / "exp")])
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    old = {"train": "train_list", "valid": "valid_list", "grad_clip": "clip_grad",
           "early_stop_metric": "monitor"}
    old_cfg = {old.get(k, k): v for k, v in cfg.items() if k != "kind"}
    (run / "config.yaml").write_text(yaml.safe_dump(old_cfg))
    state = load_checkpoint(run / "last.pt")
    state["early"] = state.pop("early_stop")
    del state["scaler"]
    save_checkpoint(run / "last.pt", state)
    res = _train(["--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "'monitor' is deprecated, use 'early_stop_metric'" in res.output
    assert [r["epoch"] for r in _metric_rows(run)] == ["1", "2"]
    assert yaml.safe_load((run / "config.yaml").read_text())["early_stop_metric"] == "pesq"  # saved renamed


def test_curves_png_and_tensorboard_clips(tmp_path):
    train, valid = write_pairs(tmp_path / "d")
    board = __import__("importlib").util.find_spec("tensorboard") is not None
    res = _train(["--train", str(train), "--valid", str(valid), "--exp-dir", str(tmp_path / "exp"),
                  "--arch", "dpcrn", "--blocks", "1", "--intra-hidden", "8", "--inter-hidden", "8",
                  "--epochs", "1", "--batch-size", "2", "--crop-seconds", "0.5", "--no-dnsmos", "--device",
                  "cpu", "--steps-per-epoch", "1", *(["--tensorboard"] if board else [])])
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    if not board:
        pytest.skip("tensorboard is not installed: curves.png checked, events not")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard")).Reload()
    assert {"train_loss", "valid_loss", "valid_pesq", "lr"} <= set(events.Tags()["scalars"])
    assert {"valid_enhanced/0", "valid_noisy/0"} <= set(events.Tags()["audio"])
