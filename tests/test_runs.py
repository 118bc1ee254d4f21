"""The run skeleton both trainers share (mosqa.runs) and what the two commands have in common."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import QA_TINY, run_cli, runs_in, write_pairs

from mosqa.errors import MosqaError
from mosqa.runs import Distributed, Run, fit, load_checkpoint, optimiser_step, resolve_config

ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp_path, **extra) -> dict:
    return {"exp_dir": str(tmp_path), "name": "toy", "early_stop_metric": "loss", "patience": 0, "epochs": 2,
            "seed": 0, **extra}


def _toy_fit(run: Run, scaler, fail_at=None):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run.hold(model=model, optimizer=opt, scaler=scaler)

    def train_epoch(epoch):
        if epoch == fail_at:
            raise KeyboardInterrupt
        loss = model(torch.ones(1, 2)).pow(2).sum()
        optimiser_step(loss, scaler, [(opt, model.parameters())], grad_clip=1.0)
        return {"train_loss": loss.item(), "lr": 0.1}

    return fit(run, train_epoch, lambda epoch: {"valid_loss": 1.0 / (epoch + 1)}, columns=("train_loss",))


def _scaler():
    """An enabled scaler whose scale doubles after every finite step, so its state is visible."""
    return torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=1)


def test_state_holders_are_saved_and_restored_as_one(tmp_path):
    """Including an enabled AMP scaler's state (the CPU scaler stands in for CUDA's)."""
    dist = Distributed("cpu")
    cfg = _cfg(tmp_path)
    with Run("qa", cfg, {"epochs": 2}, dist, "min") as run:
        path = _toy_fit(run, _scaler())
    state = load_checkpoint(path / "last.pt")
    assert state["epoch"] == 2 and state["scaler"]["scale"] == 32.0 and set(state) >= {"model", "optimizer",
                                                                                          "early_stop"}
    assert yaml.safe_load((path / "config.yaml").read_text()) == {"kind": "qa", "epochs": 2}
    resumed = _scaler()
    with Run("qa", cfg | {"epochs": 3}, {"epochs": 3}, dist, "min", resume=path) as run:
        _toy_fit(run, resumed)
    assert load_checkpoint(path / "last.pt")["scaler"]["scale"] == 64.0  # went on from 32, not from 8
    assert load_checkpoint(path / "best.pt")["epoch"] == 3


def test_a_run_interrupted_before_its_first_checkpoint_leaves_nothing(tmp_path):
    dist = Distributed("cpu")
    with pytest.raises(KeyboardInterrupt), Run("qa", _cfg(tmp_path), {}, dist, "min") as run:
        assert run.path.name.startswith(".toy") and run.path.is_dir() and not run.started
        _toy_fit(run, torch.amp.GradScaler("cpu", enabled=False), fail_at=0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), Run("qa", _cfg(tmp_path), {}, dist, "min") as run:
        _toy_fit(run, torch.amp.GradScaler("cpu", enabled=False), fail_at=1)
    (kept,) = runs_in(tmp_path)  # after its first checkpoint a run stays, to be resumed
    assert kept.name.startswith("toy") and (kept / "last.pt").is_file()


def test_config_kind_and_renamed_keys(tmp_path, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text("kind: se\nold: 3\n")
    cfg, explicit = resolve_config({"new": 1}, conf, {}, kind="se", renamed={"old": "new"})
    assert cfg == {"new": 3} and explicit == {"new"}
    assert "'old' is deprecated, use 'new'" in capsys.readouterr().err
    with pytest.raises(MosqaError, match="this is a train-se config; train-qa needs a train-qa one"):
        resolve_config({"new": 1}, conf, {}, kind="qa", renamed={"old": "new"})


def test_registry_names_match_the_registries():
    from mosqa import guidance, names
    from mosqa.losses import LOSSES, SPECTRAL_LOSSES
    from mosqa.models import MODELS
    from mosqa.se_models import SE_MODELS
    from mosqa.train import METRIC_MODES, OPTIMIZERS, SCHEDULERS
    from mosqa.train_se import METRIC_MODES as SE_METRIC_MODES
    from mosqa.train_se import SCHEDULERS as SE_SCHEDULERS

    pairs = [(names.QA_ARCHS, MODELS), (names.QA_LOSSES, LOSSES), (names.QA_OPTIMIZERS, OPTIMIZERS),
             (names.QA_SCHEDULERS, SCHEDULERS), (names.QA_METRICS, METRIC_MODES), (names.SE_ARCHS, SE_MODELS),
             (names.SE_LOSSES, SPECTRAL_LOSSES), (names.SE_SCHEDULERS, SE_SCHEDULERS),
             (names.SE_METRICS, SE_METRIC_MODES), (names.QA_MODES, guidance.QA_TERMS)]
    for listed, registry in pairs:
        assert listed == tuple(registry)


@pytest.mark.parametrize("command", ["train-qa", "train-se"])
def test_help_needs_no_torch_and_names_every_default(command):
    code = ("import sys\nfrom cli.main import app\ntry:\n    app([sys.argv[1], '--help'])\n"
            "except SystemExit:\n    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO TORCH')")
    env = {"PYTHONPATH": str(ROOT), "COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=60)
    assert done.stdout.strip().endswith("NO TORCH"), done.stdout[-500:] + done.stderr[-2000:]
    for name in ("lstmcan", "rmsprop", "plateau") if command == "train-qa" else ("dpcrn", "sisnr", "joint"):
        assert name in done.stdout  # the registries' names, from mosqa.names
    import importlib
    import inspect

    module = importlib.import_module(f"cli.{command.replace('-', '_')}")
    for name, param in inspect.signature(module.command).parameters.items():
        option = param.default
        if option.hidden:
            continue
        says_default = any(w in option.help for w in ("Default", "Required"))
        assert option.help and (says_default or "default" in (option.rich_help_panel or "")), name


@pytest.mark.parametrize("command", ["train-qa", "train-se"])
def test_zero_epochs_is_an_error(tmp_path, corpus, command):
    if command == "train-qa":
        args = ["--train", corpus["train"], "--valid", corpus["valid"], *QA_TINY]
    else:
        train, valid = write_pairs(tmp_path / "d")
        args = ["--train", train, "--valid", valid, "--arch", "lstm", "--no-dnsmos", "--device", "cpu"]
    res = run_cli(command, *args, "--epochs", "0", "--exp-dir", tmp_path / "exp")
    assert res.exit_code == 2 and "--epochs must be a positive integer, got 0" in res.output, res.output
    assert not (tmp_path / "exp").exists()


def test_train_qa_on_a_corrupt_file_leaves_no_run(tmp_path, corpus):
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really audio")
    bad = tmp_path / "train.list"
    lines = corpus["train"].read_text().splitlines()
    bad.write_text("\n".join([lines[0], *(f"{corpus['train'].parent / ln}" for ln in lines[1:4]),
                              f"{tmp_path / 'bad.wav'},3.0,snr0"]) + "\n")
    res = run_cli("train-qa", "--train", bad, "--valid", corpus["valid"], *QA_TINY,
                  "--exp-dir", tmp_path / "exp")
    assert res.exit_code == 2 and "bad.wav" in res.output, res.output
    assert [p.name for p in (tmp_path / "exp").glob("*")] in ([], [".cache"])  # no run, not even hidden


def test_no_arch_and_no_config_is_stated(corpus):
    import io

    from rich.console import Console

    from mosqa.train import resolve

    out = io.StringIO()
    cfg = resolve(None, {"train": str(corpus["train"]), "valid": str(corpus["valid"])},
                  console=Console(file=out, width=200))
    assert cfg["arch"] == "qualitynet" and "no --arch (and none in a config)" in out.getvalue()


def test_cosine_schedule_resumes_an_older_cosine_annealing_state_and_replans():
    from mosqa.runs import cosine_schedule

    def sgd():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    old_opt = sgd()
    old = torch.optim.lr_scheduler.CosineAnnealingLR(old_opt, T_max=2)
    for _ in range(2):
        old_opt.step()
        old.step()
    opt = sgd()
    opt.load_state_dict(old_opt.state_dict())  # lr 0: the end of the old 2-step curve
    replanned = cosine_schedule(opt, 4)
    replanned.load_state_dict(old.state_dict())
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05) and replanned.last_epoch == 2
