"""One session of the quality-model campaign (issue 19): fresh shards until the budget ends, then a row.

    python recipes/campaign/campaign_qa.py train --budget-min 60 [--shard N] [--jobs 2] [--work exp/campaign]
        [--state recipes/campaign]
    python recipes/campaign/campaign_qa.py row [--promote-to mosqa/pretrained/pesq-wb]

Per shard (N from the committed state, or --shard): simulate ~10,000 clips from the training voices,
noises, music and rooms with seed 1000 + N (`mosqa simulate`, resumable), encode them with the frozen
Distill-MOS encoder (saved every 256 clips), and add them to the ridge sums in blocks of BLOCK clips;
the state is saved after every block (about every 2 minutes on 2 cores), so a cut session resumes the
same shard where it stopped. Shards without call impairments (rows 1-3's) keep their sums apart. Then the
row step (its own process): weigh those plain sums (PLAIN_WEIGHTS, chosen on the cross-renderer
validation), pick each output's ridge strength on the fixed validation set, fit the logistic the score
passes through on it too (campaign.fit_score_map; the row keeps each set's LCC without it, *_linear_lcc),
score validation and test,
append a row to campaign.csv, redraw campaign.png, and
export the head to --promote-to when validation LCC beats every earlier row (and the shipped model it
would replace). The fixed sets are simulated once from their own voices, noises and rooms: the same clips
on every machine. Version 1 (seeds 900001 and 900002; columns valid_* and test_*, the curve, the ridge
strengths and promotion) has none of the impairments of real calls; version 2 (seeds 900003 and 900004;
columns valid_v2_* and test_v2_*) carries them, so a row also says how the model does on them.
"""

import argparse
import csv
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mosqa import campaign, crossrender
from mosqa.audio import atomic_path
from mosqa.degrade import CALL_KINDS
from mosqa.distill_mos import ALL_LAYERS, FEATURE_LAYERS, feature_columns
from mosqa.encoder_qa import FEATURE_BLOCKS, OUTPUTS
from mosqa.plots import campaign_png

SPEAKER_MAP = "ast_en_allison=allison,ast_es_allison=allison"
SHARD_PER_UTT = 9  # x 1,153 training utterances = 10,377 clips a shard
# Fixed set -> (split part, per-utt, seed, --call-share): ~1,235 clips of the validation voices, ~1,145 of
# the test ones. Version 2's call share gives each of the 7 call kinds about 50 clips, as many as an older
# kind has: enough for a per-kind LCC and bias.
FIXED = {"valid": ("valid", 5, 900001, 0.0), "test": ("test", 5, 900002, 0.0),
         "valid_v2": ("valid", 5, 900003, 0.3), "test_v2": ("test", 5, 900004, 0.3)}
CROSS = {"xvalid": ("valid", 3, 910001), "xtest": ("test", 3, 910002)}  # audiomentations': ~900 clips each
OWN_DROP = 0.03  # how far the own validation may fall for a cross-renderer gain to promote
BLOCK = 2048  # clips added to the sums between two saves of the state
# What a plain shard's clip (campaign.PLAIN) may weigh against a later one's; the row picks on the
# cross-renderer validation. On row 4's sums 0.1 moved it 0.838 -> 0.847, the own one 0.894 -> 0.886.
PLAIN_WEIGHTS = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05)
# float32: bfloat16 autocast halved the encoder's time on the machine of rows 1-3, but a CPU without native
# bfloat16 (no AVX512-BF16 or AMX, as on 2026-12-06) emulates it about 40x slower than float32 (4.2 s
# against 0.10 s for a 1.6 s clip, one thread); rows 1-3 were encoded in bfloat16
PRECISION = "fp32"
# the venv's mosqa beside this python, so the recipe works without the venv on PATH (and in the tests)
MOSQA = shutil.which("mosqa", path=str(Path(sys.executable).parent)) or "mosqa"


# A shard's data mix: simulate options (0: as before each existed) that a state records and a row reports.
MIX = ("voice_perturb", "call_share", "recording_chain", "fault_share")


