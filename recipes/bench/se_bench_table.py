"""Score enhancers on a fixed test list, then one table of mean ± sd over seeds (recipes/bench/bench_se.sh).

    python recipes/bench/se_bench_table.py score PAIRS OUT.csv --label noisy
    python recipes/bench/se_bench_table.py score PAIRS OUT.csv --label spectral_gating \
        --classic spectral_gating
    python recipes/bench/se_bench_table.py score PAIRS OUT.csv --label control --seed 1 --run RUN \
        [--device cuda]
    python recipes/bench/se_bench_table.py table SCORES_DIR [--control control] [--out table]
    python recipes/bench/se_bench_table.py watch RUNS_DIR [--out critic_watch]
    python recipes/bench/se_bench_table.py pick RUNS_DIR PREFIX [--metric valid_pesq]

`score` writes one row per test file: PESQ-WB, STOI, SI-SNR, DNSMOS SIG/BAK/OVRL, the listener MOS (the
Distill-MOS encoder's own head, trained on listeners' ratings: `mosqa predict`'s listener_mos), the
prediction of a quality model (`--qa-model`, default the shipped pesq-wb) and, for a run whose critic
learned (train-se --qa learn, grl, joint), that critic's own prediction as its checkpoint holds it; of
the enhanced file, of a classic enhancer's output (`--classic`), or of the noisy input. A score file
already written keeps its numbers: only the columns it lacks are computed and added (the listener
column, for the runs scored before it existed; a fine-tune kept without its weights cannot get one).
`table` reads every CSV in SCORES_DIR, averages each (label, seed) over the files (and each judge's
absolute error against the true PESQ, so a critic's error on test outputs before and after learning sits
side by side), then gives per label the mean ± sd over its seeds and, for every label that has the
control's seeds, the paired difference to the control (mean ± sd over seeds of label − control, same
seed, signed: +0.123 ± 0.045): the figure the guidance claims stand on; a column a run lacks shows –.
Writes OUT.csv and OUT.md and prints the table. `watch` gathers each learning critic's LCC and error
against the true PESQ of the enhancer's fresh outputs, epoch by epoch (metrics.csv's critic_lcc,
critic_mae; a warmed-up critic's held-out LCC before and after its warm-up first): exploitation would
show as a falling LCC and a rising error. `pick` prints the name of the run under RUNS_DIR starting with
PREFIX whose best epoch has the highest validation metric: the bench's pilot choosing a weight.
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import yaml

from mosqa.audio import atomic_path
from mosqa.errors import MosqaError

METRICS = ("pesq", "stoi", "si_snr", "sig", "bak", "ovrl", "listener", "qa", "critic")
SIGNAL = ("pesq", "stoi", "si_snr", "sig", "bak", "ovrl")  # evaluate.item_metrics's, computed together
# a judge's error: mean |prediction - true PESQ| over the files, for the quality model (--qa-model; the
# learning critic's starting point when they are the same model) and the run's own learned critic
ERRORS = {"qa_err": "qa", "critic_err": "critic"}
COLUMNS = (*METRICS, *ERRORS)
FIRST = ("noisy", "spectral_gating", "baseline", "control")  # table order; the guided labels follow
DELTAS = ("pesq", "stoi", "si_snr", "ovrl", "listener", "qa")
MISSING = "–"


def spectral_gating(noisy: np.ndarray, sr: int) -> np.ndarray:
    """noisereduce's non-stationary spectral gating with its defaults: the classic floor users know."""
    import noisereduce

    return noisereduce.reduce_noise(y=noisy, sr=sr).astype(np.float32)


CLASSIC = {"spectral_gating": spectral_gating}


def learned_critic(run, device):
    """The critic a train-se run trained beside its enhancer (its checkpoint's `qa` state: the learning
    part, guidance.learnable), or None."""
    from mosqa.guidance import INTRUSIVE
    from mosqa.intrusive_critic import IntrusiveCritic
    from mosqa.qa import load_qa
    from mosqa.runs import find_checkpoint, load_checkpoint, load_run_config

    run_dir, ckpt = find_checkpoint(run)
    state = load_checkpoint(ckpt, device).get("qa")
    if not state:
        return None
    cfg = load_run_config(run_dir)
    if cfg["qa_model"] == INTRUSIVE:
        critic = learned = IntrusiveCritic(cfg["sample_rate"])
    else:
        critic = load_qa(cfg["qa_model"], device)
        learned = critic.trained
    learned.load_state_dict(state)
    return critic.to(device).eval()


