"""The run skeleton both trainers share (mosqa.runs) and what the two commands have in common."""

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import threading
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
    assert res.exit_code == 2 and "--epochs must be a whole number >= 1, got 0" in res.output, res.output
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


# ---------------------------------------------------------------- one writer per run (issue 22)


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, corpus):
    """A finished one-epoch train-qa run, asked for --amp on CPU; tests resume copies of it."""
    exp = tmp_path_factory.mktemp("lock") / "exp"
    res = run_cli("train-qa", "--train", corpus["train"], "--valid", corpus["valid"], *QA_TINY,
                  "--epochs", "1", "--amp", "--exp-dir", exp)
    assert res.exit_code == 0, res.output
    (run,) = runs_in(exp)
    return run, res.output


@pytest.fixture
def run_copy(one_epoch_run, tmp_path) -> Path:
    shutil.copytree(one_epoch_run[0], tmp_path / "run")
    return tmp_path / "run"


def _epoch_lines(run: Path) -> list:
    return [line for line in (run / "train.log").read_text().splitlines() if line.startswith("epoch ")]


def test_amp_on_cpu_is_warned_about_and_recorded_off(one_epoch_run):
    run, output = one_epoch_run
    assert "warning: --amp: mixed precision needs CUDA" in output
    assert yaml.safe_load((run / "config.yaml").read_text())["amp"] is False
    assert b"\r" not in (run / "metrics.csv").read_bytes()  # CSV lines end in \n, as every text mosqa writes


def test_two_resumes_at_once_only_one_trains(run_copy, monkeypatch):
    """The first resume is held inside its epoch loop (so the two overlap whatever the machine's speed)
    while the second starts; the second is refused, naming the holder, and the first then finishes."""
    import mosqa.train

    holding, release = threading.Event(), threading.Event()

    def held_fit(*args, **kwargs):
        holding.set()
        assert release.wait(60)
        return fit(*args, **kwargs)

    monkeypatch.setattr(mosqa.train, "fit", held_fit)
    first: dict = {}
    thread = threading.Thread(target=lambda: first.update(
        out=mosqa.train.train(resume=run_copy, overrides={"epochs": 3, "threads": 1})))
    thread.start()
    try:
        assert holding.wait(60), "the first resume never reached its epoch loop"
        second = run_cli("train-qa", "--resume", run_copy, "--epochs", "3")
    finally:
        release.set()
        thread.join(120)
    errors = [line for line in second.output.splitlines() if line.startswith("error:")]
    assert second.exit_code == 2 and "Traceback" not in second.output, second.output
    assert len(errors) == 1 and f"(pid {os.getpid()})" in errors[0] and "training this run" in errors[0]
    assert first["out"] == run_copy  # the first trained to the end
    assert [line.split(":")[0] for line in _epoch_lines(run_copy)] == ["epoch 1/1", "epoch 2/3", "epoch 3/3"]
    assert load_checkpoint(run_copy / "last.pt")["epoch"] == 3


def test_a_live_holder_is_named_and_a_dead_one_blocks_nothing(run_copy):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom mosqa.runs import Distributed, RunLock\n"
         "lock = RunLock(sys.argv[1], Distributed('cpu'))\nprint('held', flush=True)\ntime.sleep(300)",
         str(run_copy)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = run_cli("train-qa", "--resume", run_copy, "--epochs", "2")
        assert refused.exit_code == 2 and f"(pid {holder.pid})" in refused.output, refused.output
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the .lock file stays with the dead pid in it
        holder.wait()
    assert (run_copy / ".lock").read_text().strip() == str(holder.pid)
    resumed = run_cli("train-qa", "--resume", run_copy, "--epochs", "2")
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(run_copy / "last.pt")["epoch"] == 2


def _hashes(folder: Path) -> dict:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("epochs", ["1", "0"])
def test_resume_to_no_more_epochs_says_nothing_was_trained_and_writes_nothing(run_copy, epochs):
    before = _hashes(run_copy)
    res = run_cli("train-qa", "--resume", run_copy, "--epochs", epochs)
    if epochs == "0":
        assert res.exit_code == 2 and "--epochs must be a whole number >= 1" in res.output, res.output
    else:
        assert res.exit_code == 0, res.output
        assert "nothing trained: it has done 1 epoch(s) and --epochs is 1" in res.output
    assert _hashes(run_copy) == before


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` unwritable for this process: mode 555, or for root (whom modes do not stop) a read-only
    bind mount; skips the test where neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    mount = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"root, and no bind mount here: {mount.stderr.decode().strip()}")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode:
            pytest.skip("root, and no read-only remount here")
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_resume_of_a_read_only_run_says_so_before_training(run_copy):
    before = _hashes(run_copy)
    with read_only(run_copy):
        res = run_cli("train-qa", "--resume", run_copy, "--epochs", "2")
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert len(errors) == 1 and "--resume" in errors[0] and "not writable" in errors[0], errors
    assert "epoch" not in res.output and _hashes(run_copy) == before