def simulate(work: Path, part: str, out: Path, per_utt: int, seed: int, jobs: int, mix: dict,
             options: str = "") -> None:
    """A set of `part`'s voices, noise files, music and rooms; `mix` names MIX values (missing: 0), `options`
    more simulate options (e.g. a range)."""
    split = work / "split"
    cmd = [MOSQA, "simulate", str(split / part / "speech"), "--out-dir", str(out), "--per-utt",
           str(per_utt), "--seed", str(seed), "--jobs", str(jobs), "--speaker-map", SPEAKER_MAP,
           "--noise-dir", str(split / f"{part}_noise.list"), "--rir-dir", str(split / f"{part}_rir.list"),
           "--music-dir", str(split / f"{part}_music.list"),
           *(a for key in MIX for a in (f"--{key.replace('_', '-')}", str(mix.get(key, 0.0)))),
           *shlex.split(options)]
    subprocess.run(cmd, check=True)


def parse_blocks(text: str) -> tuple:
    """"cnn,2,4,7,pooled,score" -> ("cnn", 2, 4, 7, "pooled", "score"): the feature blocks a head reads."""
    blocks = tuple(int(b) if b.strip().isdigit() else b.strip() for b in text.split(","))
    feature_columns(blocks)  # an unknown block is a one-line error here, before any work
    return blocks


def layers_for(blocks: tuple) -> tuple:
    """The layers whose statistics are extracted for a head on `blocks`: the first design keeps its own
    (and its rows' caches); any other reads its columns from one extraction of every layer, the cache
    the head comparison (compare_heads.py) fills."""
    return FEATURE_LAYERS if tuple(blocks) == FEATURE_BLOCKS else ALL_LAYERS


def features_of(work: Path, sim: Path, jobs: int, layers: tuple | None):
    """(features, targets, rows) of a set folder; `layers` (None: the shipped head's) picks the cache. The
    shipped head's features of a set the head comparison has encoded are read from its every-layer cache."""
    paths, y, rows = campaign.read_set(sim)
    every = work / "features_all" / sim.name
    if layers in (None, FEATURE_LAYERS) and campaign.is_cached(paths, every):
        x = campaign.extract_features(paths, every, jobs, PRECISION, layers=ALL_LAYERS)
        return x[:, feature_columns(FEATURE_BLOCKS, ALL_LAYERS)], y, rows
    cache = work / ("features" if layers in (None, FEATURE_LAYERS) else "features_all") / sim.name
    return campaign.extract_features(paths, cache, jobs, PRECISION, layers=layers), y, rows


def fixed_set(work: Path, name: str, jobs: int, per_utt: int | None = None) -> Path:
    """The folder of one of FIXED, simulated the first time it is asked for."""
    part, default_per_utt, seed, call_share = FIXED[name]
    sim = work / f"fixed_{name}"
    if not (sim / "summary.json").is_file():
        simulate(work, part, sim, per_utt or default_per_utt, seed, jobs, {"call_share": call_share})
    return sim


def cross_set(work: Path, name: str, jobs: int, per_utt: int | None = None) -> Path:
    """The folder of a part's voices, noise files and rooms degraded by audiomentations (mosqa.crossrender):
    the validation and test that our own renderer did not make (issue 30)."""
    part, default_per_utt, seed = CROSS[name]
    split = work / "split"
    return crossrender.render_set(split / part / "speech", split / f"{part}_noise.list",
                                  split / f"{part}_rir.list", work / f"cross_{part}",
                                  per_utt or default_per_utt, seed, jobs)


def set_dir(work: Path, name: str, jobs: int, per_utt: int | None = None) -> Path:
    """The folder of one of FIXED (our renderer) or CROSS (audiomentations) by name, made if absent."""
    return (cross_set if name in CROSS else fixed_set)(work, name, jobs, per_utt)


