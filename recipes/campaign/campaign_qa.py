"""One session of the quality-model campaign (issue 19): fresh shards until the budget ends, then a row.

    python recipes/campaign/campaign_qa.py train --budget-min 60 [--shard N] [--jobs 2] [--work exp/campaign]
        [--state recipes/campaign]
    python recipes/campaign/campaign_qa.py row [--promote-to mosqa/pretrained/pesq-wb]

Per shard (N from the committed state, or --shard): simulate ~10,000 clips from the training voices,
noises, music and rooms with seed 1000 + N (`mosqa simulate`, resumable), encode them with the frozen
Distill-MOS encoder (saved every 256 clips), and add them to the ridge sums in blocks of BLOCK clips;
the state is saved after every block (about every 2 minutes on 2 cores), so a cut session resumes the
same shard where it stopped. Then the row step (its own process): pick each output's ridge strength
on the fixed validation set, score validation and test, append a row to campaign.csv, redraw campaign.png, and
export the head to --promote-to when validation LCC beats every earlier row (and the shipped model it
would replace). The fixed sets are simulated once from their own voices, noises and rooms (seeds 900001
and 900002): the same clips on every machine.
"""

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mosqa import campaign
from mosqa.audio import atomic_path
from mosqa.encoder_qa import OUTPUTS
from mosqa.plots import campaign_png

SPEAKER_MAP = "ast_en_allison=allison,ast_es_allison=allison"
SHARD_PER_UTT = 9  # x 1,153 training utterances = 10,377 clips a shard
FIXED = {"valid": (5, 900001), "test": (5, 900002)}  # per-utt, seed: ~1,235 and ~1,145 clips
BLOCK = 2048  # clips added to the sums between two saves of the state
PRECISION = "bf16"
# the venv's mosqa beside this python, so the recipe works without the venv on PATH (and in the tests)
MOSQA = shutil.which("mosqa", path=str(Path(sys.executable).parent)) or "mosqa"


def simulate(work: Path, part: str, out: Path, per_utt: int, seed: int, jobs: int,
             voice_perturb: float = 0.0) -> None:
    split = work / "split"
    cmd = [MOSQA, "simulate", str(split / part / "speech"), "--out-dir", str(out), "--per-utt",
           str(per_utt), "--seed", str(seed), "--jobs", str(jobs), "--speaker-map", SPEAKER_MAP,
           "--noise-dir", str(split / f"{part}_noise.list"), "--rir-dir", str(split / f"{part}_rir.list"),
           "--music-dir", str(split / f"{part}_music.list"), "--voice-perturb", str(voice_perturb)]
    subprocess.run(cmd, check=True)


def fixed_set(work: Path, part: str, jobs: int, per_utt: int | None = None):
    default_per_utt, seed = FIXED[part]
    per_utt = per_utt or default_per_utt
    sim = work / f"fixed_{part}"
    if not (sim / "summary.json").is_file():
        simulate(work, part, sim, per_utt, seed, jobs)
    paths, y, rows = campaign.read_set(sim)
    x = campaign.extract_features(paths, work / f"features/fixed_{part}", jobs, PRECISION)
    return x, y, rows


def shipped_baseline(model_dir: Path, sim: Path) -> float | None:
    """Validation LCC of the model --promote-to would replace (None when it is not there)."""
    if not (model_dir / "config.yaml").is_file():
        return None
    out = sim.parent / f"baseline_{model_dir.name}.csv"
    if not out.is_file():
        subprocess.run([MOSQA, "predict", "--list", str(sim / "all.list"), "--model", str(model_dir),
                        "-o", str(out)], check=True)
    with open(out, newline="") as f:
        pred = {Path(r["filename"]).name: float(r["score"]) for r in csv.DictReader(f)}
    paths, y, _ = campaign.read_set(sim)
    return float(np.corrcoef([pred[p.name] for p in paths], y[:, 0])[0, 1])


def train_shards(state: dict | None, work: Path, state_path: Path, deadline: float, args) -> dict:
    """Add shards to the sums until the deadline; returns the state (saved after every block)."""
    blocks = 0
    while time.monotonic() < deadline and blocks != args.max_blocks:
        shard = int(state["shards"]) if state is not None else args.shard or 0
        if args.until_shard is not None and shard >= args.until_shard:
            break
        sim = work / f"shard_{shard:03d}"
        simulate(work, "train", sim, args.per_utt, 1000 + shard, args.jobs, args.voice_perturb)
        paths, y, _ = campaign.read_set(sim)
        # simulate writes a speaker's clips together: in a seeded random order every block (the first
        # one fixes the projection) spans all voices
        order = np.random.default_rng(1000 + shard).permutation(len(paths))
        paths, y = [paths[i] for i in order], y[order]
        done = int(state["shard_done"]) if state is not None and "shard_done" in state else 0
        while done < len(paths) and time.monotonic() < deadline and blocks != args.max_blocks:
            block = slice(done, min(len(paths), done + args.block))
            start = time.monotonic()
            cache = work / f"features/shard_{shard:03d}/block_{done:06d}"
            x = campaign.extract_features(paths[block], cache, args.jobs, PRECISION)
            state = state if state is not None else campaign.new_state(x) | {"shards": np.int64(shard)}
            campaign.accumulate(state, x, y[block])
            done = block.stop
            finished = done >= len(paths)  # the shard's last block moves the state to the next shard
            state.update(shard_done=np.int64(0 if finished else done), clips=state["clips"] + len(x),
                         shards=np.int64(shard + 1 if finished else state["shards"]),
                         wall_s=state["wall_s"] + campaign.elapsed(start),
                         updates=state.get("updates", 0) + 1, voice_perturb=np.float64(args.voice_perturb))
            campaign.save_state(state_path / "state.npz", state)
            blocks += 1
            print(f"shard {shard}: {done}/{len(paths)} clips added ({int(state['clips'])} in all)",
                  flush=True)
    return state


