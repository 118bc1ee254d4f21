"""The enhancement bench's helpers: the held-out mixtures as files, and the seed table (mean ± sd, paired
differences to the control)."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, speech

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
sys.path[:0] = [str(RECIPES / "tools"), str(RECIPES / "bench")]  # make_mixtures, se_bench_table
import make_mixtures  # noqa: E402
import se_bench_table  # noqa: E402


def test_mixtures_are_written_at_their_snr_and_rerun_keeps_them(tmp_path):
    for i in range(3):
        sf.write(tmp_path / f"s{i}.wav", speech(1.0 + 0.5 * i, 100 + 30 * i), SR)
    noise = np.random.default_rng(0).standard_normal(3 * SR).astype(np.float32) * 0.1
    sf.write(tmp_path / "noise.wav", noise, SR)
    (tmp_path / "clean.txt").write_text("s0.wav\ns1.wav\ns2.wav\n")
    out = tmp_path / "mix"
    args = [str(tmp_path / "clean.txt"), str(tmp_path / "noise.wav"), str(out), "--items", "4",
            "--snr-min", "5", "--snr-max", "10", "--max-seconds", "1.2"]
    assert make_mixtures.main(args) == 0
    pairs = (out / "pairs.list").read_text().splitlines()
    assert len(pairs) == 4
    lengths = []
    for line in pairs:
        noisy, clean = (sf.read(out / p)[0] for p in line.split(","))
        assert len(noisy) == len(clean) <= int(1.2 * SR)
        snr = 10 * np.log10(np.sum(clean**2) / np.sum((noisy - clean) ** 2))
        assert 4.9 < snr < 10.1  # 16-bit files: within rounding of the drawn 5-10 dB
        lengths.append(len(clean))
    assert lengths == [SR, int(1.2 * SR), int(1.2 * SR), SR]  # clean files walked in order, cut at 1.2 s
    before = (out / "noisy" / "mix0001.wav").read_bytes()
    assert make_mixtures.main(args) == 0 and (out / "noisy" / "mix0001.wav").read_bytes() == before
    assert make_mixtures.main([str(tmp_path / "nothing.txt"), str(tmp_path / "noise.wav"), str(out)]) == 2


def _scores(folder, label, seed, values: dict):
    """One score CSV of two files whose metrics average to `values`."""
    rows = []
    for offset in (-0.1, 0.1):
        rows.append({"file": f"f{offset}", "label": label, "seed": seed,
                     **{m: values.get(m, 1.0) + offset for m in se_bench_table.METRICS}})
    with open(folder / f"{label}_{seed}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_seed_table_gives_mean_sd_and_paired_differences(tmp_path):
    scores = tmp_path / "scores"
    scores.mkdir()
    _scores(scores, "noisy", "", {"pesq": 1.2, "ovrl": 2.0})
    control = {1: 2.0, 2: 2.2, 3: 2.1}
    guided = {1: 2.3, 2: 2.4, 3: 2.5}
    for seed in (1, 2, 3):
        _scores(scores, "control", seed, {"ovrl": control[seed], "pesq": 1.8})
        _scores(scores, "frozen_dnsmos", seed, {"ovrl": guided[seed], "pesq": 1.8 - 0.01 * seed})
    rows = se_bench_table.summary(se_bench_table.seed_means(sorted(scores.glob("*.csv"))))
    assert [r["label"] for r in rows] == ["noisy", "control", "frozen_dnsmos"]
    noisy, ctrl, g = rows
    assert noisy["seeds"] == 1 and noisy["ovrl"] == pytest.approx(2.0) and np.isnan(noisy["ovrl_sd"])
    assert "d_ovrl" not in noisy and "d_ovrl" not in ctrl
    assert ctrl["ovrl"] == pytest.approx(2.1)
    assert ctrl["ovrl_sd"] == pytest.approx(np.std([2.0, 2.2, 2.1], ddof=1))
    diff = [guided[s] - control[s] for s in (1, 2, 3)]
    assert g["d_ovrl"] == pytest.approx(np.mean(diff))
    assert g["d_ovrl_sd"] == pytest.approx(np.std(diff, ddof=1))
    assert g["d_pesq"] == pytest.approx(-0.02)
    # a judge's error is |prediction - PESQ| per file, then averaged: each file's qa is 1.0 - 1.8 off
    assert ctrl["qa_err"] == pytest.approx(0.8) and ctrl["critic_err"] == pytest.approx(0.8)
    text = se_bench_table.write_table(rows, tmp_path / "table")
    assert "| frozen_dnsmos | 3 |" in text and "0.300 ± 0.100" in text  # Δ OVRL vs control
    assert "QA |err|" in text and "critic |err|" in text
    with open(tmp_path / "table.csv") as f:
        assert [r["label"] for r in csv.DictReader(f)] == ["noisy", "control", "frozen_dnsmos"]
    assert (tmp_path / "table.md").read_text() == text


def test_spectral_gating_row_removes_stationary_noise():
    from mosqa.metrics import si_snr

    clean = np.concatenate([np.zeros(SR, np.float32), speech(2.0, 140)])  # a pause, then speech
    noisy = clean + 0.02 * np.random.default_rng(1).standard_normal(len(clean)).astype(np.float32)
    gated = se_bench_table.CLASSIC["spectral_gating"](noisy, SR)
    assert gated.shape == noisy.shape and gated.dtype == np.float32
    pause = slice(SR // 4, 3 * SR // 4)
    assert np.sum(gated[pause] ** 2) < 0.25 * np.sum(noisy[pause] ** 2)  # the pause's noise: > 6 dB down
    assert si_snr(clean, gated) > si_snr(clean, noisy)


def test_critic_watch_lists_each_learning_run_by_epoch(tmp_path):
    runs = tmp_path / "runs"
    for tag, rows in (("learn_s1", [(1, 0.61, 0.40), (2, 0.72, 0.31)]), ("control_s1", [])):
        run = runs / tag / "r"
        run.mkdir(parents=True)
        header = "epoch,train_loss" + (",critic_lcc,critic_mae" if rows else "")
        lines = [f"{e},0.1,{lcc},{mae}" for e, lcc, mae in rows] or ["1,0.1"]
        (run / "metrics.csv").write_text("\n".join([header, *lines]) + "\n")
    text = se_bench_table.critic_watch(runs, tmp_path / "watch")
    assert "| learn_s1 | 1: 0.610 / 0.400, 2: 0.720 / 0.310 |" in text and "control" not in text
    assert (tmp_path / "watch.md").read_text() == text
    with pytest.raises(se_bench_table.MosqaError, match="no run with a learning critic"):
        se_bench_table.critic_watch(runs / "control_s1", tmp_path / "none")


def test_bench_keeps_run_state_and_a_fresh_checkout_restores_it(tmp_path):
    """stage=keep copies what each run needs to go on (baseline: its checkpoints; a scored fine-tune: its
    score; an unfinished one: last.pt); on an empty OUT, stage 3 restores them, resumes the unfinished run
    and skips the scored one."""
    import os
    import subprocess

    script = RECIPES / "bench" / "bench_se.sh"
    out, keep, corpus, bin_dir = (tmp_path / d for d in ("out", "keep", "corpus", "bin"))
    (corpus / "speech").mkdir(parents=True)
    runs = {"baseline": ["last.pt", "best.pt"], "control_s1": ["last.pt", "best.pt"], "learn_s1": ["last.pt"]}
    for name, checkpoints in runs.items():
        run = out / "runs" / name / f"{name}_run"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"name: {name}\n")
        (run / "metrics.csv").write_text("epoch,valid_pesq\n1,2.0\n2,2.1\n")
        for c in checkpoints:
            (run / c).write_bytes(b"state of " + name.encode())
    (out / "scores").mkdir()
    (out / "scores" / "control_s1.csv").write_text("file,label,seed\n")
    # a stand-in mosqa that records how it was called: the restored unfinished run must be resumed
    bin_dir.mkdir()
    (bin_dir / "mosqa").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\necho run-dir\n')
    (bin_dir / "mosqa").chmod(0o755)
    env = {**os.environ, "OUT": str(out), "KEEP": str(keep), "CORPUS": str(corpus), "SEEDS": "1",
           "GUIDES": "learn --qa learn", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["bash", str(script)], env={**env, "stage": "keep"}, check=True, capture_output=True)
    kept = {name: sorted(p.name for p in (keep / name).iterdir()) for name in runs}
    assert kept == {"baseline": ["best.pt", "config.yaml", "last.pt", "metrics.csv"],
                    "control_s1": ["config.yaml", "metrics.csv", "score.csv"],
                    "learn_s1": ["config.yaml", "last.pt", "metrics.csv"]}

    fresh = tmp_path / "fresh"
    (fresh / "runs").mkdir(parents=True)
    (fresh / "runs" / "baseline.done").write_text("baseline-dir\n")
    # stage 3 then scores the resumed run with the real scorer, which finds no test set: only its
    # training call is checked
    fresh_env = {**env, "OUT": str(fresh), "stage": "3", "stop_stage": "3"}
    done = subprocess.run(["bash", str(script)], env=fresh_env, capture_output=True, text=True)
    assert "control_s1 restored" in done.stdout and "learn_s1 restored" in done.stdout
    assert (fresh / "scores" / "control_s1.csv").read_text() == "file,label,seed\n"
    assert (fresh / "runs" / "learn_s1" / "learn_s1_kept" / "last.pt").read_bytes() == b"state of learn_s1"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith(f"train-se --resume {fresh}/runs/learn_s1/learn_s1_kept")
