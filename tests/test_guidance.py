"""Fine-tuning (--init) and the critics of quality guidance: train-qa runs, shipped models, torch DNSMOS,
the --qa-update switch of joint."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SR, run_cli, runs_in, speech, write_pairs
from test_train_se import make_qa_run

import mosqa.guidance as guidance
from mosqa.errors import MosqaError
from mosqa.runs import Distributed, load_checkpoint, seed_everything

torch.set_num_threads(1)
TINY = ["--arch", "lstm", "--hidden", "8", "--conv-channels", "8", "--layers", "1", "--n-fft", "512",
        "--hop", "256", "--window", "hann", "--batch-size", "2", "--crop-seconds", "1", "--device", "cpu",
        "--no-dnsmos", "--steps-per-epoch", "1", "--epochs", "1"]


def _data(tmp_path):
    train, valid = write_pairs(tmp_path / "d")
    return ["--train", str(train), "--valid", str(valid)]


def _one_line_error(res, message):
    assert res.exit_code == 2 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


@pytest.fixture(scope="module")
def enhancer_run(tmp_path_factory):
    """A tiny trained lstm enhancer (train-se run) to fine-tune from."""
    root = tmp_path_factory.mktemp("base")
    res = run_cli("train-se", *TINY, *_data(root), "--exp-dir", root / "exp", "--lr", "0.01")
    assert res.exit_code == 0, res.output
    (run,) = runs_in(root / "exp")
    return run


def _enhancer(cfg):
    import mosqa.train_se as train_se

    seed_everything(cfg["seed"])
    enh = train_se._enhancer(cfg, Distributed("cpu"), None)
    enh.run = type("R", (), {"path": "run"})()
    return enh


def _after_steps(cfg, n=2):
    """The enhancer (and critic) after n training steps of a run with this config."""
    import mosqa.train_se as train_se

    enh = _enhancer(cfg)
    for noisy, clean, lengths in itertools.islice(train_se._loader(enh, 0), n):
        train_se._update(enh, noisy, clean, lengths, 0)
    return enh


def _resolved(tmp_path, **options):
    from mosqa.train_se import resolve

    train, valid = write_pairs(tmp_path / "d")
    base = {"train": str(train), "valid": str(valid), "batch_size": 2, "crop_seconds": 1.0, "dnsmos": False,
            "epochs": 1}
    return resolve(None, base | options)


def _weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- --init


def test_init_starts_from_the_trained_weights_with_a_fresh_optimiser(tmp_path, enhancer_run):
    cfg = _resolved(tmp_path, init=str(enhancer_run))
    # The network options come from the run (its hidden 8, conv 8, 1 layer, STFT 512/256 hann).
    assert (cfg["arch"], cfg["hidden"], cfg["n_fft"], cfg["window"]) == ("lstm", 8, 512, "hann")
    enh = _enhancer(cfg)
    trained = load_checkpoint(enhancer_run / "best.pt")["model"]
    assert all(torch.equal(v, trained[k]) for k, v in enh.model.state_dict().items())
    assert enh.optimizer.state_dict()["state"] == {}  # fresh: no Adam moments carried over
    # The same run without --init starts elsewhere, and trains to elsewhere.
    scratch = _resolved(tmp_path, **{k: cfg[k] for k in ("arch", "hidden", "conv_channels", "layers", "n_fft",
                                                         "hop", "window")})
    a, b = _weights(_after_steps(cfg).model), _weights(_after_steps(scratch).model)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_init_cli_run_logs_and_resumes_from_its_own_state(tmp_path, enhancer_run):
    budget = ["--batch-size", "2", "--device", "cpu", "--no-dnsmos", "--steps-per-epoch", "1"]
    res = run_cli("train-se", "--init", enhancer_run, *_data(tmp_path), *budget, "--epochs", "1",
                  "--exp-dir", tmp_path / "exp")
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    assert f"initialised from {enhancer_run}" in (run / "train.log").read_text()
    res = run_cli("train-se", "--resume", run, "--epochs", "2")
    assert res.exit_code == 0, res.output
    assert "resumed from" in (run / "train.log").read_text()


def test_init_refuses_a_quality_run_a_different_network_and_identity_init(tmp_path, enhancer_run):
    data = [*_data(tmp_path), "--exp-dir", tmp_path / "exp", "--no-dnsmos"]
    qa = make_qa_run(tmp_path / "qa")
    _one_line_error(run_cli("train-se", "--init", qa, *data),
                    "this is a train-qa run; --init needs a train-se run")
    _one_line_error(run_cli("train-se", "--init", enhancer_run, "--hidden", "16", *data),
                    "--init's enhancer has hidden 8, not 16")
    _one_line_error(run_cli("train-se", "--init", enhancer_run, "--arch", "dpcrn", *data),
                    "--init's enhancer has arch lstm, not dpcrn")
    _one_line_error(run_cli("train-se", "--init", enhancer_run, "--identity-init", *data),
                    "--identity-init: no effect with --init")
    _one_line_error(run_cli("train-se", "--init", tmp_path / "gone", *data), "gone: no such run directory")
    assert not (tmp_path / "exp").exists()


def test_init_weights_that_do_not_fit_are_one_line(tmp_path, enhancer_run):
    from mosqa.runs import save_checkpoint
    from mosqa.train_se import init_weights

    state = load_checkpoint(enhancer_run / "best.pt")
    state["model"] = {k: v[..., :1] if v.ndim else v for k, v in state["model"].items()}
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text((enhancer_run / "config.yaml").read_text())
    save_checkpoint(broken / "best.pt", state)
    cfg = _resolved(tmp_path, init=str(broken))
    from mosqa.se_models import build_se_model

    with pytest.raises(MosqaError, match=r"best.pt: its enhancer does not fit this run's model"):
        init_weights(build_se_model(cfg), cfg["init"])


# ---------------------------------------------------------------- critics by name


def test_a_shipped_model_name_goes_through_load_qa(tmp_path, monkeypatch):
    """--qa-model pesq-wb is whatever mosqa.qa.load_qa gives for that name (here a tiny train-qa run)."""
    import mosqa.qa

    tiny = make_qa_run(tmp_path / "qa")
    real = mosqa.qa.load_qa
    asked = []
    monkeypatch.setattr(mosqa.qa, "load_qa",
                        lambda spec, device="cpu": asked.append(spec) or real(tiny, device))
    res = run_cli("train-se", *TINY, *_data(tmp_path), "--qa", "grl", "--qa-model", "pesq-wb",
                  "--exp-dir", tmp_path / "exp")
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    assert asked == ["pesq-wb"]
    assert (run / "config.yaml").read_text().count("qa_model: pesq-wb") == 1  # a name, kept as a name
    assert "qa" in load_checkpoint(run / "last.pt")  # a shipped model learns in grl like any train-qa run


def _shipped_pesq_wb() -> bool:
    try:
        from mosqa.pretrained import names
    except ImportError:
        return False
    return "pesq-wb" in names()


@pytest.mark.skipif(not _shipped_pesq_wb(), reason="needs the shipped pesq-wb model (mosqa.pretrained)")
def test_the_shipped_pesq_wb_model_guides(tmp_path):
    critic = guidance.load_critic(_resolved(tmp_path, qa="frozen", qa_model="pesq-wb", arch="dpcrn"), "cpu")
    wav = torch.from_numpy(np.stack([speech(1.0, 120), speech(1.0, 150)])).requires_grad_(True)
    q = critic(wav, torch.tensor([SR, SR]))
    q.sum().backward()
    assert q.shape == (2,) and ((q >= 0) & (q <= 1)).all() and wav.grad.abs().sum() > 0


# ---------------------------------------------------------------- DNSMOS as the critic


class FakeDnsmos(torch.nn.Module):
    """Stands in for load_torch's module: each score a different differentiable function of the input."""

    def forward(self, wav):
        if wav.shape[-1] < SR:
            raise AssertionError("DNSMOS needs at least 1 s")
        energy = wav.pow(2).mean(-1)
        return {"SIG": 1 + 4 * torch.sigmoid(energy), "BAK": 1 + 4 * torch.sigmoid(-energy),
                "OVRL": 1 + 2 * torch.sigmoid(wav.abs().mean(-1)),
                "P808": 1 + wav.shape[-1] / 1e5 + 0 * energy}


