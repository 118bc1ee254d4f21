"""From raw lists to the train/valid/test lists a quality model trains on.

Three steps: validate every file (a bad file found at epoch 30 costs a run), split by group
(speaker or clean source) so no voice or sentence recording leaks from train into test, and
score-balance the train list so the model does not learn to predict the crowded middle.
"""

import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

from mosqa.audio import MIN_SECONDS, SILENCE_DB, atomic_csv, atomic_path, load_checked
from mosqa.checks import not_an_input
from mosqa.errors import MosqaError
from mosqa.lists import Item, read_list, write_list
from mosqa.plots import histogram_png

SPLITS = ("train", "valid", "test")
MAX_SECONDS = 60.0  # longer files are usually unsegmented recordings, not clips with one label


def validate(items, *, min_dur=MIN_SECONDS, max_dur=MAX_SECONDS, silence_db=SILENCE_DB, skip_bad=False,
             progress=None):
    """(good items, [(list:line, reason)]); without `skip_bad` the first bad file raises MosqaError.

    The decision is audio.load_checked's, the one train-qa and eval-qa make when they load a clip.
    """
    good, bad = [], []
    for item in items:
        try:
            load_checked(item.path, None, item.where, min_seconds=min_dur, max_seconds=max_dur,
                         silence_db=silence_db)
            good.append(item)
        except MosqaError as exc:
            if not skip_bad:
                raise MosqaError(f"{exc} (use --skip-bad to drop bad files)") from None
            bad.append((item.where, str(exc).removeprefix(f"{item.where}: ")))
        if progress:
            progress()
    return good, bad


def _meta_groups(list_path: Path) -> dict:
    """path -> speaker (else clean_id) from a meta.csv beside the list, as `mosqa simulate` writes."""
    meta = list_path.parent / "meta.csv"
    if not meta.is_file():
        return {}
    with open(meta, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    key = next((k for k in ("speaker", "clean_id") if rows and k in rows[0]), None)
    if key is None or "wav" not in rows[0]:
        return {}
    return {(meta.parent / r["wav"]).resolve(): r[key] for r in rows}


def assign_groups(items: list[Item], list_path) -> list[Item]:
    """Fill missing groups: the list's group column, else meta.csv beside the list, else the parent folder."""
    meta = _meta_groups(Path(list_path))
    for item in items:
        if item.group is None:
            item.group = meta.get(item.path.resolve()) or item.path.parent.name
    return items


def read_lists(list_paths, bad_lines: list | None = None, group_col: str | None = None) -> list[Item]:
    """All lists' items with groups filled in; `group_col` names the group column of CSV lists."""
    items = []
    for path in list_paths:
        items += assign_groups(read_list(path, bad_lines=bad_lines, group_col=group_col), path)
    if not items:
        raise MosqaError(f"{', '.join(map(str, list_paths))}: no usable lines")
    return items


def parse_ratios(text: str) -> tuple:
    try:
        ratios = tuple(float(v) for v in text.split(","))
    except ValueError:
        ratios = ()
    if len(ratios) != 3 or not all(0 <= r < math.inf for r in ratios) or ratios[0] <= 0:  # nan fails too
        raise MosqaError(f"--split: expected three ratios TRAIN,VALID,TEST (>= 0, TRAIN > 0), got {text!r}")
    total = sum(ratios)
    return tuple(r / total for r in ratios)


def split_by_group(items: list[Item], ratios, seed: int, test_groups=None, valid_groups=None) -> dict:
    """split name -> items. Whole groups go to one split; sizes follow `ratios` as closely as groups allow.

    `test_groups` / `valid_groups` pin those splits (e.g. unseen speakers, or a fixed validation
    speaker so that adding data elsewhere does not move it); the rest is divided among the other
    splits in proportion to their ratios.
    """
    sizes = Counter(it.group for it in items)
    groups = sorted(sizes)
    rng = np.random.default_rng(seed)
    order = [groups[i] for i in rng.permutation(len(groups))]
    assigned = {name: [] for name in SPLITS}
    ratios = dict(zip(SPLITS, ratios, strict=True))
    for name, pinned in (("test", test_groups), ("valid", valid_groups)):
        if not pinned:
            continue
        unknown, taken = sorted(set(pinned) - set(groups)), sorted(set(pinned) - set(order) & set(groups))
        if unknown:
            raise MosqaError(f"--{name}-groups: unknown group(s) {unknown}; groups are {groups}")
        if taken:
            raise MosqaError(f"--{name}-groups: group(s) {taken} are already in the test split")
        assigned[name] = [g for g in order if g in set(pinned)]
        order = [g for g in order if g not in set(pinned)]
        ratios[name] = 0.0
    active = [s for s in SPLITS if ratios[s] > 0]
    if len(order) < len(active):
        raise MosqaError(f"only {len(groups)} group(s) {groups[:10]}: cannot split {len(active)} ways by "
                         "group; give the list a group/speaker column, or change --split")
    total = sum(sizes[g] for g in order)
    # Every active split first gets the group closest to its target size (smallest split first, ties
    # broken by the seeded order), so one big speaker cannot swamp valid; then each remaining group
    # goes where the item count lags its target most.
    for name in sorted(active, key=lambda s: ratios[s]):
        best = min(order, key=lambda g: abs(sizes[g] - ratios[name] * total))
        assigned[name].append(best)
        order.remove(best)
    for g in order:
        lag = {s: ratios[s] * total - sum(sizes[h] for h in assigned[s]) for s in active}
        assigned[max(active, key=lambda s: lag[s] / ratios[s])].append(g)
    members = {g: s for s, gs in assigned.items() for g in gs}
    return {s: [it for it in items if members[it.group] == s] for s in SPLITS}


def bin_edges(score_range, width: float) -> np.ndarray:
    low, high = score_range
    if not (width > 0 and low < high and math.isfinite(high - low)):  # nan and inf fail too
        raise MosqaError(f"--bin-width {width} / --score-range {low},{high}: need width > 0 and low < high")
    n = max(1, math.ceil(round((high - low) / width, 9)))
    return low + width * np.arange(n + 1)


def bin_index(scores, edges) -> np.ndarray:
    """Bin of each score; the top edge belongs to the last bin, out-of-range scores to the nearest bin."""
    return np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)


