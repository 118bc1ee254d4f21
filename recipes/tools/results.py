"""The README's "Results" table and scatter: one quality model on held-out clips beside DNSMOS (zero-shot).

    python recipes/tools/results.py --eval EVAL --meta SIM/meta.csv --dnsmos DNSMOS.csv --name pesq-wb \
        --out docs/results/results.md --scatter docs/results/scatter_pesq-wb.png

EVAL is an eval-qa output folder (predictions.csv) of the model on the clips simulated in SIM; the
labels are theirs (wideband PESQ). Rows: all clips, then per source (libri, so762, klettres, v1) and
per impairment kind (each single kind, "combined" for several): LCC and SRCC of the model, of DNSMOS
OVRL and of DNSMOS P.808 on the same clips. A group of fewer than 3 clips is left out.
"""

import argparse
import sys
from pathlib import Path

from qa_table import breakdown, impairment_of, predictions, read_csv, source_of

from mosqa.plots import scatter_png

PEERS = {"DNSMOS OVRL": "OVRL", "DNSMOS P.808": "P808_MOS"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval", type=Path, required=True, help="eval-qa output folder of the model")
    ap.add_argument("--meta", type=Path, required=True, help="meta.csv of the simulation")
    ap.add_argument("--dnsmos", type=Path, required=True, help="mosqa dnsmos CSV of the same clips")
    ap.add_argument("--name", default="pesq-wb", help="the model's name in the table")
    ap.add_argument("--out", type=Path, required=True, help="the markdown table")
    ap.add_argument("--scatter", type=Path, required=True, help="the model's scatter PNG")
    args = ap.parse_args(argv)

    meta = {Path(r["wav"]).name: r for r in read_csv(args.meta)}
    ours = predictions(args.eval)
    dns = {Path(r["filename"]).name: r for r in read_csv(args.dnsmos) if not r.get("error")}
    models = {args.name: ours} | {peer: {f: (label, float(dns[f][col])) for f, (label, _) in ours.items()
                                         if f in dns} for peer, col in PEERS.items()}
    views = {"all": lambda m: "all", "source": lambda m: source_of(m["speaker"]),
             "impairment": lambda m: impairment_of(m["degradations"])}
    tables = {name: {view: breakdown(pairs, meta, key) for view, key in views.items()}
              for name, pairs in models.items()}
    lines = [f"{len(ours)} held-out clips (voices never trained on), labels wideband PESQ; "
             f"LCC / SRCC per group.", "",
             "| group | clips | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for view in views:
        for group, (_, _, n) in tables[args.name][view].items():
            cells = [f"{t[view][group][0]:.2f} / {t[view][group][1]:.2f}" if group in t[view] else "-"
                     for t in tables.values()]
            label = group if view == "all" else f"{view}: {group}"
            lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    true, pred = zip(*ours.values(), strict=True)
    lcc, srcc, n = tables[args.name]["all"]["all"]
    title = f"{args.name} on {n} held-out clips (wideband PESQ)\nLCC {lcc:.3f}  SRCC {srcc:.3f}"
    scatter_png(args.scatter, pred, true, title)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