def test_dnsmos_critic_weighs_the_chosen_scores_on_the_normalised_scale():
    fake = FakeDnsmos()
    wav = torch.from_numpy(np.stack([speech(1.5, 120), speech(1.5, 150)]))
    s = fake(wav)
    ovrl = guidance.DnsmosCritic(fake, guidance.dnsmos_terms("ovrl"))(wav, None)
    assert torch.allclose(ovrl, (s["OVRL"] - 1) / 4)
    mixed = guidance.DnsmosCritic(fake, guidance.dnsmos_terms("0.5*sig+bak"))(wav, None)
    assert torch.allclose(mixed, (0.5 * (s["SIG"] - 1) / 4 + (s["BAK"] - 1) / 4) / 1.5)
    # A padded batch: each item scored at its own length (at least 1 s), padding never scored.
    lengths = torch.tensor([int(1.5 * SR), int(1.2 * SR)])
    p808 = guidance.DnsmosCritic(fake, guidance.dnsmos_terms("p808"))(wav, lengths)
    assert torch.allclose(p808, torch.tensor([1.5 * SR, 1.2 * SR]) / 1e5 / 4)
    for bad in ("mos", "ovrl+-1*sig", "0*ovrl", ""):
        with pytest.raises(MosqaError, match="--dnsmos-target"):
            guidance.dnsmos_terms(bad)


