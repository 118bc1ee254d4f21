"""train-qa under torchrun: two CPU processes on the gloo backend train one model together, and a resume
of a run another process holds is refused on every rank."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import QA_TINY, make_corpus

from mosqa.runs import Distributed, RunLock


@pytest.mark.slow
def test_two_process_gloo_run_completes(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", n=16)
    exp = tmp_path / "exp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "cli.main", "train-qa"]
    cmd = [*torchrun, "--train", str(corpus["train"]), "--valid", str(corpus["valid"]), "--exp-dir", str(exp),
           *QA_TINY, "--epochs", "2"]
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env, cwd=root)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (run_dir,) = exp.glob("qualitynet_qn*")  # one run directory, made by rank 0 only
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert "x2" in (run_dir / "train.log").read_text()  # both processes took part
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and not any(k.startswith("module.") for k in state["model"])

    # Rank 0 takes the run's lock, every rank hears whether it got it: a refused job stops whole (no rank
    # left waiting), and a resume once the lock is free continues the run.
    resume = [*torchrun, "--resume", str(run_dir), "--epochs", "3"]
    with RunLock(run_dir, Distributed("cpu")):
        refused = subprocess.run(resume, capture_output=True, text=True, timeout=150, env=env, cwd=root)
    assert refused.returncode != 0 and f"(pid {os.getpid()})" in refused.stderr, refused.stderr[-3000:]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=150, env=env, cwd=root)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 3
