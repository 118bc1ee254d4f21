"""`mosqa eval-qa`: score a test list with trained quality models and compare runs.

Per run: MSE on the 1–5 and the normalised scale, RMSE, LCC, SRCC, KTAU, RMSE after a first-order
map, per-condition metrics when the list names conditions; classifier models are scored both as
`cls` and `avg+cls`, as the log reports them. Several runs give one comparison table listing only
the options in which the runs differ.

Enhancement runs (train-se) are validated with PESQ-WB, STOI, SI-SNR and DNSMOS SIG/BAK/OVRL
(`enhancement_metrics`) and compared on their best epoch (`compare_runs`, `mosqa enhance --compare`).
"""

import csv
import os
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from mosqa.audio import atomic_csv, resample
from mosqa.checks import (
    RUN_KINDS,
    has_checkpoint,
    not_an_input,
    output_dir,
    output_file,
    require_kind,
    run_kind,
    writes_stdout,
)
from mosqa.data import BucketBatchSampler, FeatureSet, collate, load_features
from mosqa.errors import MosqaError
from mosqa.lists import read_list
from mosqa.metrics import PESQ_RATE, correlation_metrics, per_condition_metrics, pesq_wb, si_snr, stoi
from mosqa.names import SE_METRICS
from mosqa.plots import scatter_png
from mosqa.progress import progress_bar
from mosqa.qa import load_qa
from mosqa.runs import find_checkpoint, load_checkpoint, load_run_config, load_yaml, pick_device, save_yaml

# Settings that say where or how a run ran, not what it learned: left out of comparisons.
NOT_COMPARED = ("valid", "cache_dir", "exp_dir", "device", "threads", "num_workers", "name", "epochs",
                "tensorboard")
ROW_METRICS = (
    "mse",
    "mse_norm",
    "rmse",
    "lcc",
    "srcc",
    "ktau",
    "rmse_map",
    "lcc_con",
    "srcc_con",
    "rmse_map_con",
)
# How a classifier's two branches become one score; a regression model has only "score".
CLASSIFIER_PREDICTIONS = {
    "cls": lambda p: p["cls"],
    "avg+cls": lambda p: (p["reg"] + p["cls"]) / 2,
}


def predict(model, dataset: FeatureSet, batch_size: int, device, rank: int = 0, world_size: int = 1) -> dict:
    """{'index', 'score'(, 'reg', 'cls')} arrays over this rank's share of `dataset`, in length order."""
    model.eval()
    sampler = BucketBatchSampler(dataset.lengths, batch_size, shuffle=False, rank=rank, world_size=world_size)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    parts: dict[str, list] = {"index": []}
    with torch.no_grad():
        for x, lengths, _, idx in loader:
            out = model(x.to(device), lengths.to(device))
            parts["index"].append(idx.numpy())
            for key in ("score", "reg", "cls"):
                if key in out:
                    parts.setdefault(key, []).append(out[key].float().cpu().numpy())
    if not parts["index"]:
        return {"index": np.zeros(0, dtype=np.int64), "score": np.zeros(0)}
    return {k: np.concatenate(v) for k, v in parts.items()}


def prediction_modes(pred: dict) -> dict[str, np.ndarray]:
    if "cls" in pred:
        return {name: fn(pred) for name, fn in CLASSIFIER_PREDICTIONS.items()}
    return {"score": pred["score"]}


def _in_order(pred: dict) -> dict:
    order = np.argsort(pred["index"])
    return {k: v[order] for k, v in pred.items() if k != "index"}


def score_run(run_dir, ckpt, items, list_path, batch_size: int, device, cache_dir, console) -> dict:
    """Predictions and metrics of one run on `items`; writes nothing but the feature cache."""
    scorer = load_qa(ckpt, device)
    cache = Path(cache_dir) if cache_dir else run_dir.parent / ".cache"
    with progress_bar(console) as prog:
        feats, offsets = load_features(items, scorer.frontend, cache, Path(list_path).stem, prog)
    dataset = FeatureSet(feats, offsets, [it.score for it in items])
    pred = _in_order(predict(scorer.model, dataset, batch_size, device))
    true = dataset.scores.astype(np.float64)
    modes = prediction_modes(pred)
    conditions = [it.condition for it in items]
    results = {}
    for mode, p in modes.items():
        m = correlation_metrics(p, true)
        if all(c is not None for c in conditions):
            m.update(per_condition_metrics(p, true, conditions))
        results[mode] = m
    return {"run_dir": run_dir, "checkpoint": ckpt, "metrics": results, "true": true, "modes": modes,
            "columns": {**modes, **pred}}