def test_dnsmos_target_changes_the_update(tmp_path, monkeypatch):
    import mosqa.dnsmos

    monkeypatch.setattr(mosqa.dnsmos, "load_torch", lambda personalized=False, device="cpu": FakeDnsmos())
    runs = {t: _weights(_after_steps(_resolved(tmp_path, arch="lstm", hidden=8, conv_channels=8, layers=1,
                                               qa="frozen", qa_model="dnsmos", dnsmos_target=t)).model)
            for t in ("sig", "bak")}
    assert any(not torch.equal(runs["sig"][k], runs["bak"][k]) for k in runs["sig"])


def test_dnsmos_is_a_fixed_critic_and_its_options_are_checked(tmp_path):
    data = [*_data(tmp_path), *TINY, "--exp-dir", tmp_path / "exp"]
    fixed = "DNSMOS is a fixed one; use --qa frozen or --qa joint --no-qa-update"
    _one_line_error(run_cli("train-se", *data, "--qa", "grl", "--qa-model", "dnsmos"), fixed)
    _one_line_error(run_cli("train-se", *data, "--qa", "joint", "--qa-model", "dnsmos"), fixed)
    frozen = [*data, "--qa", "frozen", "--qa-model", "dnsmos"]
    _one_line_error(run_cli("train-se", *frozen, "--dnsmos-target", "x"), "--dnsmos-target 'x'")
    _one_line_error(run_cli("train-se", *frozen, "--crop-seconds", "0.5"),
                    "--qa-model dnsmos reads 16 kHz audio of at least 1 s")
    _one_line_error(run_cli("train-se", *data, "--qa", "frozen", "--qa-model", "q", "--dnsmos-target", "sig"),
                    "--dnsmos-target: no effect on --qa frozen --qa-model q")
    assert not (tmp_path / "exp").exists()