def balance(items: list[Item], edges, target="median", seed: int = 0):
    """Resample so every non-empty score bin holds `target` items.

    Large bins are sub-sampled without replacement, small ones keep all their items and draw the
    rest with replacement. target = 'median' | 'max' | a number. Returns (items, per-bin report).
    """
    scores = np.array([it.score for it in items], float)
    bins = bin_index(scores, edges)
    counts = np.bincount(bins, minlength=len(edges) - 1)
    filled = counts[counts > 0]
    if target == "median":
        per_bin = int(round(float(np.median(filled))))
    elif target == "max":
        per_bin = int(filled.max())
    else:
        try:
            per_bin = int(target)
        except (TypeError, ValueError):
            raise MosqaError(f"--target: expected median, max or a number, got {target!r}") from None
        if per_bin < 1:
            raise MosqaError(f"--target: must be at least 1, got {per_bin}")
    rng = np.random.default_rng(seed)
    chosen, report = [], []
    for b in range(len(edges) - 1):
        members = np.flatnonzero(bins == b)
        if len(members) > per_bin:
            picked, action = rng.choice(members, per_bin, replace=False), "down-sampled"
        elif len(members) and len(members) < per_bin:
            extra = rng.choice(members, per_bin - len(members), replace=True)
            picked, action = np.concatenate([members, extra]), "up-sampled"
        else:
            picked, action = members, "kept" if len(members) else "empty"
        chosen += picked.tolist()
        report.append({"bin": f"{edges[b]:.2f}-{edges[b + 1]:.2f}", "before": int(len(members)),
                       "after": int(len(picked)), "action": action})
    return [items[i] for i in sorted(chosen)], report


