"""One table for recipes/pretrain_qa.sh: architectures over seeds beside DNSMOS, on held-out voices.

    python recipes/tools/qa_table.py --test-eval EVAL/test --valid-eval EVAL/valid --meta SIM/meta.csv \
        --dnsmos EVAL/dnsmos_test.csv --out EVAL/table.md --selection EVAL/selected_run.txt

Run directories are named `<conf>_s<seed><timestamp>` by the recipe; runs of one conf are its seeds.
Rows: per conf, test LCC/SRCC mean ± sd over seeds, the LCC of the seeds' averaged predictions
(a seed ensemble) and the validation LCC that selection uses; then DNSMOS OVRL and P.808 zero-shot on
the same clips. Then, for the selected run and DNSMOS OVRL, the same figures per source (libri, so762,
klettres, v1) and per impairment (each single kind, and "combined" for clips with several).
The selected run is the best validation LCC of the conf with the best mean validation LCC, among the
confs `--ship-confs` allows (the shipped model has a speed target that not every architecture meets).
"""

import argparse
import csv
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr

RUN_NAME = re.compile(r"^(?P<conf>.+)_s(?P<seed>\d+)\d{8}_\d{6}$")
SOURCES = ("libri", "so762", "klettres")


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def predictions(run_eval: Path) -> dict[str, tuple[float, float]]:
    """file name -> (label, prediction) of one eval-qa output folder."""
    rows = read_csv(run_eval / "predictions.csv")
    return {Path(r["path"]).name: (float(r["true"]), float(r["score"])) for r in rows}


def correlations(pairs) -> tuple[float, float, int]:
    true, pred = np.array(pairs, dtype=float).T
    return float(pearsonr(true, pred)[0]), float(spearmanr(true, pred)[0]), len(true)


def runs_by_conf(eval_dir: Path) -> dict[str, dict[int, Path]]:
    out = defaultdict(dict)
    for folder in sorted(p for p in eval_dir.iterdir() if (p / "predictions.csv").is_file()):
        m = RUN_NAME.match(folder.name)
        if m:
            out[m["conf"]][int(m["seed"])] = folder
    return out


def source_of(speaker: str) -> str:
    prefix = speaker.split("_")[0]
    return prefix if prefix in SOURCES else "v1"


def impairment_of(degradations: str) -> str:
    return degradations if "+" not in degradations else "combined"


def mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def breakdown(pairs_by_file: dict, meta: dict, key) -> dict[str, tuple[float, float, int]]:
    groups = defaultdict(list)
    for name, pair in pairs_by_file.items():
        groups[key(meta[name])].append(pair)
    return {g: correlations(p) for g, p in sorted(groups.items()) if len(p) >= 3}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-eval", type=Path, required=True)
    ap.add_argument("--valid-eval", type=Path, required=True)
    ap.add_argument("--meta", type=Path, required=True)
    ap.add_argument("--dnsmos", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--selection", type=Path, required=True)
    ap.add_argument("--ship-confs", default="", help="confs selection may pick, A,B (default: any)")
    args = ap.parse_args(argv)

    meta = {Path(r["wav"]).name: r for r in read_csv(args.meta)}
    test, valid = runs_by_conf(args.test_eval), runs_by_conf(args.valid_eval)
    lines = ["| model | seeds | test LCC | test SRCC | seed-ensemble LCC / SRCC | valid LCC |",
             "|---|---|---|---|---|---|"]
    valid_lcc, test_preds = {}, {}
    for conf, seeds in test.items():
        preds = {s: predictions(folder) for s, folder in seeds.items()}
        test_preds[conf] = preds
        per_seed = [correlations(list(p.values())) for p in preds.values()]
        files = sorted(set.intersection(*(set(p) for p in preds.values())))
        ensemble = correlations([(preds[next(iter(preds))][f][0], np.mean([p[f][1] for p in preds.values()]))
                                 for f in files])
        valid_lcc[conf] = {s: correlations(list(predictions(folder).values()))[0]
                           for s, folder in valid.get(conf, {}).items()}
        lines.append(f"| {conf} | {len(seeds)} | {mean_sd([c[0] for c in per_seed])} | "
                     f"{mean_sd([c[1] for c in per_seed])} | {ensemble[0]:.3f} / {ensemble[1]:.3f} | "
                     f"{mean_sd(list(valid_lcc[conf].values())) if valid_lcc[conf] else '-'} |")
    first = next(iter(next(iter(test_preds.values())).values()))
    dns = {Path(r["filename"]).name: r for r in read_csv(args.dnsmos) if not r.get("error")}
    dns_pairs = {}
    for column in ("OVRL", "P808_MOS"):
        dns_pairs[column] = {f: (first[f][0], float(dns[f][column])) for f in first if f in dns}
        lcc, srcc, n = correlations(list(dns_pairs[column].values()))
        lines.append(f"| DNSMOS {column} (zero-shot) | - | {lcc:.3f} | {srcc:.3f} | - | - |")
    n_test = len(first)
    lines.insert(0, f"Held-out test voices: {n_test} clips. Validation selects; test only reports.\n")

    allowed = args.ship_confs.split(",") if args.ship_confs else list(valid_lcc)
    eligible = [c for c in valid_lcc if valid_lcc[c] and c in allowed]
    best_conf = max(eligible, key=lambda c: np.mean(list(valid_lcc[c].values())))
    best_seed = max(valid_lcc[best_conf], key=valid_lcc[best_conf].get)
    chosen = test_preds[best_conf][best_seed]
    among = f" among {', '.join(eligible)}" if args.ship_confs else ""
    lines += ["", f"Selected on validation{among}: {best_conf} seed {best_seed}.", ""]
    for title, key in (("source", lambda m: source_of(m["speaker"])),
                       ("impairment", lambda m: impairment_of(m["degradations"]))):
        ours, theirs = breakdown(chosen, meta, key), breakdown(dns_pairs["OVRL"], meta, key)
        lines += [f"| {title} | clips | selected LCC | selected SRCC | DNSMOS OVRL LCC |",
                  "|---|---|---|---|---|"]
        lines += [f"| {g} | {n} | {lcc:.3f} | {srcc:.3f} | {theirs[g][0]:.3f} |"
                  for g, (lcc, srcc, n) in ours.items()]
        lines.append("")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    args.selection.write_text(str(valid[best_conf][best_seed].name) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