def test_torch_dnsmos_guides_a_real_run(tmp_path):
    critic = guidance.load_critic(_resolved(tmp_path, qa="frozen", qa_model="dnsmos", arch="dpcrn"), "cpu")
    assert not any(p.requires_grad for p in critic.parameters())
    clean = torch.from_numpy(np.stack([speech(1.0, 120), speech(1.0, 150)]))
    noisy = (clean + 0.05 * torch.randn_like(clean)).requires_grad_(True)
    q_noisy = critic(noisy, None)
    q_noisy.sum().backward()
    assert noisy.grad.abs().sum() > 0
    assert (critic(clean, None) > q_noisy).all()  # DNSMOS OVRL prefers the clean speech
    res = run_cli("train-se", *_data(tmp_path), *TINY, "--exp-dir", tmp_path / "exp", "--qa", "frozen",
                  "--qa-model", "dnsmos", "--dnsmos-target", "0.5*sig+0.5*ovrl")
    assert res.exit_code == 0, res.output


# ---------------------------------------------------------------- joint: --qa-update / --no-qa-update


def test_qa_update_switch_decides_whether_the_critic_learns(tmp_path, monkeypatch):
    qa = make_qa_run(tmp_path / "qa")
    base = {"arch": "lstm", "hidden": 8, "conv_channels": 8, "layers": 1, "qa": "joint", "qa_model": qa}
    learning = _after_steps(_resolved(tmp_path, **base))
    before = load_checkpoint(tmp_path / "qa" / "best.pt")["model"]
    assert any(not torch.equal(v, before[k]) for k, v in learning.critic.scorer.model.state_dict().items())
    assert learning.critic_optimizer is not None

    def no_pesq(*args):
        raise AssertionError("a fixed critic needs no true PESQ")

    monkeypatch.setattr(guidance, "true_pesq", no_pesq)
    fixed = _after_steps(_resolved(tmp_path, **base, qa_update=False))
    assert fixed.critic_optimizer is None
    assert all(torch.equal(v, before[k]) for k, v in fixed.critic.scorer.model.state_dict().items())
    a, b = _weights(learning.model), _weights(fixed.model)  # the second step sees a different critic
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_qa_update_options_are_refused_where_unused(tmp_path):
    data = [*_data(tmp_path), *TINY, "--exp-dir", tmp_path / "exp"]
    _one_line_error(run_cli("train-se", *data, "--qa", "frozen", "--qa-model", "q", "--no-qa-update"),
                    "--qa-update: no effect on --qa frozen")
    _one_line_error(run_cli("train-se", *data, "--qa", "joint", "--qa-model", "q", "--no-qa-update",
                            "--qa-lr", "0.1"), "--qa-lr: no effect on --qa joint --no-qa-update")
    assert not (tmp_path / "exp").exists()


# ---------------------------------------------------------------- learn: MetricGAN+'s learning critic


def test_learn_updates_critic_and_enhancer_and_keeps_a_replay(tmp_path):
    qa = make_qa_run(tmp_path / "qa")
    cfg = _resolved(tmp_path, arch="lstm", hidden=8, conv_channels=8, layers=1, qa="learn", qa_model=qa,
                    pesq_workers=0, replay_size=3)
    before = load_checkpoint(tmp_path / "qa" / "best.pt")["model"]
    start = _weights(_enhancer(cfg).model)
    enh = _after_steps(cfg, n=3)
    assert any(not torch.equal(v, before[k]) for k, v in enh.critic.scorer.model.state_dict().items())
    assert any(not torch.equal(v, start[k]) for k, v in enh.model.state_dict().items())
    assert len(enh.learner.replay) == 3  # 3 steps x 2 items, capped at --replay-size
    figures = enh.learner.epoch_figures()  # the critic's score of fresh batches against true PESQ
    assert set(figures) == {"critic_lcc", "critic_mae"} and 0 <= figures["critic_mae"] < 4
    assert enh.learner.epoch_figures() == {}  # per epoch: read once