def any_set(work: Path, name: str, jobs: int, per_utt: int | None = None, layers: tuple | None = None):
    """(features, targets, rows) of one of FIXED or CROSS by name."""
    return features_of(work, set_dir(work, name, jobs, per_utt), jobs, layers)


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
        mix = {k: getattr(args, k) for k in MIX}
        simulate(work, "train", sim, args.per_utt, 1000 + shard, args.jobs, mix, args.shard_options)
        paths, y, _ = campaign.read_set(sim)
        # simulate writes a speaker's clips together: in a seeded random order every block (the first
        # one fixes the projection) spans all voices
        order = np.random.default_rng(1000 + shard).permutation(len(paths))
        paths, y = [paths[i] for i in order], y[order]
        done = int(state["shard_done"]) if state is not None and "shard_done" in state else 0
        while done < len(paths) and time.monotonic() < deadline and blocks != args.max_blocks:
            block = slice(done, min(len(paths), done + args.block))
            start = time.monotonic()
            layers = layers_for(args.feature_blocks)
            cache = work / f"{'features' if layers == FEATURE_LAYERS else 'features_all'}/shard_{shard:03d}"
            x = campaign.extract_features(paths[block], cache / f"block_{done:06d}", args.jobs, PRECISION,
                                          layers=layers)[:, feature_columns(args.feature_blocks, layers)]
            state = state if state is not None else campaign.new_state(x) | {"shards": np.int64(shard)}
            campaign.accumulate(state, x, y[block], "" if mix["call_share"] else campaign.PLAIN)
            done = block.stop
            finished = done >= len(paths)  # the shard's last block moves the state to the next shard
            state.update(shard_done=np.int64(0 if finished else done), clips=state["clips"] + len(x),
                         shards=np.int64(shard + 1 if finished else state["shards"]),
                         wall_s=state["wall_s"] + campaign.elapsed(start),
                         updates=state.get("updates", 0) + 1, **{k: np.float64(v) for k, v in mix.items()},
                         shard_options=np.array(args.shard_options),
                         feature_blocks=np.array([str(b) for b in args.feature_blocks]))
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


# the head comparisons (compare_heads.py) the card quotes: folder -> what its training clips were
HEAD_COMPARISONS = {"heads": "a shard of the campaign's kinds (seed 1100, 2,306 clips)",
                    "heads_calls": "a shard with 15 % call impairments, the recording chain on half the "
                                   "references and ±15 % voice speed (seed 1101, 2,304 clips)"}


def head_comparison(state_path: Path) -> str:
    """The card's section on which encoder features the head reads: each comparison's table, as run."""
    tables = [f"Trained on {what} (`recipes/campaign/{folder}/heads.md`):\n\n"
              + (state_path / folder / "heads.md").read_text()
              for folder, what in HEAD_COMPARISONS.items() if (state_path / folder / "heads.md").is_file()]
    if not tables:
        return ""
    return ("\n## Which features the head reads (issue 30)\n\nEvery candidate head fitted on the same "
            "fresh clips, scored on the own and the cross-renderer validation and test (LCC); the design is "
            f"chosen by the cross-renderer validation, the own one falling by at most {OWN_DROP:g}.\n\n"
            + "\n".join(tables))


def weigh_plain(state: dict, sets: dict) -> tuple[float, dict, np.ndarray]:
    """The weight of PLAIN_WEIGHTS for the plain shards' sums with the best cross-renderer validation, the
    own one falling by at most OWN_DROP from weight 1 (the promotion rule), each candidate's ridge strengths
    picked on the own validation; (weight, the weighted state, its strengths). Printed as a table."""
    xv, yv, _ = sets["valid"]
    zv, zx = campaign.project(state, xv), campaign.project(state, sets["xvalid"][0])
    both = campaign.PLAIN + "n" in state and state["n"] > 0
    results = []
    for weight in PLAIN_WEIGHTS if both else PLAIN_WEIGHTS[:1]:
        weighed = campaign.weighted(state, weight)
        lambdas = campaign.select_lambdas(weighed, zv, yv)
        w, b = campaign.solve(weighed, lambdas)
        own, cross = (campaign.output_quality("score", campaign.predict_projected(z, w, b)[:, 0], y[:, 0])
                      for z, y in ((zv, yv), (zx, sets["xvalid"][1])))
        results.append((weight, own, cross, weighed, lambdas))
        print(f"plain shards weighing {weight:g}: valid LCC {own:.4f}, xvalid LCC {cross:.4f}", flush=True)
    floor = results[0][1] - OWN_DROP
    weight, _, _, weighed, lambdas = max((r for r in results if r[1] >= floor), key=lambda r: r[2])
    return weight, weighed, lambdas


