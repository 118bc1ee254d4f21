"""Issue 19's model pick: candidates trained the same wall time on the same shard, one table.

    python recipes/bench/pick_qa_model.py --train SIM_TRAIN --valid SIM_VALID --features FEAT_DIR \
        --runs RUN_DIR... --budget-s 480 --out TABLE.md

The train-qa candidates (RUN_DIRs, trained by recipes/bench/pick_qa_model.sh under the same `timeout`) are
scored on the validation clips here; the frozen-encoder candidates are fitted here on the cached
encoder features of the training clips (their extraction time counted in their budget: clips beyond
what fits in --budget-s are left out). Cost columns: MMAC per second of audio (torch's FLOP counter,
one 4 s clip, MAC = FLOP / 2) and clip-passes per second on 2 threads (training clips seen per second
of the budget).
"""

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mosqa import campaign
from mosqa.audio import load_audio
from mosqa.distill_mos import load_encoder
from mosqa.qa import load_qa

CLIP_SECONDS = 4.0


def mmac_per_second(model) -> float:
    wav = torch.randn(1, int(CLIP_SECONDS * 16000)) * 0.1
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(wav)
    return counter.get_total_flops() / 2 / 1e6 / CLIP_SECONDS


def lcc(pred, true) -> float:
    return float(np.corrcoef(pred, true)[0, 1])


def mlp_head(x, y, x_valid, seconds: float = 60.0, seed: int = 0):
    """A one-hidden-layer MLP (128 units, dropout 0.2) on the standardised features, score only."""
    torch.manual_seed(seed)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor((x - mean) / scale, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(x.shape[1], 128), torch.nn.GELU(),
                              torch.nn.Dropout(0.2), torch.nn.Linear(128, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for idx in torch.randperm(len(xt)).split(64):
            loss = torch.nn.functional.mse_loss(net(xt[idx])[:, 0], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return net(torch.tensor((x_valid - mean) / scale, dtype=torch.float32))[:, 0].numpy()


def ridge(x, y, xv, yv, rank):
    state = campaign.new_state(x, rank=rank)
    campaign.accumulate(state, x, y)
    zv = campaign.project(state, xv)
    lambdas = campaign.select_lambdas(state, zv, yv)
    w, b = campaign.solve(state, lambdas)
    return (zv @ w + b)[:, 0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--valid", type=Path, required=True)
    ap.add_argument("--features", type=Path, required=True, help="cache folder with feat_<set>/")
    ap.add_argument("--extract-log", type=Path, required=True, help="JSON with the extraction seconds")
    ap.add_argument("--runs", type=Path, nargs="*", default=[])
    ap.add_argument("--budget-s", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    paths, y, _ = campaign.read_set(args.train)
    vpaths, yv, _ = campaign.read_set(args.valid)
    x = campaign.extract_features(paths, args.features / f"feat_{args.train.name}")
    xv = campaign.extract_features(vpaths, args.features / f"feat_{args.valid.name}")
    seconds_per_clip = json.loads(args.extract_log.read_text())["train_seconds"] / len(paths)
    head_s = 60.0
    fits = int(min(len(paths), (args.budget_s - head_s) / seconds_per_clip))
    encoder = load_encoder()
    enc_cost = mmac_per_second(encoder.features)
    rows = []
    for run in args.runs:
        scorer = load_qa(run)
        with open(run / "metrics.csv") as f:
            epochs = list(csv.DictReader(f))
        trained_s = sum(float(r["seconds"]) for r in epochs)
        with torch.no_grad():
            pred = [float(scorer(torch.from_numpy(load_audio(p))[None])) for p in vpaths]
        rows.append({"model": f"{scorer.config['arch']} (from scratch, {len(epochs)} epochs)",
                     "mmac_s": mmac_per_second(scorer), "passes_s": len(epochs) * len(paths) / trained_s,
                     "lcc": lcc(pred, yv[:, 0])})
    rows.append({"model": "Distill-MOS zero-shot", "mmac_s": enc_cost, "passes_s": float("nan"),
                 "lcc": lcc(xv[:, -1], yv[:, 0])})
    for name, pred in (
            ("frozen encoder + ridge, all 3,449 features", ridge(x[:fits], y[:fits], xv, yv, x.shape[1])),
            (f"frozen encoder + ridge on {campaign.RANK} principal axes (campaign)",
             ridge(x[:fits], y[:fits], xv, yv, campaign.RANK)),
            ("frozen encoder + MLP(128) head", mlp_head(x[:fits], y[:fits, 0], xv, head_s))):
        rows.append({"model": f"{name}, {fits} clips", "mmac_s": enc_cost,
                     "passes_s": fits / args.budget_s, "lcc": lcc(pred, yv[:, 0])})
    lines = [f"Budget {args.budget_s / 60:.0f} min on 2 threads; {len(paths)} training clips, "
             f"{len(vpaths)} validation clips (unseen voices, noise files and rooms).", "",
             "| model | MMAC / audio s | clip-passes / s | validation LCC |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['mmac_s']:.0f} | {r['passes_s']:.2f} | {r['lcc']:.3f} |" for r in rows]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