def test_learn_from_scratch_starts_from_fresh_weights_of_the_same_architecture(tmp_path):
    qa = make_qa_run(tmp_path / "qa")
    base = dict(arch="lstm", hidden=8, conv_channels=8, layers=1, qa="learn", qa_model=qa, pesq_workers=0)
    trained = load_checkpoint(tmp_path / "qa" / "best.pt")["model"]
    scratch = _enhancer(_resolved(tmp_path, **base, critic_init="scratch")).critic.scorer.model.state_dict()
    assert scratch.keys() == trained.keys()
    assert any(not torch.equal(v, trained[k]) for k, v in scratch.items())
    kept = _enhancer(_resolved(tmp_path, **base)).critic.scorer.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in kept.items())


def test_learn_trains_only_the_head_of_the_shipped_encoder_model(tmp_path):
    critic, optimizer = guidance.build_critic(
        _resolved(tmp_path, arch="dpcrn", qa="learn", qa_model="pesq-wb", pesq_workers=0), "cpu")
    learning = {id(p) for p in critic.scorer.head.parameters()}
    assert all(p.requires_grad == (id(p) in learning) for p in critic.parameters())
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == learning
    assert not critic.scorer.encoder.training  # the frozen encoder keeps its inference behaviour
    # a run's checkpoint keeps the head alone: the encoder is the shipped one
    assert guidance.learnable(critic).state_dict().keys() == critic.scorer.head.state_dict().keys()


def test_pesq_workers_give_the_in_process_numbers():
    rng = np.random.default_rng(0)
    clean = torch.tensor(np.stack([speech(1.5, f0) for f0 in (110, 160, 220)]), dtype=torch.float32)
    noisy = clean + 0.05 * torch.tensor(rng.standard_normal(clean.shape), dtype=torch.float32)
    noisy[2] = 0.0  # nothing to score: NaN, in both
    lengths = torch.tensor([clean.shape[1], clean.shape[1] - 4000, clean.shape[1]])
    here = guidance.true_pesq(clean, noisy, lengths, SR)
    workers = guidance.pesq_workers(2)
    try:
        there = guidance.true_pesq(clean, noisy, lengths, SR, workers)
    finally:
        workers.shutdown()
    assert torch.equal(torch.isnan(here), torch.isnan(there)) and torch.isnan(here[2])
    assert torch.equal(here[:2], there[:2]) and (here[:2] > 0).all()


def test_learn_options_are_checked_and_refused_elsewhere(tmp_path):
    data = [*_data(tmp_path), *TINY, "--exp-dir", tmp_path / "exp"]
    _one_line_error(run_cli("train-se", *data, "--qa", "learn", "--qa-model", "q", "--critic-init", "zero"),
                    "--critic-init 'zero': use pretrained or scratch")
    _one_line_error(run_cli("train-se", *data, "--qa", "frozen", "--qa-model", "q", "--replay-size", "8"),
                    "--replay-size: no effect on --qa frozen")
    _one_line_error(run_cli("train-se", *data, "--qa", "learn", "--qa-model", "dnsmos"),
                    "--qa learn trains its critic and DNSMOS is a fixed one")
    _one_line_error(run_cli("train-se", *data, "--qa", "learn", "--qa-model", tmp_path / "none"),
                    "none: no such run directory")
    broken = Path(make_qa_run(tmp_path / "qa"))
    (broken / "best.pt").write_bytes(b"not a checkpoint")
    _one_line_error(run_cli("train-se", *data, "--qa", "learn", "--qa-model", broken),
                    "best.pt: not a readable mosqa checkpoint")
    assert not (tmp_path / "exp").exists()