def score_row(args) -> dict:
    """Pick the ridge strengths on the fixed validation set (version 1), score every own and cross-renderer
    set, append the row, redraw the curve, and promote the head when the cross-renderer validation beats
    every earlier row (and the shipped model) while its own validation falls by at most OWN_DROP."""
    state_path = args.state
    state = campaign.load_state(state_path / "state.npz")
    if state is None:
        raise SystemExit(f"{state_path / 'state.npz'}: no campaign state yet; run the train step first")
    blocks = state_blocks(state)
    layers = layers_for(blocks)
    cols = feature_columns(blocks, layers)
    sets = {name: any_set(args.work, name, args.jobs, args.fixed_per_utt, layers=layers)
            for name in (*FIXED, *CROSS)}
    sets = {name: (x[:, cols], y, rows) for name, (x, y, rows) in sets.items()}
    plain_weight, state, lambdas = weigh_plain(state, sets)
    w, b = campaign.solve(state, lambdas)
    projected = {name: campaign.project(state, x) for name, (x, _, _) in sets.items()}
    # the score's logistic, fitted like the strengths on the own validation (the tests stay untouched)
    score_map = campaign.fit_score_map((projected["valid"] @ w + b)[:, 0], sets["valid"][1][:, 0])
    row = {"row": 0, "date": time.strftime("%Y-%m-%d"), "shards": int(state["shards"]),
           "clips": int(state["clips"]), "updates": int(state.get("updates", 0)),
           "wall_min": float(state["wall_s"]) / 60, "session_min": float(state.get("session_s", 0.0)) / 60,
           "kept_variance": float(state["kept_variance"]), "plain_weight": plain_weight,
           **{k: float(state.get(k, 0.0)) for k in MIX}, "shard_options": str(state.get("shard_options", "")),
           "feature_blocks": " ".join(map(str, blocks)),
           "score_map": " ".join(f"{v:.4g}" for v in score_map or ())}
    for name, (_, y, rows) in sets.items():
        z = projected[name]
        # the same head without the logistic: what the map itself adds, row by row
        row[f"{name}_linear_lcc"] = campaign.output_quality(
            "score", campaign.predict_projected(z, w, b)[:, 0], y[:, 0])
        figures = campaign.report(campaign.predict_projected(z, w, b, score_map), y, rows)
        if name in CROSS:  # audiomentations draws no values our diagnostics could be checked against
            figures = {k: v for k, v in figures.items() if not k.startswith("diag_")}
        row |= {f"{name}_{k}": v for k, v in figures.items()}
    earlier = []
    if (state_path / "campaign.csv").is_file():
        with open(state_path / "campaign.csv", newline="") as f:
            earlier = list(csv.DictReader(f))
    row["row"] = len(earlier) + 1
    best_own = max([float(r["valid_lcc"]) for r in earlier], default=-1.0)
    best_cross = max([float(r["xvalid_lcc"]) for r in earlier if r.get("xvalid_lcc")], default=None)
    # the first row with cross-renderer figures is compared with the model it would replace
    baseline = shipped_baseline(args.promote_to, args.work / "cross_valid") if best_cross is None else None
    gain = round(row["xvalid_lcc"], 4)  # as campaign.csv keeps it: the same model again is no gain
    promote = gain > max(best_cross or -1.0, baseline or -1.0) and row["valid_lcc"] >= best_own - OWN_DROP
    row["baseline_xvalid_lcc"] = baseline if baseline is not None else ""
    row["promoted"] = int(promote)
    rows = write_row(state_path / "campaign.csv", earlier, row)
    campaign_png(state_path / "campaign.png", rows)
    chosen = dict(zip(OUTPUTS, map(float, lambdas), strict=True))
    (state_path / "lambdas.json").write_text(json.dumps(chosen))
    if promote:
        campaign.export_head(args.promote_to, state, lambdas, PRECISION, row, feature_blocks=blocks,
                             card_extra=head_comparison(state_path), score_map=score_map)
    print(json.dumps({k: row[k] for k in ("row", "shards", "clips", "valid_lcc", "test_lcc", "test_v2_lcc",
                                           "xvalid_lcc", "xtest_lcc", "valid_linear_lcc", "xvalid_linear_lcc",
                                           "score_map", "promoted")}))
    print("diagnostics (test): " + ", ".join(
        f"{k[len('test_diag_'):]} {row[k]:.3f}" for k in row if k.startswith("test_diag_")))
    print("call impairments alone (test_v2, bias): " + ", ".join(
        f"{kind} {row[f'test_v2_kind_{kind}_bias']:+.2f} ({row[f'test_v2_kind_{kind}_n']})"
        for kind in CALL_KINDS if f"test_v2_kind_{kind}_n" in row))
    return row


