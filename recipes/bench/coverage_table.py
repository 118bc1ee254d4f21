"""Per impairment kind: how well, and how biased, quality models rank held-out clips (issue 14).

    python recipes/bench/coverage_table.py --meta SIM/meta.csv --out EVAL/coverage.md \
        "before=EVAL/test/narrow_*" "after=EVAL/test/wide_*" "shipped=EVAL/test/pesq-wb"

Each GROUP=GLOB names eval-qa output folders (each with a predictions.csv) that belong together,
usually one model trained with several seeds. For every folder and every impairment kind of the
test clips (meta.csv `degradations`; several at once is "combined") it computes the LCC and the
bias (mean of predicted minus true, on the 1-5 scale), then reports mean ± sd over the group's
folders. A cell is starred where the issue's target fails: |bias| > 0.25 or LCC < 0.85.
"""

import argparse
import glob
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # qa_table: pretrain_qa.sh's table
from qa_table import impairment_of, mean_sd, predictions, read_csv  # noqa: E402

MAX_BIAS, MIN_LCC = 0.25, 0.85


def per_kind(pairs_by_file: dict, kind_of: dict) -> dict[str, tuple[float, float, int]]:
    """kind -> (LCC, bias, clips), with "all" for every clip; kinds of fewer than 3 clips are left out."""
    groups = defaultdict(list)
    for name, pair in pairs_by_file.items():
        groups[kind_of[name]].append(pair)
        groups["all"].append(pair)
    out = {}
    for kind, pairs in sorted(groups.items()):
        if len(pairs) >= 3:
            true, pred = np.array(pairs, dtype=float).T
            out[kind] = (float(pearsonr(true, pred)[0]), float(np.mean(pred - true)), len(pairs))
    return out


def sd(values) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def cell(values, failed) -> str:
    return mean_sd(values) + (" *" if failed else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meta", type=Path, required=True,
                    help="meta.csv of the simulation the test clips come from")
    ap.add_argument("--out", type=Path, required=True, help="the markdown table; a CSV goes beside it")
    ap.add_argument("groups", nargs="+", help="NAME=GLOB of eval-qa output folders")
    args = ap.parse_args(argv)

    kind_of = {Path(r["wav"]).name: impairment_of(r["degradations"]) for r in read_csv(args.meta)}
    results = {}  # group -> kind -> [(lcc, bias, n) per folder]
    for spec in args.groups:
        name, _, pattern = spec.partition("=")
        folders = sorted(p for p in map(Path, glob.glob(pattern)) if (p / "predictions.csv").is_file())
        if not name or not folders:
            ap.error(f"{spec}: expected NAME=GLOB matching eval-qa folders with a predictions.csv")
        results[name] = defaultdict(list)
        for folder in folders:
            for kind, figures in per_kind(predictions(folder), kind_of).items():
                results[name][kind].append(figures)

    kinds = sorted({k for r in results.values() for k in r}, key=lambda k: (k == "all", k))
    header = "| kind | clips | " + " | ".join(f"{g} LCC | {g} bias" for g in results) + " |"
    runs = ", ".join(f"{group}: {len(per['all'])}" for group, per in results.items())
    lines = [f"Mean ± sd over each group's runs ({runs}); "
             f"* = target missed (|bias| > {MAX_BIAS} or LCC < {MIN_LCC}).", "",
             header, "|" + "---|" * (2 + 2 * len(results))]
    csv_rows = ["group,kind,clips,runs,lcc_mean,lcc_sd,bias_mean,bias_sd"]
    for kind in kinds:
        clips = next(r[kind][0][2] for r in results.values() if kind in r)
        cells = []
        for group, per in results.items():
            figures = np.array(per.get(kind, []), dtype=float).reshape(-1, 3)
            if not len(figures):
                cells += ["-", "-"]
                continue
            lcc, bias = figures[:, 0], figures[:, 1]
            cells += [cell(lcc, lcc.mean() < MIN_LCC), cell(bias, abs(bias.mean()) > MAX_BIAS)]
            csv_rows.append(f"{group},{kind},{clips},{len(figures)},{lcc.mean():.4f},{sd(lcc):.4f},"
                            f"{bias.mean():.4f},{sd(bias):.4f}")
        lines.append(f"| {kind} | {clips} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".csv").write_text("\n".join(csv_rows) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