def test_learn_cli_run_writes_the_critic_watch_and_resumes(tmp_path):
    qa = make_qa_run(tmp_path / "qa")
    res = run_cli("train-se", *TINY, *_data(tmp_path), "--exp-dir", tmp_path / "exp", "--qa", "learn",
                  "--qa-model", qa, "--pesq-workers", "1", "--steps-per-epoch", "2")
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"critic_lcc", "critic_mae", "train_qa_loss"} <= set(header)
    learned = load_checkpoint(run / "last.pt")["qa"]  # the critic's learned state, to resume from
    assert set(learned) == set(load_checkpoint(Path(qa) / "best.pt")["model"])  # its learning part alone
    res = run_cli("train-se", "--resume", run, "--epochs", "2")
    assert res.exit_code == 0, res.output
    # the bench scores with the critic the run trained, as its best.pt holds it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "bench"))
    import se_bench_table

    critic = se_bench_table.learned_critic(run, "cpu")
    best = load_checkpoint(run / "best.pt")["qa"]
    assert all(torch.equal(v, best[k]) for k, v in critic.trained.state_dict().items())
    assert any(not torch.equal(v, learned[k]) for k, v in load_checkpoint(run / "last.pt")["qa"].items())


# ---------------------------------------------------------------- learn with the intrusive critic


def test_intrusive_critic_reads_the_reference_and_fits_a_batch():
    from mosqa.intrusive_critic import IntrusiveCritic

    torch.manual_seed(0)
    critic = IntrusiveCritic(SR).eval()  # eval: spectral norm's power iteration holds still between calls
    clean = torch.tensor(np.stack([speech(1.0, f0) for f0 in (110, 160, 220, 260)]), dtype=torch.float32)
    enh = (clean + 0.05 * torch.randn_like(clean)).requires_grad_(True)
    lengths = torch.tensor([SR, SR, SR - 3000, SR])
    q = critic(enh, lengths, clean)
    assert q.shape == (4,)
    assert not torch.allclose(q, critic(enh, lengths, clean.roll(1, 0)))  # another reference, another score
    q.sum().backward()
    assert enh.grad is not None and enh.grad.abs().sum() > 0  # the enhancer's gradient flows through it
    padded = enh.detach().clone()
    padded[2, SR - 3000:] = 1.0  # beyond its length: never heard
    assert torch.allclose(critic(padded, lengths, clean)[2], critic(enh.detach(), lengths, clean)[2])
    target = torch.tensor([0.2, 0.4, 0.6, 0.8])
    critic.train()
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = guidance.critic_loss(critic(enh.detach(), lengths, clean), target)
        optimizer.zero_grad(), loss.backward(), optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_learn_with_the_intrusive_critic_trains_both_and_the_bench_reads_it(tmp_path):
    cfg = _resolved(tmp_path, arch="lstm", hidden=8, conv_channels=8, layers=1, qa="learn",
                    qa_model="intrusive", pesq_workers=0, replay_size=3)
    enh = _enhancer(cfg)
    critic_start, enhancer_start = _weights(enh.critic), _weights(enh.model)
    enh = _after_steps(cfg, n=3)
    assert any(not torch.equal(v, critic_start[k]) for k, v in enh.critic.state_dict().items())
    assert any(not torch.equal(v, enhancer_start[k]) for k, v in enh.model.state_dict().items())
    wav, ref, target = enh.learner.replay[0]  # each replayed item keeps its clean reference
    assert wav.shape == ref.shape and not torch.equal(wav, ref) and 0 <= target <= 1
    res = run_cli("train-se", *TINY, *_data(tmp_path), "--exp-dir", tmp_path / "exp", "--qa", "learn",
                  "--qa-model", "intrusive", "--pesq-workers", "0")
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "bench"))
    import se_bench_table

    critic = se_bench_table.learned_critic(run, "cpu")
    best = load_checkpoint(run / "best.pt")["qa"]
    assert all(torch.equal(v, best[k]) for k, v in critic.state_dict().items())
    clean = speech(1.0, 150)
    score = se_bench_table.judged(critic, clean + 0.01, clean, SR, "cpu")
    assert np.isfinite(score)
    assert score != se_bench_table.judged(critic, clean + 0.01, np.roll(clean, 4000), SR, "cpu")