def state_blocks(state: dict) -> tuple:
    """The feature blocks a state's sums were made of (states before issue 30 hold the first design)."""
    return parse_blocks(",".join(state["feature_blocks"])) if "feature_blocks" in state else FEATURE_BLOCKS


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
    ap.add_argument("--call-share", type=float, default=0.0,
                    help="share of a new shard's degraded clips with an impairment of real calls (simulate "
                    "--call-share; default 0, as the shards before them, so a cut shard resumes as it began)")
    ap.add_argument("--recording-chain", type=float, default=0.0,
                    help="share of a new shard's clips whose reference first passes a drawn recording chain "
                    "(simulate --recording-chain; default 0, as the shards before it, so a cut shard resumes "
                    "as it began)")
    ap.add_argument("--fault-share", type=float, default=0.0,
                    help="share of a new shard's degraded clips with a signal-path fault, aliasing or an "
                    "outage (simulate --fault-share; default 0, as the shards before them, so a cut shard "
                    "resumes as it began)")
    ap.add_argument("--shard-options", default="",
                    help="more `mosqa simulate` options for new shards, e.g. '--band-order-range 1,8' (a "
                    "shard begun without them resumes only without them); the state and the row record them")
    ap.add_argument("--feature-blocks", type=parse_blocks, default=None,
                    help="the encoder's feature blocks the head reads, e.g. 2,4,7,pooled,score (default: the "
                    "state's; a new state: " + ",".join(map(str, FEATURE_BLOCKS)) + "); a state is made of "
                    "one design: to change it, move state.npz, projection.npz and plain.npz away and start "
                    "afresh")
    ap.add_argument("--fixed-per-utt", type=int, default=None,
                    help="clips per utterance of the fixed sets, own and cross-renderer")
    args = ap.parse_args(argv)
    if args.step == "row":
        score_row(args)
        return 0
    start = time.monotonic()
    state = campaign.load_state(args.state / "state.npz")
    kept = state_blocks(state) if state is not None else None
    if kept is not None and args.feature_blocks not in (None, kept):
        raise SystemExit(f"{args.state / 'state.npz'}: its sums read {','.join(map(str, kept))}, not "
                         f"{','.join(map(str, args.feature_blocks))}; to change the design, move state.npz, "
                         "projection.npz and plain.npz away and start afresh")
    args.feature_blocks = kept or args.feature_blocks or FEATURE_BLOCKS
    if state is not None and args.shard is not None:
        state["shards"], state["shard_done"] = np.int64(args.shard), np.int64(0)
    state = train_shards(state, args.work, args.state, start + args.budget_min * 60, args)
    state["session_s"] = np.float64(campaign.elapsed(start))
    campaign.save_state(args.state / "state.npz", state)
    return 0

if __name__ == "__main__":
    sys.exit(main())