class Listener:
    """What listeners would say: the Distill-MOS encoder's own MOS head, read as `mosqa predict` reads its
    listener_mos (the file's windows unpadded), a judge like a quality model: (1, N) waveform -> (1,)."""

    def __init__(self, device):
        from mosqa.distill_mos import SAMPLE_RATE, load_encoder
        from mosqa.frontend import FrontEnd

        self.encoder, self.frontend = load_encoder(device), FrontEnd(sample_rate=SAMPLE_RATE)

    def __call__(self, wav):
        from mosqa.distill_mos import LISTENER

        return self.encoder.features(wav)[:, LISTENER]


def judged(judge, est: np.ndarray, clean: np.ndarray, sr: int, device) -> float:
    """A judge's score of `est`: a quality model (or the Listener) hears it alone; the intrusive critic
    (normalised PESQ, (PESQ - 1) / 4) hears it beside its clean reference, its score mapped back to PESQ."""
    import torch

    from mosqa.audio import resample
    from mosqa.intrusive_critic import IntrusiveCritic

    def tensor(x):
        return torch.from_numpy(resample(x, sr, judge.frontend.sample_rate)).float()[None].to(device)

    with torch.no_grad():
        if isinstance(judge, IntrusiveCritic):
            return float(judge(tensor(est), None, tensor(clean))) * 4.0 + 1.0
        return float(judge(tensor(est)))