def write_row(csv_path: Path, earlier: list[dict], row: dict) -> list[dict]:
    """campaign.csv with `row` after the `earlier` rows read from it; every row, as written."""
    rows = [*earlier, {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()}]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def score_row(args) -> dict:
    """Pick the ridge strengths on the fixed validation set, score both fixed sets, append the row,
    redraw the curve, and promote the head when validation beats every earlier row and the shipped model."""
    state_path = args.state
    state = campaign.load_state(state_path / "state.npz")
    if state is None:
        raise SystemExit(f"{state_path / 'state.npz'}: no campaign state yet; run the train step first")
    xv, yv, rv = fixed_set(args.work, "valid", args.jobs, args.fixed_per_utt)
    xt, yt, rt = fixed_set(args.work, "test", args.jobs, args.fixed_per_utt)
    zv = campaign.project(state, xv)
    lambdas = campaign.select_lambdas(state, zv, yv)
    w, b = campaign.solve(state, lambdas)
    row = {"row": 0, "date": time.strftime("%Y-%m-%d"), "shards": int(state["shards"]),
           "clips": int(state["clips"]), "updates": int(state.get("updates", 0)),
           "wall_min": float(state["wall_s"]) / 60, "session_min": float(state.get("session_s", 0.0)) / 60,
           "kept_variance": float(state["kept_variance"]),
           "voice_perturb": float(state.get("voice_perturb", 0.0))}
    for name, z, y, rows in (("valid", zv, yv, rv), ("test", campaign.project(state, xt), yt, rt)):
        figures = campaign.report(campaign.predict_projected(z, w, b), y, rows)
        row |= {f"{name}_{k}": v for k, v in figures.items()}
    earlier = []
    if (state_path / "campaign.csv").is_file():
        with open(state_path / "campaign.csv", newline="") as f:
            earlier = list(csv.DictReader(f))
    row["row"] = len(earlier) + 1
    best_before = max([float(r["valid_lcc"]) for r in earlier], default=-1.0)
    baseline = shipped_baseline(args.promote_to, args.work / "fixed_valid") if not earlier else None
    gain = round(row["valid_lcc"], 4)  # as campaign.csv keeps it: the same model again is no gain
    promote = gain > best_before and (baseline is None or gain > baseline)
    row["baseline_valid_lcc"] = baseline if baseline is not None else ""
    row["promoted"] = int(promote)
    rows = write_row(state_path / "campaign.csv", earlier, row)
    campaign_png(state_path / "campaign.png", rows)
    chosen = dict(zip(OUTPUTS, map(float, lambdas), strict=True))
    (state_path / "lambdas.json").write_text(json.dumps(chosen))
    if promote:
        campaign.export_head(args.promote_to, state, lambdas, PRECISION, row)
    print(json.dumps({k: row[k] for k in ("row", "shards", "clips", "valid_lcc", "test_lcc", "test_srcc",
                                           "promoted")}))
    print("diagnostics (test): " + ", ".join(
        f"{k[len('test_diag_'):]} {row[k]:.3f}" for k in row if k.startswith("test_diag_")))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("train", "row"),
                    help="train: add shards until --budget-min ends; row: score the fixed sets, add the row")
    ap.add_argument("--budget-min", type=float, default=60.0, help="wall minutes for training shards")
    ap.add_argument("--shard", type=int, default=None, help="start at this shard (default: the state's)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("exp/campaign"))
    ap.add_argument("--state", type=Path, default=Path("recipes/campaign"))
    ap.add_argument("--promote-to", type=Path, default=Path("mosqa/pretrained/pesq-wb"))
    # sizes, for a tiny campaign in the tests
    ap.add_argument("--per-utt", type=int, default=SHARD_PER_UTT, help="clips per training utterance a shard")
    ap.add_argument("--block", type=int, default=BLOCK, help="clips added between two saves of the state")
    ap.add_argument("--max-blocks", type=int, default=-1, help="stop after this many blocks (-1: the budget)")
    ap.add_argument("--until-shard", type=int, default=None,
                    help="stop before this shard (a refit: --shard 0, a new --state: re-add cached shards)")
    ap.add_argument("--voice-perturb", type=float, default=0.0,
                    help="speed new shards' voices by up to this fraction (simulate --voice-perturb)")
    ap.add_argument("--fixed-per-utt", type=int, default=None, help="clips per utterance of the fixed sets")
    args = ap.parse_args(argv)
    if args.step == "row":
        score_row(args)
        return 0
    start = time.monotonic()
    state = campaign.load_state(args.state / "state.npz")
    if state is not None and args.shard is not None:
        state["shards"], state["shard_done"] = np.int64(args.shard), np.int64(0)
    state = train_shards(state, args.work, args.state, start + args.budget_min * 60, args)
    state["session_s"] = np.float64(campaign.elapsed(start))
    campaign.save_state(args.state / "state.npz", state)
    return 0

if __name__ == "__main__":
    sys.exit(main())