def histogram(scores, edges) -> list[int]:
    scores = np.asarray(scores, float)
    return np.bincount(bin_index(scores, edges), minlength=len(edges) - 1).tolist() if scores.size else \
        [0] * (len(edges) - 1)


OUTPUT_NAMES = {"train": "wav_train_qn.list", "train_rs": "wav_train_qn_rs.list",
                "valid": "wav_valid_qn.list", "test": "wav_test_qn.list"}
REPORT_NAMES = ("score_hist.png", "bad_files.csv", "prepare_summary.json")


def prepare(list_paths, out_dir, *, seed: int = 0, split: str = "0.8,0.1,0.1", test_groups=None,
            valid_groups=None, bin_width: float = 0.25, score_range=(1.0, 5.0), target="median",
            min_dur: float = MIN_SECONDS, max_dur: float = MAX_SECONDS, silence_db: float = SILENCE_DB,
            skip_bad: bool = False, group_col=None, progress=None) -> dict:
    """Validate, split by group, balance, and write the lists, score_hist.png and prepare_summary.json.

    `progress(total)` is called once with the file count, then `progress()` after each file.
    """
    ratios = parse_ratios(split)
    edges = bin_edges(score_range, bin_width)
    # Looser limits would write lists that train-qa and eval-qa then refuse (audio.load_checked).
    if min_dur < MIN_SECONDS or silence_db < SILENCE_DB:
        raise MosqaError(f"--min-dur {min_dur:g} / --silence-db {silence_db:g}: train-qa and eval-qa "
                         f"refuse clips under {MIN_SECONDS:g} s or {SILENCE_DB:g} dBFS, so these can only be "
                         "tightened")
    bad_lines: list | None = [] if skip_bad else None
    items = read_lists(list_paths, bad_lines, group_col)
    # A list passed back through prepare-list (lists/wav_train_qn.list --out-dir lists/) would be
    # overwritten by its own split; refused before the first file is checked.
    out_dir = Path(out_dir)
    not_an_input([out_dir / name for name in (*OUTPUT_NAMES.values(), *REPORT_NAMES)],
                 [*list_paths, *(p for it in items for p in (it.path, it.clean) if p is not None)])
    if progress:
        progress(len(items))
    good, bad = validate(items, min_dur=min_dur, max_dur=max_dur, silence_db=silence_db, skip_bad=skip_bad,
                         progress=progress)
    bad = [(msg.split(": ", 1)[0], msg.split(": ", 1)[-1]) for msg in bad_lines or []] + bad
    if not good:
        raise MosqaError(f"{', '.join(map(str, list_paths))}: no valid files left")
    splits = split_by_group(good, ratios, seed, test_groups, valid_groups)
    splits["train_rs"], report = balance(splits["train"], edges, target, seed)
    outputs = {}
    for name, file_name in OUTPUT_NAMES.items():
        if splits[name]:
            write_list(out_dir / file_name, splits[name])
            outputs[name] = str(out_dir / file_name)
    series = {name: [it.score for it in splits[name]] for name in OUTPUT_NAMES}
    histogram_png(out_dir / "score_hist.png", {n: s for n, s in series.items() if s}, edges)
    if bad:
        with atomic_csv(out_dir / "bad_files.csv") as writer:
            writer.writerows([("where", "reason"), *bad])
    summary = {
        "lists": [str(p) for p in list_paths], "seed": seed, "split": list(ratios), "bin_width": bin_width,
        "target": str(target), "valid_items": len(good), "bad_items": len(bad), "outputs": outputs,
        "splits": {name: {"items": len(its), "groups": sorted({it.group for it in its}),
                          "mean_score": float(np.mean([it.score for it in its])) if its else None}
                   for name, its in splits.items()},
        "balance": report,
        "edges": [float(e) for e in edges],
    }
    with atomic_path(out_dir / "prepare_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    summary["bad"] = bad
    summary["histograms"] = {name: histogram(s, edges) for name, s in series.items()}
    return summary