def score(pairs, out_csv, label: str, seed: int | None, run=None, qa_model: str = "pesq-wb",
          device: str = "cpu", threads: int = 1, classic: str | None = None) -> list[dict]:
    """Per-file metrics of `run`'s enhancement of each noisy file of `pairs` (or of the `classic`
    enhancer's, or of the noisy file itself), against its clean reference. An `out_csv` already written
    keeps its numbers and gets only the columns it lacks."""
    import torch

    from mosqa.audio import load_audio
    from mosqa.dnsmos import Scorer
    from mosqa.enhance import enhance_wave, load_se
    from mosqa.evaluate import item_metrics
    from mosqa.metrics import PESQ_RATE
    from mosqa.qa import load_qa
    from mosqa.se_data import read_pairs

    kept = _rows_by_file(out_csv)
    missing = [m for m in METRICS if not kept or m not in next(iter(kept.values()))]
    if not missing:
        return list(kept.values())
    torch.set_num_threads(threads)  # the bench scores JOBS runs side by side
    model, cfg = load_se(run, device) if run else (None, {"sample_rate": PESQ_RATE})
    sr = cfg["sample_rate"]
    makers = {"qa": lambda: load_qa(qa_model, device),
              "critic": lambda: learned_critic(run, device) if run else None,
              "listener": lambda: Listener(device)}
    judges = {name: make() for name, make in makers.items() if name in missing}
    dnsmos = Scorer() if set(SIGNAL) & set(missing) else None
    rows = []
    for noisy_path, clean_path, _ in read_pairs(pairs):
        noisy, clean = load_audio(noisy_path, sr), load_audio(clean_path, sr)
        if model is not None:
            est = enhance_wave(model, noisy, 10 * sr, sr // 2, device)
        else:
            est = CLASSIC[classic](noisy, sr) if classic else noisy
        est = np.clip(est[: len(clean)], -1.0, 1.0)
        row = kept.get(noisy_path.name) or {"file": noisy_path.name, "label": label,
                                            "seed": "" if seed is None else seed}
        if dnsmos is not None:
            row |= item_metrics(clean, est, sr, dnsmos)
        for name, judge in judges.items():
            if judge is None:
                row[name] = float("nan")
                continue
            row[name] = judged(judge, est, clean, sr, device)
        rows.append(row)
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    return rows


def _rows_by_file(path) -> dict[str, dict]:
    """A score file's rows by file name ({} when there is none yet)."""
    if not Path(path).is_file():
        return {}
    with open(path, newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def seed_means(csv_files) -> dict[str, dict[str, dict[str, float]]]:
    """label -> seed -> metric -> mean over that run's files (NaN, e.g. PESQ of a silent file, left out)."""
    out: dict = {}
    for path in csv_files:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise MosqaError(f"{path}: no scored files")
        label, seed = rows[0]["label"], rows[0]["seed"]
        means = {m: _mean([float(r.get(m, "nan")) for r in rows]) for m in METRICS}
        means |= {e: _mean([abs(float(r.get(m, "nan")) - float(r["pesq"])) for r in rows])
                  for e, m in ERRORS.items()}
        out.setdefault(label, {})[seed] = means
    return out


def _mean(values: list[float]) -> float:
    """The mean of the finite values; NaN when there are none (a column a run does not have)."""
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def summary(means: dict, control: str = "control") -> list[dict]:
    """One row per label: mean and sd over seeds of each metric; paired differences to the control."""
    order = [lab for lab in FIRST if lab in means] + sorted(set(means) - set(FIRST))
    rows = []
    for label in order:
        seeds = means[label]
        row = {"label": label, "seeds": len(seeds)}
        for m in COLUMNS:
            values = np.array([s[m] for s in seeds.values()])
            row[m] = float(values.mean())
            row[f"{m}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        paired = sorted(set(seeds) & set(means.get(control, {})))
        if label != control and paired:
            for m in DELTAS:
                diff = np.array([seeds[s][m] - means[control][s][m] for s in paired])
                row[f"d_{m}"] = float(diff.mean())
                row[f"d_{m}_sd"] = float(diff.std(ddof=1)) if len(diff) > 1 else float("nan")
        rows.append(row)
    return rows


def _cell(row: dict, key: str) -> str:
    """mean ± sd; a paired difference signed (+0.123 ± 0.045); – where there is no value."""
    if key not in row or np.isnan(row[key]):
        return MISSING
    sd = row.get(f"{key}_sd", float("nan"))
    return f"{row[key]:{'+' if key.startswith('d_') else ''}.3f}" + ("" if np.isnan(sd) else f" ± {sd:.3f}")


def campaign_row(model: str = "pesq-wb"):
    """The campaign row of `model`, a shipped name or a folder (its config.yaml's campaign: row:), None if it
    has none."""
    from mosqa.pretrained import resolve

    config = yaml.safe_load((resolve(model) / "config.yaml").read_text())
    return (config.get("campaign") or {}).get("row")


def write_table(rows: list[dict], out, pesq_wb: str = "pesq-wb") -> str:
    """OUT.csv (numbers) and OUT.md (mean ± sd cells), naming the campaign row of the runs' `pesq_wb`;
    returns the markdown."""
    columns = ["label", "seeds", *COLUMNS, *(f"d_{m}" for m in DELTAS)]
    head = ["run", "seeds", "PESQ", "STOI", "SI-SNR", "SIG", "BAK", "OVRL", "listener MOS", "QA pred.",
            "own critic's pred.", "QA |err|", "critic |err|", "Δ PESQ", "Δ STOI", "Δ SI-SNR", "Δ OVRL",
            "Δ listener", "Δ QA pred."]
    lines = ["QA: the quality model --qa-model; |err|: mean |prediction - true PESQ| over the files. "
             "listener MOS: the Distill-MOS encoder's own head (predict's listener_mos). "
             "Δ: paired difference to the control (same seed), mean ± sd over seeds. –: no value (a judge "
             "the run has not, or a column added after the run was scored and kept without its weights). "
             f"pesq-wb (--qa-model of the *_pesqwb runs): campaign row {campaign_row(pesq_wb)}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], str(r["seeds"]), *(_cell(r, c) for c in columns[2:])]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out = Path(out)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(text)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(out.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return text


def critic_watch(runs_dir: Path, out) -> str:
    """Per learning-critic run (RUNS_DIR/TAG/RUN/metrics.csv with critic_lcc): its critic's LCC and mean
    absolute error (PESQ) against the true PESQ of fresh enhanced batches, each epoch. OUT.md; the text."""
    lines = ["| run | epoch: critic LCC / MAE vs true PESQ ... |", "|---|---|"]
    for metrics in sorted(runs_dir.glob("*/*/metrics.csv")):
        with open(metrics, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("critic_lcc")]
        if rows:
            cells = ", ".join(f"{r['epoch']}: {float(r['critic_lcc']):.3f} / {float(r['critic_mae']):.3f}"
                              for r in rows)
            warm = metrics.parent / "critic_warm.yaml"
            if warm.is_file():
                w = yaml.safe_load(warm.read_text())
                cells = f"warm-up (held out): {w['lcc_before']:.3f} → {w['lcc_after']:.3f}; " + cells
            lines.append(f"| {metrics.parent.parent.name} | {cells} |")
    if len(lines) == 2:
        raise MosqaError(f"{runs_dir}: no run with a learning critic (no critic_lcc in any metrics.csv)")
    text = "\n".join(lines) + "\n"
    with atomic_path(Path(out).with_suffix(".md")) as tmp:
        tmp.write_text(text)
    return text


def pick(runs_dir: Path, prefix: str, metric: str = "valid_pesq") -> str:
    """The name of the run under RUNS_DIR (NAME/<run>/metrics.csv) starting with `prefix` whose best epoch
    has the highest validation `metric` (the pilot's choice is made on validation, not on the test set)."""
    best = {}
    for metrics in sorted(runs_dir.glob(f"{prefix}*/*/metrics.csv")):
        with open(metrics, newline="") as f:
            values = [float(r[metric]) for r in csv.DictReader(f) if r.get(metric)]
        if any(np.isfinite(values)):
            best[metrics.parent.parent.name] = max(v for v in values if np.isfinite(v))
    if not best:
        raise MosqaError(f"{runs_dir}: no run {prefix}* with {metric} in its metrics.csv")
    return max(best, key=best.get)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("score")
    sc.add_argument("pairs")
    sc.add_argument("out_csv")
    sc.add_argument("--label", required=True)
    sc.add_argument("--seed", type=int)
    sc.add_argument("--run")
    sc.add_argument("--qa-model", default="pesq-wb")
    sc.add_argument("--device", default="cpu")
    sc.add_argument("--threads", type=int, default=1)
    sc.add_argument("--classic", choices=sorted(CLASSIC), help="score this classic enhancer's output")
    tb = sub.add_parser("table")
    tb.add_argument("scores_dir", type=Path)
    tb.add_argument("--control", default="control")
    tb.add_argument("--out", default=None, help="OUT.csv and OUT.md; default: beside SCORES_DIR, table")
    tb.add_argument("--pesq-wb", default="pesq-wb", help="the pesq-wb the runs used (a name or a folder)")
    wt = sub.add_parser("watch")
    wt.add_argument("runs_dir", type=Path)
    wt.add_argument("--out", default=None, help="OUT.md; default: beside RUNS_DIR, critic_watch")
    pk = sub.add_parser("pick")
    pk.add_argument("runs_dir", type=Path)
    pk.add_argument("prefix")
    pk.add_argument("--metric", default="valid_pesq")
    args = ap.parse_args(argv)
    try:
        if args.command == "score":
            score(args.pairs, args.out_csv, args.label, args.seed, args.run, args.qa_model, args.device,
                  args.threads, args.classic)
            return 0
        if args.command == "watch":
            print(critic_watch(args.runs_dir, args.out or args.runs_dir.parent / "critic_watch"))
            return 0
        if args.command == "pick":
            print(pick(args.runs_dir, args.prefix, args.metric))
            return 0
        files = sorted(args.scores_dir.glob("*.csv"))
        if not files:
            raise MosqaError(f"{args.scores_dir}: no score files")
        out = args.out or args.scores_dir.parent / "table"
        print(write_table(summary(seed_means(files), args.control), out, args.pesq_wb))
    except MosqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
