"""Issue 30's head comparison: which encoder features should the campaign's ridge head read?

Every candidate is a ridge head (mosqa.campaign's sums, strengths picked per output on the campaign's own
validation set) fitted on the SAME training clips; each is scored on four held-out sets of the same
voices, noises and rooms: the campaign's own validation and test (rendered by mosqa.degrade, like the
training clips) and the cross-renderer validation and test (rendered by audiomentations:
mosqa.crossrender). A head that rises only on its own renderer's sets has learned the renderer. The
encoder's statistics of every layer are extracted once per clip (distill_mos.ALL_LAYERS) and each
candidate reads its columns, so the comparison costs one extraction.

    python recipes/campaign/compare_heads.py --train exp/campaign/shard_100 [--work exp/campaign] [--jobs 2]
        [--out recipes/campaign/heads]

Writes OUT/heads.csv and OUT/heads.md (one row per candidate, and the shipped model on the same sets).
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import yaml

from mosqa import campaign
from mosqa.audio import atomic_path
from mosqa.distill_mos import ALL_LAYERS, feature_columns

sys.path.insert(0, str(Path(__file__).parent))
from campaign_qa import PRECISION, any_set  # noqa: E402  (the recipe's own sets)

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




def score_all(predict, sets: dict) -> dict:
    """LCC, SRCC, RMSE and bias of `predict(features) -> (N, K)` on every set."""
    row = {}
    for name, (x, y, rows) in sets.items():
        figures = campaign.report(predict(x), y, rows)
        row |= {f"{name}_{k}": figures[k] for k in ("lcc", "srcc", "rmse", "bias")}
    return row


def shipped_row(model_dir: Path, sets: dict) -> dict:
    """The shipped head (its best.pt: a linear layer on the shipped design's features) on the same sets."""
    import torch

    head = torch.load(model_dir / "best.pt", map_location="cpu", weights_only=True)["model"]
    w, b = head["weight"].double().numpy().T, head["bias"].double().numpy()
    cols = feature_columns(SHIPPED)
    clips = yaml.safe_load((model_dir / "config.yaml").read_text()).get("campaign", {}).get("clips", "")
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


def markdown(rows: list[dict]) -> str:
    lines = ["| head | features | clips | " + " | ".join(f"{s} LCC" for s in SETS) + " |",
             "|---|---|---|" + "---|" * len(SETS)]
    for r in rows:
        lines.append(f"| {r['head']} | {r['features']} | {r['clips']} | "
                     + " | ".join(f"{float(r[f'{s}_lcc']):.3f}" for s in SETS) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, required=True, help="a `mosqa simulate` folder: the training clips")
    ap.add_argument("--work", type=Path, default=Path("exp/campaign"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("recipes/campaign/heads"))
    ap.add_argument("--shipped", type=Path, default=Path("mosqa/pretrained/pesq-wb"),
                    help="the shipped model, scored on the same sets for reference")
    args = ap.parse_args(argv)
    paths, y_train, _ = campaign.read_set(args.train)
    x_train = campaign.extract_features(paths, args.work / "features_all" / args.train.name, args.jobs,
                                        PRECISION, layers=ALL_LAYERS)
    sets = {name: any_set(args.work, name, args.jobs, layers=ALL_LAYERS) for name in SETS}
    rows = [{"head": name} | fit_and_score(blocks, x_train, y_train, sets)
            for name, blocks in CANDIDATES.items()]
    rows.append(shipped_row(args.shipped, sets))
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "heads.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    table = markdown(rows)
    with atomic_path(args.out / "heads.md") as tmp:
        Path(tmp).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
