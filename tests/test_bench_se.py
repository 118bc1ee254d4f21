"""The enhancement bench's helpers: the held-out mixtures as files, and the seed table (mean ± sd, paired
differences to the control)."""

import csv
import shutil
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

# bench_se.sh's base by default: what a fine-tune kept from it records in base.txt
DEFAULT_BASE = "baseline_long: 2400 steps of 2 s crops from baseline: 12000 steps of 1 s crops"


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
    assert "| frozen_dnsmos | 3 |" in text and "| +0.300 ± 0.100 |" in text  # Δ OVRL vs control, signed
    assert "| -0.020 ± 0.010 |" in text  # Δ PESQ
    assert "QA |err|" in text and "critic |err|" in text and "Δ listener" in text
    assert f"pesq-wb (--qa-model of the *_pesqwb runs): campaign row {se_bench_table.campaign_row()}." in text
    assert isinstance(se_bench_table.campaign_row(), int)
    with open(tmp_path / "table.csv") as f:
        assert [r["label"] for r in csv.DictReader(f)] == ["noisy", "control", "frozen_dnsmos"]
    assert (tmp_path / "table.md").read_text() == text


def test_a_column_scored_after_a_run_was_kept_shows_a_dash(tmp_path):
    """Issue 20's fine-tunes were scored before the listener column: their cells and the Δ paired with
    them show –, the other columns as before."""
    scores = tmp_path / "scores"
    scores.mkdir()
    for seed in (1, 2):
        _scores(scores, "control", seed, {"pesq": 2.0})
        _scores(scores, "learn", seed, {"pesq": 2.1 + 0.1 * seed})
    for path in scores.glob("control_*.csv"):
        with open(path, newline="") as f:
            rows = [{k: v for k, v in r.items() if k != "listener"} for r in csv.DictReader(f)]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    rows = se_bench_table.summary(se_bench_table.seed_means(sorted(scores.glob("*.csv"))))
    text = se_bench_table.write_table(rows, tmp_path / "table")
    control, learn = (line.split(" | ") for line in text.splitlines() if line.startswith(("| control",
                                                                                         "| learn")))
    listener = se_bench_table.COLUMNS.index("listener") + 2
    assert control[listener] == "–" and learn[listener] == "1.000 ± 0.000"
    deltas = 2 + len(se_bench_table.COLUMNS)
    assert learn[deltas] == "+0.250 ± 0.071"  # Δ PESQ
    assert learn[deltas + se_bench_table.DELTAS.index("listener")] == "–"


def _test_set(folder, n: int = 2):
    """n noisy,clean mixtures as files and their pairs list, as make_mixtures writes them."""
    rng = np.random.default_rng(3)
    (folder / "noisy").mkdir(parents=True)
    (folder / "clean").mkdir()
    lines = []
    for i in range(n):
        clean = speech(1.0 + 0.25 * i, 120 + 40 * i)
        sf.write(folder / "clean" / f"mix{i}.wav", clean, SR)
        noisy = clean + 0.03 * rng.standard_normal(len(clean)).astype(np.float32)
        sf.write(folder / "noisy" / f"mix{i}.wav", noisy, SR)
        lines.append(f"noisy/mix{i}.wav,clean/mix{i}.wav")
    (folder / "pairs.list").write_text("\n".join(lines) + "\n")
    return folder / "pairs.list"