def write_run_outputs(result: dict, out: Path, items, list_path) -> None:
    """predictions.csv, metrics.yaml and one scatter PNG per prediction mode into `out`."""
    run_dir, true = result["run_dir"], result["true"]
    _write_predictions(out / "predictions.csv", items, true, result["columns"])
    save_yaml(out / "metrics.yaml", {"run": str(run_dir), "checkpoint": str(result["checkpoint"]),
                                     "list": str(Path(list_path)), "metrics": result["metrics"]})
    for mode, p in result["modes"].items():
        m = result["metrics"][mode]
        title = (
            f"{run_dir.name} [{mode}]\nMSE {m['mse']:.4f} ({m['mse_norm']:.4f} norm)  "
            f"LCC {m['lcc']:.4f}  SRCC {m['srcc']:.4f}"
        )
        scatter_png(out / f"scatter_{mode.replace('+', '_')}.png", p, true, title)


def _write_predictions(path: Path, items, true, columns: dict) -> None:
    names = list(dict.fromkeys(columns))
    with atomic_csv(path) as w:
        w.writerow(["path", "true", "condition", *names])
        for i, it in enumerate(items):
            values = [f"{columns[k][i]:.6f}" for k in names]
            w.writerow([str(it.path), f"{true[i]:.4f}", it.condition or "", *values])


def differing_options(run_dirs: list[Path]) -> list[str]:
    """Config keys whose values differ between runs (list paths compared by file name).

    A model option only some runs store belongs to their architecture; it is listed when it differs
    among the runs that have it, so crn vs hasa shows `arch`, not every option of both.
    """
    configs = [load_run_config(r) for r in run_dirs]
    keys = [k for k in dict.fromkeys(k for c in configs for k in c) if k not in NOT_COMPARED]
    shown = []
    for k in keys:
        values = {_shown(k, c[k]) for c in configs if k in c}
        if len(values) > 1:
            shown.append(k)
    return shown


def _shown(key: str, value) -> str:
    if key == "train" and value:
        return Path(value).name
    return "-" if value is None else str(value)


def comparison_rows(results: list[dict]) -> list[dict]:
    keys = differing_options([r["run_dir"] for r in results]) if len(results) > 1 else []
    rows = []
    for r in results:
        cfg = load_run_config(r["run_dir"])
        options = " ".join(f"{k}={_shown(k, cfg[k])}" for k in keys if k in cfg)
        for mode, m in r["metrics"].items():
            rows.append(
                {
                    "run": r["run_dir"].name,
                    "predict": mode,
                    "options": options,
                    **{k: m[k] for k in ROW_METRICS if k in m},
                }
            )
    return rows


def comparison_table(rows: list[dict], title: str) -> Table:
    metrics = ["mse", "mse_norm", "lcc", "srcc", "ktau"]
    metrics += [k for k in ("lcc_con", "srcc_con", "rmse_map_con") if any(k in r for r in rows)]
    table = Table(title=title)
    table.add_column("run", no_wrap=True)
    table.add_column("predict")
    table.add_column("options")
    for c in metrics:
        table.add_column(c, justify="right")
    for r in rows:
        values = [f"{r[k]:.4f}" if k in r else "-" for k in metrics]
        table.add_row(r["run"], r["predict"], r["options"], *values)
    return table


def write_rows(path: Path, rows: list[dict]) -> None:
    with atomic_csv(path, list(rows[0])) as w:
        w.writeheader()
        w.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)


def usable_runs(paths: list, console: Console) -> list[tuple[Path, Path]]:
    """(run_dir, checkpoint) of each train-qa run given.

    With several paths (a glob such as exp/*/, where train-se runs may live too), a folder with no
    checkpoint (a failed or unfinished run, an eval output folder) or a run of the other kind is
    skipped with a warning; a single path must be a usable train-qa run.
    """
    runs = []
    for p in map(Path, paths):
        if p.is_file() and p.suffix != ".pt":
            raise MosqaError(f"{p}: not a run directory or .pt checkpoint")
        if len(paths) > 1 and p.is_dir():
            kind = run_kind(p)
            reason = ("no best.pt or last.pt (not a finished run)" if not has_checkpoint(p) else
                      f"a {RUN_KINDS[kind]} run, not a quality model" if kind not in (None, "qa") else None)
            if reason:
                console.print(f"[yellow]warning:[/] {p}: {reason}; skipped", highlight=False, soft_wrap=True)
                continue
        require_kind(p, "qa", "eval-qa")
        runs.append(find_checkpoint(p))
    if not runs:
        raise MosqaError(f"{', '.join(map(str, paths))}: no train-qa run with a checkpoint")
    return runs