def test_the_intrusive_critic_only_learns(tmp_path):
    data = [*_data(tmp_path), *TINY, "--exp-dir", tmp_path / "exp"]
    _one_line_error(run_cli("train-se", *data, "--qa", "frozen", "--qa-model", "intrusive"),
                    "--qa-model intrusive starts untrained and learns beside the enhancer: use it with "
                    "--qa learn")
    assert not (tmp_path / "exp").exists()


# ---------------------------------------------------------------- learn: the critic's warm-up on a ladder


@pytest.fixture(scope="module")
def ladder_run(tmp_path_factory):
    """A tiny lstm enhancer trained two epochs from scratch with --keep-every 1: a ladder of two."""
    root = tmp_path_factory.mktemp("ladder")
    res = run_cli("train-se", *TINY, *_data(root), "--exp-dir", root / "exp", "--lr", "0.01", "--epochs", "2",
                  "--keep-every", "1")
    assert res.exit_code == 0, res.output
    (run,) = runs_in(root / "exp")
    return run


def test_keep_every_leaves_weights_only_snapshots_that_load(ladder_run):
    from mosqa.se_models import build_se_model
    from mosqa.train_se import init_weights

    snaps = sorted(p.name for p in ladder_run.glob("epoch_*.pt"))
    assert snaps == ["epoch_001.pt", "epoch_002.pt"]
    state = torch.load(ladder_run / "epoch_001.pt", weights_only=True)
    assert set(state) == {"model", "epoch"} and state["epoch"] == 1  # a ladder rung, not a resume point
    cfg = _resolved(ladder_run.parent, init=str(ladder_run))
    model = build_se_model(cfg)
    init_weights(model, ladder_run / "epoch_001.pt")
    last = load_checkpoint(ladder_run / "last.pt")["model"]
    assert all(torch.equal(v, last[k]) for k, v in torch.load(ladder_run / "epoch_002.pt",
                                                                 weights_only=True)["model"].items())
    assert any(not torch.equal(v, last[k]) for k, v in model.state_dict().items())


def _warm(tmp_path, ladder_run, *extra, steps=6):
    snaps = ",".join(str(p) for p in sorted(ladder_run.glob("epoch_*.pt")))
    return run_cli("train-se", *TINY, *_data(tmp_path), "--exp-dir", tmp_path / "exp", "--init", ladder_run,
                   "--qa", "learn", "--qa-model", "intrusive", "--pesq-workers", "0",
                   "--critic-warmup", steps, "--critic-warmup-from", snaps, *extra)


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory, ladder_run):
    """A learning run whose critic warmed up 6 steps (the LCC target out of reach) on the ladder."""
    root = tmp_path_factory.mktemp("warm")
    res = _warm(root, ladder_run, "--critic-warmup-lcc", "1")
    assert res.exit_code == 0, res.output
    (run,) = runs_in(root / "exp")
    return run


def test_critic_warmup_teaches_the_critic_on_the_ladder_and_keeps_it(warm_run):
    import yaml

    summary = yaml.safe_load((warm_run / "critic_warm.yaml").read_text())
    assert summary["steps"] == 6 and summary["held_out"] == 2 * 2  # both rungs on both validation mixtures
    assert summary["qa_model"] == "intrusive" and not summary["reached"] and len(summary["ladder"]) == 2
    assert np.isfinite(summary["lcc_before"]) and np.isfinite(summary["lcc_after"])
    assert summary["lcc_after"] > summary["lcc_before"] and summary["mae_after"] != summary["mae_before"]
    log = (warm_run / "train.log").read_text()
    assert f"critic warm-up: held-out LCC {summary['lcc_before']:.3f} -> {summary['lcc_after']:.3f}" in log
    warm = torch.load(warm_run / "critic_warm.pt", weights_only=True)
    assert warm["qa_model"] == "intrusive"
    assert "critic_lcc" in (warm_run / "metrics.csv").read_text().splitlines()[0]  # guidance's watch goes on