def test_score_gives_predicts_listener_mos_and_fills_it_into_a_kept_score(tmp_path):
    from test_train_se import make_qa_run

    from mosqa.predict import Options, score_files

    pairs = _test_set(tmp_path / "test")
    qa = make_qa_run(tmp_path / "qa")  # a tiny judge: the listener column is what is looked at
    out = tmp_path / "noisy.csv"
    rows = se_bench_table.score(pairs, out, "noisy", None, qa_model=qa)
    predicted = score_files(sorted((tmp_path / "test" / "noisy").glob("*.wav")), Options(engine="torch"))
    assert [r["listener"] for r in rows] == pytest.approx([p["listener_mos"] for p in predicted], abs=1e-3)
    assert all(1.0 <= r["listener"] <= 5.0 for r in rows)
    # a score kept from before the column existed: only the listener column is computed, the rest kept
    with open(out, newline="") as f:
        kept = [{k: v for k, v in r.items() if k != "listener"} | {"pesq": "9.9999"}
                for r in csv.DictReader(f)]
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(kept[0]))
        w.writeheader()
        w.writerows(kept)
    se_bench_table.score(pairs, out, "noisy", None, qa_model=qa)
    with open(out, newline="") as f:
        filled = list(csv.DictReader(f))
    assert [r["pesq"] for r in filled] == ["9.9999", "9.9999"]
    assert [float(r["listener"]) for r in filled] == pytest.approx([r["listener"] for r in rows], abs=1e-4)
    before = out.read_bytes()
    se_bench_table.score(pairs, out, "noisy", None, qa_model=tmp_path / "no such model")  # complete: no work
    assert out.read_bytes() == before


def test_pick_takes_the_best_validation_epoch_of_the_runs_named(tmp_path):
    runs = tmp_path / "runs"
    for name, pesq in (("frozen_w0.03_s1", [1.9, 2.0]), ("frozen_w0.1_s1", [2.05]), ("frozen_w0.3_s1", [1.5]),
                       ("learn_w0.1_s1", [2.5])):
        (runs / name / "r").mkdir(parents=True)
        (runs / name / "r" / "metrics.csv").write_text("epoch,valid_pesq\n" + "".join(
            f"{e},{v}\n" for e, v in enumerate(pesq, 1)))
    assert se_bench_table.pick(runs, "frozen_w") == "frozen_w0.1_s1"
    assert se_bench_table.main(["pick", str(runs), "learn_w"]) == 0
    with pytest.raises(se_bench_table.MosqaError, match="no run grl_w"):
        se_bench_table.pick(runs, "grl_w")


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
    (runs / "learn_s1" / "r" / "critic_warm.yaml").write_text("lcc_before: 0.2\nlcc_after: 0.81\n")
    text = se_bench_table.critic_watch(runs, tmp_path / "watch")
    assert "| learn_s1 | warm-up (held out): 0.200 → 0.810; 1: 0.610 / 0.400, 2: 0.720 / 0.310 |" in text
    assert "control" not in text
    assert (tmp_path / "watch.md").read_text() == text
    with pytest.raises(se_bench_table.MosqaError, match="no run with a learning critic"):
        se_bench_table.critic_watch(runs / "control_s1", tmp_path / "none")