def evaluate(
    paths: list,
    list_path,
    out_dir=None,
    table_path=None,
    batch_size: int = 16,
    device: str = "auto",
    cache_dir=None,
    console: Console | None = None,
) -> list[dict]:
    """Evaluate every run on `list_path`; print one table (and save it as CSV).

    Everything that can fail (runs, list, audio, checkpoints) fails before the first output is
    written, so a bad run in a glob never leaves half a comparison behind.
    """
    # logs keep whole names; a --table on stdout gets stdout to itself
    console = console or Console(stderr=writes_stdout(table_path), width=None if sys.stdout.isatty() else 160)
    runs = usable_runs(paths, console)
    several = len(paths) > 1  # the layout follows what was asked for, not how many runs were usable
    stem = Path(list_path).stem
    outs = [run_dir / f"eval_{stem}" if not out_dir else Path(out_dir) / run_dir.name if several
            else Path(out_dir) for run_dir, _ in runs]
    if table_path is None:
        if several:
            common = Path(os.path.commonpath([run_dir.absolute() for run_dir, _ in runs]))
            table_path = (Path(out_dir) if out_dir else common) / f"compare_{stem}.csv"
        else:
            table_path = outs[0] / "metrics.csv"
    for out in outs:
        output_dir(out, "--out-dir")
    output_file(table_path, "--table")
    items = read_list(list_path)
    inputs = [*(p for run in runs for p in run), list_path, *(it.path for it in items)]
    not_an_input(outs, inputs, "--out-dir")
    not_an_input([table_path], inputs, "--table")
    dev = pick_device(device)
    results = [score_run(run_dir, ckpt, items, list_path, batch_size, dev, cache_dir, Console(stderr=True))
               for run_dir, ckpt in runs]
    for result, out in zip(results, outs, strict=True):
        write_run_outputs(result, out, items, list_path)
        result["out_dir"] = out
    rows = comparison_rows(results)
    write_rows(Path(table_path), rows)
    console.print(comparison_table(rows, f"{stem}: {len(results)} run(s)"))
    console.print(f"table: {table_path}")
    return results


# ---------------------------------------------------------------- enhancement runs

def enhancement_metrics(enhance, loader, device, sr: int, dnsmos=None, desc: str = "valid") -> dict:
    """Mean PESQ-WB, STOI, SI-SNR (and DNSMOS SIG/BAK/OVRL) of `enhance(noisy, lengths)` over `loader`."""
    rows = []
    with progress_bar() as prog:
        task = prog.add_task(desc, total=len(loader.dataset))
        for noisy, clean, lengths in loader:
            with torch.no_grad():
                est = enhance(noisy.to(device), lengths.to(device)).float().cpu().numpy()
            for k, n in enumerate(lengths.tolist()):
                rows.append(item_metrics(clean[k, :n].numpy(), est[k, :n], sr, dnsmos))
                prog.advance(task)
    return {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]} | {"n": len(rows)}


def item_metrics(clean: np.ndarray, est: np.ndarray, sr: int, dnsmos=None) -> dict:
    """Signal metrics at 16 kHz (PESQ-WB and DNSMOS are defined there)."""
    clean, est = resample(clean, sr, PESQ_RATE), resample(est, sr, PESQ_RATE)
    try:
        p = pesq_wb(clean, est, PESQ_RATE)
    except MosqaError:  # a silent reference has no PESQ; leave it out of the mean
        p = float("nan")
    row = {"pesq": p, "stoi": stoi(clean, est, PESQ_RATE), "si_snr": si_snr(clean, est)}
    if dnsmos is not None:
        s = dnsmos.score(est, PESQ_RATE)
        row |= {"sig": s["SIG"], "bak": s["BAK"], "ovrl": s["OVRL"]}
    return row


def metrics_table(title: str, rows: dict[str, dict]) -> Table:
    table = Table(title=title)
    table.add_column("run", overflow="fold")
    for c in SE_METRICS:
        table.add_column(c.upper(), justify="right")
    for name, m in rows.items():
        values = (f"{float(m[c]):.3f}" if m.get(c) not in (None, "") else "-" for c in SE_METRICS)
        table.add_row(name, *values)
    return table


def best_row(run_dir: Path) -> dict:
    """The metrics.csv row of the epoch that best.pt holds."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise MosqaError(f"{run_dir}: no metrics.csv (not a train-se run?)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise MosqaError(f"{path}: no epochs recorded")
    best = Path(run_dir) / "best.pt"
    epoch = load_checkpoint(best)["epoch"] if best.is_file() else int(rows[-1]["epoch"])
    row = next((r for r in rows if int(r["epoch"]) == epoch), rows[-1])
    return {k.removeprefix("valid_"): v for k, v in row.items() if k.startswith("valid_")}


def compare_runs(run_dirs, out_csv=None, console: Console | None = None) -> list[dict]:
    """One table: the noisy input's row, then each run's best-epoch validation metrics."""
    if not run_dirs:
        raise MosqaError("compare: give at least one train-se run directory")
    rows = []
    first = Path(run_dirs[0]) / "input_metrics.yaml"
    if first.is_file():
        rows.append({"run": "noisy input"} | load_yaml(first))
    for d in run_dirs:
        rows.append({"run": Path(d).name} | best_row(Path(d)))
    table = metrics_table("enhancement runs (validation set)", {r["run"]: r for r in rows})
    (console or Console()).print(table)
    if out_csv:
        with atomic_csv(out_csv, ["run", *SE_METRICS], extrasaction="ignore") as w:
            w.writeheader()
            w.writerows(rows)
    return rows