def test_critic_warmup_stops_once_the_held_out_lcc_is_reached(tmp_path, ladder_run, monkeypatch):
    import yaml

    import mosqa.warmup

    measured = iter([0.1, 0.5, 0.9, 0.95])  # before, then every 20 / CHECKS = 2 steps
    monkeypatch.setattr(mosqa.warmup.HeldOut, "agreement",
                        lambda self, critic: {"critic_lcc": next(measured), "critic_mae": 1.0})
    res = _warm(tmp_path, ladder_run, "--critic-warmup-lcc", "0.8", steps=20)
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    summary = yaml.safe_load((run / "critic_warm.yaml").read_text())
    assert summary["steps"] == 4 and summary["reached"]
    assert (summary["lcc_before"], summary["lcc_after"]) == (0.1, 0.9)


def test_critic_init_file_starts_warm_and_skips_the_warmup(tmp_path, ladder_run, warm_run):
    warm = warm_run / "critic_warm.pt"
    cfg = _resolved(tmp_path, init=str(ladder_run), qa="learn", qa_model="intrusive", pesq_workers=0,
                    critic_warmup=6, critic_init=str(warm))
    critic = _enhancer(cfg).critic
    state = torch.load(warm, weights_only=True)["qa"]
    assert all(torch.equal(v, state[k]) for k, v in critic.state_dict().items())
    res = _warm(tmp_path, ladder_run, "--critic-init", warm)
    assert res.exit_code == 0, res.output
    (run,) = runs_in(tmp_path / "exp")
    log = (run / "train.log").read_text()
    assert f"critic warm from {warm} (--critic-warmup skipped)" in log and "critic warm-up:" not in log
    assert not (run / "critic_warm.pt").exists()


def test_critic_warmup_refuses_what_cannot_work_in_one_line(tmp_path, ladder_run, warm_run):
    data = [*_data(tmp_path), *TINY, "--exp-dir", tmp_path / "exp"]
    learn = [*data, "--qa", "learn", "--qa-model", "intrusive", "--pesq-workers", "0"]
    _one_line_error(run_cli("train-se", *learn, "--critic-warmup", "5"),
                    "--critic-warmup: the critic learns from enhancers' outputs")
    _one_line_error(run_cli("train-se", *learn, "--init", ladder_run, "--critic-warmup", "5",
                            "--critic-warmup-lcc", "1.5"),
                    "--critic-warmup-lcc must be a finite number in (0, 1]")
    _one_line_error(run_cli("train-se", *learn, "--init", ladder_run, "--critic-warmup", "-1"),
                    "--critic-warmup must be a whole number >= 0")
    _one_line_error(run_cli("train-se", *learn, "--init", ladder_run, "--critic-warmup-lcc", "0.5"),
                    "--critic-warmup-lcc: no effect on --qa learn")
    _one_line_error(run_cli("train-se", *data, "--qa", "frozen", "--qa-model", "q", "--critic-warmup", "5"),
                    "--critic-warmup: no effect on --qa frozen")
    _one_line_error(run_cli("train-se", *learn, "--init", ladder_run, "--critic-warmup", "5",
                            "--critic-warmup-from", tmp_path / "none"),
                    "none: no such checkpoint, nor a folder")
    other = tmp_path / "other"
    assert run_cli("train-se", *TINY, "--hidden", "12", *_data(tmp_path), "--exp-dir", other).exit_code == 0
    (other_run,) = runs_in(other)
    _one_line_error(run_cli("train-se", *learn, "--init", ladder_run, "--critic-warmup", "5",
                            "--critic-warmup-from", other_run / "best.pt"),
                    "best.pt: its enhancer does not fit this run's model")
    qa = make_qa_run(tmp_path / "qa")
    _one_line_error(run_cli("train-se", *data, "--qa", "learn", "--qa-model", qa, "--pesq-workers", "0",
                            "--critic-init", warm_run / "critic_warm.pt"),
                    "not a warm critic of --qa-model")
    assert not (tmp_path / "exp").exists()