def test_bench_keeps_run_state_and_a_fresh_checkout_restores_it(tmp_path):
    """stage=keep copies what each run needs to go on (baseline: its checkpoints; a scored fine-tune: its
    score; an unfinished one: last.pt); on an empty OUT, stage 5 restores them, resumes the unfinished run
    and skips the scored one."""
    import os
    import subprocess

    script = RECIPES / "bench" / "bench_se.sh"
    out, keep, corpus, bin_dir = (tmp_path / d for d in ("out", "keep", "corpus", "bin"))
    (corpus / "speech").mkdir(parents=True)
    runs = {"baseline": ["last.pt", "best.pt"], "baseline_long": ["last.pt", "best.pt"],
            "control_s1": ["last.pt", "best.pt"], "learn_s1": ["last.pt"]}
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
                    "baseline_long": ["best.pt", "config.yaml", "last.pt", "metrics.csv"],
                    "control_s1": ["base.txt", "config.yaml", "metrics.csv", "score.csv"],
                    "learn_s1": ["base.txt", "config.yaml", "last.pt", "metrics.csv"]}
    assert (keep / "control_s1" / "base.txt").read_text() == f"{DEFAULT_BASE}\n"

    fresh = tmp_path / "fresh"
    (fresh / "runs").mkdir(parents=True)
    (fresh / "runs" / "baseline_long.done").write_text("base-dir\n")
    # stage 5 then scores the resumed run with the real scorer, which finds no test set: only its
    # training call is checked
    fresh_env = {**env, "OUT": str(fresh), "stage": "5", "stop_stage": "5"}
    done = subprocess.run(["bash", str(script)], env=fresh_env, capture_output=True, text=True)
    assert "control_s1 restored" in done.stdout and "learn_s1 restored" in done.stdout
    assert (fresh / "scores" / "control_s1.csv").read_text() == "file,label,seed\n"
    assert (fresh / "runs" / "learn_s1" / "learn_s1_kept" / "last.pt").read_bytes() == b"state of learn_s1"
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith(f"train-se --resume {fresh}/runs/learn_s1/learn_s1_kept")

    # a kept fine-tune of another base is not mixed into the table: the bench stops, naming it
    (keep / "control_s1" / "base.txt").write_text("baseline: 6000 steps of 1 s crops\n")
    shutil.rmtree(fresh / "runs" / "control_s1")
    stale = subprocess.run(["bash", str(script)], env=fresh_env, capture_output=True, text=True)
    assert stale.returncode == 1
    assert stale.stderr.strip().splitlines() == [
        f"bench_se: {keep}/control_s1 was fine-tuned from another base (baseline: 6000 steps of 1 s crops), "
        f"today's is {DEFAULT_BASE}: move it aside (git mv {keep}/control_s1 {keep}/superseded/) to train it "
        "again"]


# A stand-in for mosqa train-se: it records how it was called and leaves a run whose validation PESQ peaks
# at weight 0.1 for frozen guidance and 0.3 for a learning critic, with --keep-every's snapshots and
# --critic-warmup's warm critic; a stand-in scorer writes a one-file score (other python calls are real).
FAKE_TRAIN_SE = '''#!{python}
import pathlib, sys
args = sys.argv[1:]
with open({calls!r}, "a") as f:
    f.write(" ".join(args) + "\\n")
def value(flag, default=None):
    return args[args.index(flag) + 1] if flag in args else default
if "--resume" in args:
    print(value("--resume"))
    sys.exit(0)
run = pathlib.Path(value("--exp-dir")) / (value("--name") + "_run")
run.mkdir(parents=True)
best = 0.3 if value("--qa") == "learn" else 0.1
(run / "config.yaml").write_text("kind: se\\n")
pesq = 2 - abs(float(value("--qa-weight", 0)) - best)
critic = ",0.5,0.9" if value("--qa") == "learn" else ",,"
(run / "metrics.csv").write_text(f"epoch,valid_pesq,critic_lcc,critic_mae\\n1,{{pesq}}{{critic}}\\n")
files = ["last.pt", "best.pt"] + ["epoch_001.pt", "epoch_002.pt"] * ("--keep-every" in args)
for name in files + ["critic_warm.pt"] * ("--critic-warmup" in args):
    (run / name).write_bytes(b"state")
print(run)
'''
FAKE_SCORER = '''#!/bin/sh
[ "$2" = score ] && printf 'file,label,seed,pesq,listener\\nmix0,%s,1,2.0,3.0\\n' "$6" > "$4" && exit 0
exec {python} "$@"
'''


