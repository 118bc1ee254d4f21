"""`mosqa prepare-list`: parse options, run mosqa.prepare, print split and histogram tables."""

from pathlib import Path

import typer


def histogram_table(title: str, counts: dict, edges, notes=None):
    """Rich table: one row per score bin, one column per named count series, a bar for the first."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("score bin")
    for name in counts:
        table.add_column(name, justify="right")
    table.add_column("")
    first = next(iter(counts.values()))
    peak = max(first) or 1
    for b in range(len(edges) - 1):
        bar = "█" * round(24 * first[b] / peak) + (f" {notes[b]}" if notes else "")
        table.add_row(f"{edges[b]:.2f}–{edges[b + 1]:.2f}", *(str(c[b]) for c in counts.values()), bar)
    return table


def command(
    lists: list[Path] = typer.Argument(..., help="Input lists (wav,score | noisy,clean,score | CSV with a "
                                       "header, e.g. NISQA's). A meta.csv beside a list supplies speakers."),
    out_dir: Path = typer.Option(..., "--out-dir", "-o", help="Where wav_{train,valid,test}_qn.list, "
                                 "wav_train_qn_rs.list, score_hist.png and prepare_summary.json go."),
    seed: int = typer.Option(0, "--seed", help="Seed for the group split and the resampling. Default: 0."),
    split: str = typer.Option("0.8,0.1,0.1", "--split", help="TRAIN,VALID,TEST ratios (of items, split by "
                              "whole groups)."),
    group_col: str = typer.Option(None, "--group-col", help="CSV lists: the column that names the group, "
                                  "e.g. filepath_ref to keep every version of one clean file together. "
                                  "Default: a group/speaker column, else meta.csv's speaker, else the parent "
                                  "folder."),
    test_groups: str = typer.Option(None, "--test-groups", help="Comma-separated groups (speakers) that form "
                                    "the test split, e.g. unseen speakers. Default: drawn by --seed."),
    valid_groups: str = typer.Option(None, "--valid-groups", help="Comma-separated groups that form the "
                                     "validation split (default: drawn by --seed)."),
    bin_width: float = typer.Option(0.25, "--bin-width", help="Score bin width for balancing."),
    score_range: str = typer.Option("1,5", "--score-range", help="LOW,HIGH of the balancing bins."),
    target: str = typer.Option("median", "--target", help="Items per bin after balancing: median | max | N. "
                               "Large bins are down-sampled, small ones up-sampled with replacement."),
    min_dur: float = typer.Option(0.5, "--min-dur", help="Shortest accepted file, seconds (not below 0.5, "
                                  "the shortest train-qa and eval-qa accept)."),
    max_dur: float = typer.Option(60.0, "--max-dur", help="Longest accepted file, seconds."),
    silence_db: float = typer.Option(-70.0, "--silence-db", help="Files whose RMS level is below this "
                                     "(dBFS) count as silent (not below -70, train-qa's and eval-qa's "
                                     "limit)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Drop bad lines and files (reported, and listed "
                                  "in bad_files.csv) instead of stopping at the first. Default: off."),
):
    """Validate lists, split them by speaker, and write a score-balanced train list.

    Every file is checked (exists, decodes, duration within bounds, finite, not silent). Items are
    split train/valid/test by group so no speaker or clean source appears in two splits: the group is
    the list's group/speaker column, else the speaker in a meta.csv beside the list (as `mosqa simulate`
    writes), else the parent folder. The train list is written as is and score-balanced.
    """
    from rich.console import Console
    from rich.table import Table

    from mosqa.checks import output_dir
    from mosqa.errors import MosqaError
    from mosqa.prepare import prepare
    from mosqa.progress import progress_bar

    output_dir(out_dir)
    try:
        low, high = (float(v) for v in score_range.split(","))
    except ValueError:
        raise MosqaError(f"--score-range: expected LOW,HIGH, got {score_range!r}") from None
    test_pinned, valid_pinned = ([g.strip() for g in text.split(",") if g.strip()] if text else None
                                 for text in (test_groups, valid_groups))
    console = Console(stderr=True)
    with progress_bar(console) as bar:
        task = bar.add_task("checking files", total=None)

        def progress(total=None):
            if total is None:
                bar.advance(task)
            else:
                bar.update(task, total=total)

        s = prepare(lists, out_dir, seed=seed, split=split, test_groups=test_pinned,
                    valid_groups=valid_pinned, bin_width=bin_width,
                    score_range=(low, high), target=target, min_dur=min_dur, max_dur=max_dur,
                    silence_db=silence_db, skip_bad=skip_bad, group_col=group_col, progress=progress)
    out = Console()
    if s["bad"]:
        reasons = Table(title=f"{len(s['bad'])} bad line(s)/file(s) dropped (all in {out_dir}/bad_files.csv)")
        reasons.add_column("where")
        reasons.add_column("reason")
        for where, reason in s["bad"][:10]:
            reasons.add_row(where, reason)
        out.print(reasons)
    splits = Table(title=f"{s['valid_items']} valid items split by group (seed {seed})")
    for col in ("split", "items", "groups", "mean score", "written to"):
        splits.add_column(col, justify="right" if col in ("items", "mean score") else "left")
    for name, info in s["splits"].items():
        groups = info["groups"]
        shown = ", ".join(groups[:4]) + (f" … (+{len(groups) - 4})" if len(groups) > 4 else "")
        mean = f"{info['mean_score']:.3f}" if info["mean_score"] is not None else "-"
        written = Path(s["outputs"][name]).name if name in s["outputs"] else "-"
        splits.add_row(name, str(info["items"]), f"{len(groups)}: {shown}", mean, written)
    out.print(splits)
    hist = s["histograms"]
    out.print(histogram_table("train score histogram before/after balancing",
                              {"train": hist["train"], "train_rs": hist["train_rs"]}, s["edges"],
                              notes=[row["action"] for row in s["balance"]]))
    console.print(f"lists written to {out_dir}; histogram in {out_dir}/score_hist.png", highlight=False)
