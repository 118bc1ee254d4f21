"""Issue 30's head comparison: which encoder features should the campaign's ridge head read?

Every candidate is a ridge head (mosqa.campaign's sums, strengths picked per output on the campaign's own
validation set) fitted on the SAME training clips; each is scored on four held-out sets of the same
voices, noises and rooms: the campaign's own validation and test (rendered by mosqa.degrade, like the
training clips) and the cross-renderer validation and test (rendered by audiomentations:
mosqa.crossrender). A head that rises only on its own renderer's sets has learned the renderer. The
encoder's statistics of every layer are extracted once per clip (distill_mos.ALL_LAYERS) and each
candidate reads its columns, so the comparison costs one extraction.

With --upper-epochs N, one more candidate that is not a ridge head: the encoder's layers 5-7 (and its pool
and listener layer) trained for N epochs on the training clips' cached layer-4 frames, with a linear head
and the frozen listener MOS distilled (mosqa.upper_head; frames cached under WORK/frames_l4/<set>, the
training under WORK/upper/<train>, resumable); the best epoch by the own validation's LCC is scored. Its
row adds the listener drift on the own validation (LCC and mean |difference| of its listener MOS against
the frozen encoder's), and OUT/upper_history.csv has every epoch.

    python recipes/campaign/compare_heads.py --train exp/campaign/shard_100 [--work exp/campaign] [--jobs 2]
        [--out recipes/campaign/heads] [--upper-epochs 30 [--upper-distill 1.0] [--device cuda]]

Writes OUT/heads.csv and OUT/heads.md (one row per candidate, and the shipped model on the same sets).
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import yaml

from mosqa import campaign, upper_head
from mosqa.audio import atomic_path
from mosqa.distill_mos import ALL_LAYERS, DIM, feature_columns, load_encoder

sys.path.insert(0, str(Path(__file__).parent))
from campaign_qa import PRECISION, any_set, set_dir  # noqa: E402  (the recipe's own sets)

# name -> the feature blocks it reads (distill_mos.feature_columns); the first is today's head.
CANDIDATES = {
    "cnn + layers 2, 4, 7 + pool + score (shipped design)": ("cnn", 2, 4, 7, "pooled", "score"),
    "layers 2, 4, 7 + pool + score": (2, 4, 7, "pooled", "score"),
    "layers 4-7 + pool + score": (4, 5, 6, 7, "pooled", "score"),
    "layer 7 + pool + score": (7, "pooled", "score"),
    "pool + score": ("pooled", "score"),
}
SETS = ("valid", "test", "xvalid", "xtest")  # the own renderer's version 1, then audiomentations'
SHIPPED = CANDIDATES["cnn + layers 2, 4, 7 + pool + score (shipped design)"]
UPPER = "layers 5-7 trained on cached layer-4 frames + listener distillation"


def score_all(predict, sets: dict) -> dict:
    """LCC, SRCC, RMSE and bias of `predict(features) -> (N, K)` on every set."""
    row = {}
    for name, (x, y, rows) in sets.items():
        figures = campaign.report(predict(x), y, rows)
        row |= {f"{name}_{k}": figures[k] for k in ("lcc", "srcc", "rmse", "bias")}
    return row


def shipped_row(model_dir: Path, sets: dict) -> dict:
    """The shipped head (its best.pt: a linear layer on its config's feature blocks) on the same sets."""
    import torch

    head = torch.load(model_dir / "best.pt", map_location="cpu", weights_only=True)["model"]
    w, b = head["weight"].double().numpy().T, head["bias"].double().numpy()
    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    cols = feature_columns(config.get("feature_blocks", SHIPPED))
    clips = config.get("campaign", {}).get("clips", "")
    return {"head": f"shipped {model_dir.name}", "features": len(cols), "clips": clips} | score_all(
        lambda x: np.clip(x[:, cols] @ w + b, 1.0, 5.0), sets)


def fit_and_score(blocks, x_train, y_train, sets: dict) -> dict:
    cols = feature_columns(blocks)
    state = campaign.new_state(x_train[:, cols], rank=min(campaign.RANK, len(cols)))
    campaign.accumulate(state, x_train[:, cols], y_train)
    xv, yv, _ = sets["valid"]
    lambdas = campaign.select_lambdas(state, campaign.project(state, xv[:, cols]), yv)
    w, b = campaign.solve(state, lambdas)
    return {"features": len(cols), "clips": len(x_train)} | score_all(
        lambda x: campaign.predict_projected(campaign.project(state, x[:, cols]), w, b), sets)


def upper_row(args, train_paths: list, y_train: np.ndarray, sets: dict) -> tuple[dict, list[dict]]:
    """Candidate (e) of issue 30 (mosqa.upper_head), trained on the --train clips with the validation sets
    watched each epoch, its best epoch scored on every set; the row and the training's history."""
    cache = args.work / "frames_l4"
    frames = {}
    for name in SETS:
        sim = set_dir(args.work, name, args.jobs)
        frames[name] = upper_head.cache_frames(campaign.read_set(sim)[0], cache / sim.name, args.jobs)
    train = upper_head.cache_frames(train_paths, cache / args.train.name, args.jobs)
    watched = {name: (frames[name], sets[name][1]) for name in SETS if "valid" in name}
    model, history = upper_head.train(upper_head.UpperHead(load_encoder()), (train, y_train), watched,
                                      args.work / "upper" / args.train.name, args.upper_epochs,
                                      distill=args.upper_distill, device=args.device)
    row = {"head": UPPER, "features": DIM + 1, "clips": len(y_train)} | score_all(
        lambda data: upper_head.predict(model, data, args.device)[0],
        {name: (frames[name], *sets[name][1:]) for name in SETS})
    drift = upper_head.scores(model, {"valid": watched["valid"]}, args.device)
    return row | {k: drift[k] for k in ("valid_drift_lcc", "valid_drift_mae")}, history


def markdown(rows: list[dict]) -> str:
    drift = any("valid_drift_lcc" in r for r in rows)  # the table as before unless upper layers trained
    names = ["head", "features", "clips", *(f"{s} LCC" for s in SETS)]
    if drift:
        names.append("listener drift (valid LCC / mean abs diff)")
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for r in rows:
        cells = [r["head"], r["features"], r["clips"], *(f"{float(r[f'{s}_lcc']):.3f}" for s in SETS)]
        if drift:
            cells.append(f"{r['valid_drift_lcc']:.3f} / {r['valid_drift_mae']:.3f}" if "valid_drift_lcc" in r
                         else "")
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    """Every column any row has, blank where a row has none."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)),
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, required=True, help="a `mosqa simulate` folder: the training clips")
    ap.add_argument("--work", type=Path, default=Path("exp/campaign"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("recipes/campaign/heads"))
    ap.add_argument("--shipped", type=Path, default=Path("mosqa/pretrained/pesq-wb"),
                    help="the shipped model, scored on the same sets for reference")
    ap.add_argument("--upper-epochs", type=int, default=0,
                    help="also train layers 5-7 on cached layer-4 frames for this many epochs (0: skip)")
    ap.add_argument("--upper-distill", type=float, default=1.0,
                    help="weight of the listener distillation in that training (mosqa.upper_head)")
    ap.add_argument("--device", default="cpu", help="where that training runs")
    args = ap.parse_args(argv)
    paths, y_train, _ = campaign.read_set(args.train)
    x_train = campaign.extract_features(paths, args.work / "features_all" / args.train.name, args.jobs,
                                        PRECISION, layers=ALL_LAYERS)
    sets = {name: any_set(args.work, name, args.jobs, layers=ALL_LAYERS) for name in SETS}
    rows = [{"head": name} | fit_and_score(blocks, x_train, y_train, sets)
            for name, blocks in CANDIDATES.items()]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.upper_epochs:
        row, history = upper_row(args, paths, y_train, sets)
        rows.append(row)
        write_csv(args.out / "upper_history.csv", history)
    rows.append(shipped_row(args.shipped, sets))
    write_csv(args.out / "heads.csv", rows)
    table = markdown(rows)
    with atomic_path(args.out / "heads.md") as tmp:
        Path(tmp).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