def test_the_baseline_goes_on_to_longer_crops_and_is_kept(tmp_path):
    """Stage 2 trains the baseline on 1 s crops, then baseline_long from its weights on LONG_CROP s crops
    with a fresh cosine learning rate (a run cannot change its crops on resume), and keeps both with
    their checkpoints; with LONG_STEPS=0 the baseline alone. A run that trains on loses its test score."""
    import os
    import subprocess

    out, keep, corpus, bin_dir = (tmp_path / d for d in ("out", "keep", "corpus", "bin"))
    (corpus / "speech").mkdir(parents=True)
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "mosqa").write_text(FAKE_TRAIN_SE.format(python=sys.executable, calls=str(calls)))
    (bin_dir / "mosqa").chmod(0o755)
    env = {**os.environ, "OUT": str(out), "KEEP": str(keep), "CORPUS": str(corpus), "BASE_STEPS": "4",
           "STEPS_PER_EPOCH": "2", "LONG_STEPS": "3", "LONG_CROP": "4", "stage": "2", "stop_stage": "2",
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(RECIPES / "bench" / "bench_se.sh")], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    baseline, long = calls.read_text().splitlines()
    assert "--crop-seconds 1 " in baseline and "--epochs 2 " in baseline and "--lr 0.002" in baseline
    assert f"--init {out}/runs/baseline/baseline_run --crop-seconds 4 " in long
    assert "--epochs 2 " in long and "--lr 0.0005 --scheduler cosine" in long
    for name in ("baseline", "baseline_long"):
        assert sorted(p.name for p in (keep / name).iterdir()) == ["best.pt", "config.yaml", "last.pt",
                                                                   "metrics.csv"]
    shutil.rmtree(out)
    calls.unlink()
    (out / "scores").mkdir(parents=True)
    score = out / "scores" / "baseline.csv"
    score.write_text("file,label\n")
    alone = subprocess.run(["bash", str(RECIPES / "bench" / "bench_se.sh")], env={**env, "LONG_STEPS": "0"},
                           capture_output=True, text=True)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert calls.read_text().splitlines() == [f"train-se --resume {out}/runs/baseline/baseline_kept "
                                              "--epochs 2 --threads 1 --device cpu"]
    assert not score.exists()  # the kept run had 1 epoch and trained on: its score was of older weights
    score.write_text("file,label\n")
    same = subprocess.run(["bash", str(RECIPES / "bench" / "bench_se.sh")],
                          env={**env, "LONG_STEPS": "0", "BASE_STEPS": "2"}, capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    assert score.exists()  # asked for the epochs it has: nothing trained, the score holds


def test_pilot_picks_each_weight_and_the_warm_arm_shares_one_warm_critic(tmp_path):
    """Stages 3-5: the pilot trains a control and each mode at each weight from the baseline and writes
    each mode's weight with the best validation PESQ to arms.txt; stage 4 trains the ladder with
    --keep-every and warms up the warm arm's first seed on its snapshots and the baseline; stage 5 trains
    every arm at every seed, resumes that first seed, starts the other seeds from its warm critic, and
    leaves a run kept scored (issue 20's control) untrained."""
    import os
    import subprocess

    out, keep, corpus, bin_dir = (tmp_path / d for d in ("out", "keep", "corpus", "bin"))
    (corpus / "speech").mkdir(parents=True)
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "baseline_long.done").write_text("baseline-dir\n")
    for kept in ("control_s1", "learn_intrusive_s1"):  # scored and kept without weights, from today's base
        (keep / kept).mkdir(parents=True)
        (keep / kept / "base.txt").write_text(f"{DEFAULT_BASE}\n")
        (keep / kept / "config.yaml").write_text("kind: se\n")
        (keep / kept / "metrics.csv").write_text("epoch,valid_pesq\n1,2.0\n")
        (keep / kept / "score.csv").write_text(f"file,label,seed,pesq\nmix0,{kept[:-3]},1,2.0\n")
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for name, text in (("mosqa", FAKE_TRAIN_SE.format(python=sys.executable, calls=str(calls))),
                       ("python", FAKE_SCORER.format(python=sys.executable))):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "OUT": str(out), "KEEP": str(keep), "CORPUS": str(corpus), "SEEDS": "1 2",
           "PILOT_STEPS": "2", "FT_EPOCH_STEPS": "2", "FT_STEPS": "4", "STEPS_PER_EPOCH": "2",
           "LADDER_STEPS": "4", "WARMUP_STEPS": "5", "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "stage": "3", "stop_stage": "5"}
    done = subprocess.run(["bash", str(RECIPES / "bench" / "bench_se.sh")], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (keep / "pilot" / "arms.txt").read_text().splitlines() == [
        f"frozen_pesqwb --qa frozen --qa-model {keep}/pesq_wb --qa-weight 0.1",
        f"learn_pesqwb --qa learn --qa-model {keep}/pesq_wb --pesq-workers 1 --qa-weight 0.3"]
    assert "| control | 1 |" in (keep / "pilot" / "table.md").read_text()
    assert "| learn_pesqwb_w0.3 | 1 |" in (keep / "pilot" / "table.md").read_text()
    trained = {}
    for line in calls.read_text().splitlines():
        args = line.split()
        trained[args[args.index("--name") + 1] if "--name" in args else Path(args[2]).name] = line
    weights = ("0.03", "0.1", "0.3")
    pilot = {"control_s1", *(f"{m}_pesqwb_w{w}_s1" for m in ("frozen", "learn") for w in weights)}
    arms = {f"{a}_s{s}" for a in ("frozen_pesqwb", "learn_pesqwb", "learn_pesqwb_warm") for s in (1, 2)}
    new = {"control_s2", "learn_intrusive_s2"}
    assert set(trained) == pilot | {"ladder", "learn_pesqwb_warm_s1_run"} | arms | new
    assert all("--init baseline-dir --crop-seconds 1 --steps-per-epoch 2" in trained[n]
               and "--epochs 1" in trained[n] for n in pilot)
    assert "--keep-every 1" in trained["ladder"]
    ladder = f"{out}/runs/ladder/ladder_run/epoch_001.pt,{out}/runs/ladder/ladder_run/epoch_002.pt"
    warm_up = trained["learn_pesqwb_warm_s1"]
    pinned_flags = f"--qa learn --qa-model {keep}/pesq_wb --pesq-workers 1 --qa-weight 0.3"
    assert f"{pinned_flags} --critic-warmup 5" in warm_up
    assert f"--critic-warmup-from {ladder},baseline-dir/best.pt" in warm_up and "--epochs 1" in warm_up
    assert trained["learn_pesqwb_warm_s1_run"].startswith("train-se --resume")  # epoch 1 was stage 4's
    assert f"--qa-weight 0.3 --critic-init {out}/critic_warm.pt" in trained["learn_pesqwb_warm_s2"]
    assert "--epochs 2" in trained["frozen_pesqwb_s2"] and "--qa-weight 0.1" in trained["frozen_pesqwb_s2"]
    assert (keep / "learn_pesqwb_warm_s1" / "critic_warm.pt").is_file()
    # the shipped pesq-wb pinned once: every pesq-wb run reads the copy, the table names its row
    pinned = keep / "pesq_wb"
    assert sorted(p.name for p in pinned.iterdir()) == ["MODEL_CARD.md", "best.pt", "config.yaml"]
    assert se_bench_table.campaign_row(str(pinned)) == se_bench_table.campaign_row()
    assert f"campaign row {se_bench_table.campaign_row()}." in (keep / "pilot" / "table.md").read_text()
    # stage 7: the seed table and the critic watch land beside the kept runs, to commit
    table = subprocess.run(["bash", str(RECIPES / "bench" / "bench_se.sh")], capture_output=True, text=True,
                           env={**env, "stage": "7", "stop_stage": "7"})
    assert table.returncode == 0, table.stdout + table.stderr
    assert "| learn_pesqwb_warm | 1 |" in (keep / "table.md").read_text() and (keep / "table.csv").is_file()
    assert "| learn_pesqwb_warm_s2 | 1: 0.500 / 0.900 |" in (keep / "critic_watch.md").read_text()
    assert not (out / "table.md").exists()
