"""The quality-model campaign: one model that every session trains further on a fresh simulated shard.

Model: the frozen Distill-MOS encoder (mosqa.distill_mos) -> 3,449 pooled features -> standardised
-> projected on the leading principal axes of the first block (2,048 random clips of shard 0) -> a
ridge regression with one output for the score and one per diagnostic target (mosqa.diagnostics).

Why ridge: its sufficient statistics (count, sums and cross-products of the projected features and
the targets) add up exactly across shards, so a session adds its shard to everything seen before
without keeping any old audio or feature, the state stays a few MB, and the head is the exact
optimum over all data seen, never a drifting SGD iterate. The ridge strength is picked per output on
the fixed validation set each session. A linear head also keeps what the encoder knows about
listeners (the scout: a ridge head kept LCC 0.46 on listener ratings where an MLP head fell to 0.31).

The state (`state.npz` and `projection.npz`, plain arrays, read with allow_pickle=False):
  mean, scale (D,)        standardisation, fixed by the first block
  basis (D, R) float16    projection, fixed by the first block
  n, z_sum (R), zz (R, R) as its upper triangle zz_upper, y_sum (K), zy (R, K), yy (K)
                          the sums over every shard so far, float64
  shards, clips, wall_s   what the campaign has spent
"""

import csv
import math
import multiprocessing
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from mosqa.audio import atomic_path, load_audio
from mosqa.diagnostics import TARGETS, kind_of, source_of, targets
from mosqa.errors import MosqaError
from mosqa.metrics import correlation_metrics

OUTPUTS = ("score", *TARGETS)
RANK = 896  # projected dimensions: zz's upper triangle in float64 is 3.2 MB, basis in float16 6.2 MB
LAMBDAS = np.logspace(-3, 3, 25)  # ridge strengths tried, per output, relative to the mean eigenvalue
PART = 256  # clips per saved feature file: an interrupted extraction loses at most this many
STATE_SUMS = ("n", "z_sum", "zz", "y_sum", "zy", "yy")
PROJECTION = ("mean", "scale", "basis", "kept_variance")  # fixed by the first block
PROJECTION_FILE = "projection.npz"


# ---------------------------------------------------------------- data
def read_set(sim_dir) -> tuple[list[Path], np.ndarray, list[dict]]:
    """A simulate output folder -> (clip paths, (N, K) targets with the PESQ label first, meta rows)."""
    sim_dir = Path(sim_dir)
    meta = sim_dir / "meta.csv"
    if not meta.is_file():
        raise MosqaError(f"{meta}: missing (not a `mosqa simulate` output folder)")
    with open(meta, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise MosqaError(f"{meta}: no clips")
    paths = [sim_dir / r["wav"] for r in rows]
    y = np.array([[float(r["pesq"]), *targets(r)] for r in rows], dtype=np.float64)
    return paths, y, rows


# ---------------------------------------------------------------- features
_worker: dict = {}


def _init_worker(precision: str, layers: tuple | None) -> None:
    import torch

    from mosqa.distill_mos import FEATURE_LAYERS, load_encoder

    torch.set_num_threads(1)
    _worker.update(encoder=load_encoder(), precision=precision, layers=layers or FEATURE_LAYERS)


def _run_part(job: tuple) -> object:
    work, paths = job
    return work(_worker, paths)


def cached_parts(paths: list, cache_dir, jobs: int, work, write, suffix: str = "npy",
                 precision: str = "fp32", layers: tuple | None = None, progress=None) -> list[Path]:
    """The files cache_dir/part_NNNNN.<suffix>, one a PART `paths`, each made by `write(file, work(worker,
    part))` where it is missing, so a cut extraction resumes where it stopped. `work` (a module-level
    function: the pool pickles it by name) runs in `jobs` processes of one thread each (faster than one
    process of `jobs` threads: the encoder's small convolutions scale poorly across threads); `worker`
    holds the frozen encoder, `precision` and `layers`."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts = [paths[i:i + PART] for i in range(0, len(paths), PART)]
    files = [cache_dir / f"part_{i:05d}.{suffix}" for i in range(len(parts))]
    todo = [i for i, f in enumerate(files) if not f.is_file()]
    if progress:
        progress(sum(len(parts[i]) for i in range(len(parts)) if i not in todo))
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(jobs, len(todo)), _init_worker, (precision, layers and tuple(layers))) as pool:
            for i, result in zip(todo, pool.imap(_run_part, [(work, parts[i]) for i in todo]), strict=True):
                with atomic_path(files[i]) as tmp, open(tmp, "wb") as f:
                    write(f, result)
                if progress:
                    progress(len(parts[i]))
    return files


def is_cached(paths: list, cache_dir) -> bool:
    """Whether every part of `paths` is already in `cache_dir` (as extract_features saves them)."""
    return all((Path(cache_dir) / f"part_{i // PART:05d}.npy").is_file() for i in range(0, len(paths), PART))


def _encode(worker: dict, paths: list) -> np.ndarray:
    import torch

    enc, bf16 = worker["encoder"], worker["precision"] == "bf16"
    out = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for path in paths:
            wav = torch.from_numpy(load_audio(path))[None]
            out.append(enc.features(wav, layers=worker["layers"]).float()[0].numpy())
    return np.stack(out)


def _save_features(f, feats: np.ndarray) -> None:
    np.save(f, feats.astype(np.float32))


def extract_features(paths: list, cache_dir, jobs: int = 1, precision: str = "fp32",
                     progress=None, layers: tuple | None = None) -> np.ndarray:
    """(N, D) encoder features of `paths` (the statistics of `layers`, by default the shipped head's:
    distill_mos.features), saved PART clips a file under `cache_dir` (cached_parts)."""
    files = cached_parts(paths, cache_dir, jobs, _encode, _save_features, "npy", precision, layers, progress)
    return np.concatenate([np.load(f, allow_pickle=False) for f in files])


# ---------------------------------------------------------------- the ridge head
def new_state(x: np.ndarray, rank: int = RANK) -> dict:
    """Standardisation and projection from the first block's features; empty sums."""
    # stored as saved (float32, float16), so a resumed state projects exactly as the one that made it
    mean = x.mean(axis=0).astype(np.float32)
    scale = (x.std(axis=0) + 1e-6).astype(np.float32)
    z = (x - mean) / scale
    eigval, eigvec = np.linalg.eigh(z.T @ z / len(z))
    basis = eigvec[:, ::-1][:, :rank]
    r, k = basis.shape[1], len(OUTPUTS)
    return {"mean": mean, "scale": scale, "basis": basis.astype(np.float16),
            "kept_variance": np.float64(eigval[::-1][:rank].sum() / eigval.sum()),
            "n": np.float64(0), "z_sum": np.zeros(r), "zz": np.zeros((r, r)), "y_sum": np.zeros(k),
            "zy": np.zeros((r, k)), "yy": np.zeros(k),
            "shards": np.int64(0), "clips": np.int64(0), "wall_s": np.float64(0)}


def project(state: dict, x: np.ndarray) -> np.ndarray:
    return ((x.astype(np.float64) - state["mean"]) / state["scale"]) @ state["basis"].astype(np.float64)


def accumulate(state: dict, x: np.ndarray, y: np.ndarray, group: str = "") -> None:
    """Add a shard's features and targets to the sums, or to those of a `group` (PLAIN) kept apart."""
    z = project(state, x)
    parts = {"n": len(z), "z_sum": z.sum(axis=0), "zz": z.T @ z, "y_sum": y.sum(axis=0), "zy": z.T @ y,
             "yy": (y ** 2).sum(axis=0)}
    for key, part in parts.items():
        state[group + key] = state.get(group + key, 0.0) + part


# Shards simulated without the impairments of real calls (call share 0: rows 1-3's simulator) keep their
# sums apart, so a row can weigh them against the later, more varied ones (issue 30: rows 1-4 summed alike
# let 75k plain clips outvote 17k varied ones on the cross-renderer sets).
PLAIN = "plain_"
PLAIN_FILE = "plain.npz"


def weighted(state: dict, plain_weight: float) -> dict:
    """The state whose sums are the later shards' plus `plain_weight` times the plain ones: a ridge on it is
    the ridge on every clip, each plain clip weighing `plain_weight`."""
    out = {k: v for k, v in state.items() if not k.startswith(PLAIN)}
    if PLAIN + "n" in state:
        for key in STATE_SUMS:
            out[key] = state.get(key, 0.0) + plain_weight * state[PLAIN + key]
    return out


def _centred(state: dict) -> tuple:
    """The eigendecomposition of the centred cross-product and what the weights need besides the
    strength: computed once for any number of strengths."""
    n = state["n"]
    zm, ym = state["z_sum"] / n, state["y_sum"] / n
    eigval, eigvec = np.linalg.eigh(state["zz"] - n * np.outer(zm, zm))
    return eigval, eigvec, eigvec.T @ (state["zy"] - n * np.outer(zm, ym)), zm, ym


def solve(state: dict, lambdas, centred: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ridge weights (R, K) and intercepts (K,) from the sums, output k with strength lambdas[k]
    (relative to the mean eigenvalue of the centred cross-product, so one grid fits any data size)."""
    eigval, eigvec, rotated, zm, ym = centred or _centred(state)
    unit = eigval.mean()
    w = np.stack([eigvec @ (rotated[:, k] / (eigval + lam * unit)) for k, lam in enumerate(lambdas)], 1)
    return w, ym - zm @ w


def predict_projected(z: np.ndarray, w: np.ndarray, b: np.ndarray, score_map=None) -> np.ndarray:
    """(N, K) outputs of the ridge head, the score through `score_map` (fit_score_map) where given, each
    clipped to its range (score 1-5)."""
    out = z @ w + b
    if score_map is not None:
        out[:, 0] = saturating(out[:, 0], *score_map)
    return clip_outputs(out)


def saturating(raw: np.ndarray, floor: float, ceiling: float, slope: float, centre: float) -> np.ndarray:
    """The logistic from floor to ceiling (EncoderScorer computes the same in torch)."""
    return floor + (ceiling - floor) / (1.0 + np.exp(-slope * (raw - centre)))


def fit_score_map(raw: np.ndarray, true: np.ndarray) -> tuple[float, float, float, float] | None:
    """(floor, ceiling, slope, centre) of the increasing logistic that maps the ridge's raw score to the
    labels, by least squares; None where none fits (the score stays linear). PESQ is bounded (1.04-4.64)
    and bunches up at both ends, where a linear head over- and under-shoots (raw scores run from ~0.2 to
    ~4.8); the logistic bends them back, smoothly, so the score keeps a gradient everywhere (a critic in
    train-se)."""
    from scipy.optimize import curve_fit

    start = (np.percentile(true, 1), np.percentile(true, 99), 4.0 / max(np.ptp(raw), 1e-6), np.median(raw))
    try:
        params, _ = curve_fit(saturating, raw, true, p0=start, maxfev=20000)
    except RuntimeError:  # no convergence
        return None
    floor, ceiling, slope, centre = map(float, params)
    if slope < 0:  # the same curve written with a positive slope
        floor, ceiling, slope = ceiling, floor, -slope
    if not (ceiling > floor and np.all(np.isfinite(params))):
        return None  # the score falls as the labels rise
    return floor, ceiling, slope, centre


def clip_outputs(out: np.ndarray) -> np.ndarray:
    """(N, K) outputs in OUTPUTS order, each clipped to its range (score 1-5)."""
    lows = [1.0, *(t.low for t in TARGETS.values())]
    highs = [5.0, *(t.high for t in TARGETS.values())]
    return np.clip(out, lows, highs)


def select_lambdas(state: dict, z_valid: np.ndarray, y_valid: np.ndarray) -> np.ndarray:
    """Per output, the strength of LAMBDAS that scores best on validation (LCC for the score and the
    regression targets, AUC for binary ones: both rank-free of scale)."""
    best = np.zeros(len(OUTPUTS))
    scores = np.full((len(LAMBDAS), len(OUTPUTS)), -np.inf)
    centred = _centred(state)
    for i, lam in enumerate(LAMBDAS):
        w, b = solve(state, [lam] * len(OUTPUTS), centred)
        pred = z_valid @ w + b
        for k, name in enumerate(OUTPUTS):
            scores[i, k] = output_quality(name, pred[:, k], y_valid[:, k])
    for k in range(len(OUTPUTS)):
        best[k] = LAMBDAS[int(np.nanargmax(np.nan_to_num(scores[:, k], nan=-np.inf)))]
    return best


# ---------------------------------------------------------------- metrics
def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U over ranks, ties counted half)."""
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def output_quality(name: str, pred: np.ndarray, true: np.ndarray) -> float:
    if name != "score" and TARGETS[name].binary:
        return auc(pred, true)
    if np.ptp(pred) == 0 or np.ptp(true) == 0:
        return float("nan")
    return float(np.corrcoef(pred, true)[0, 1])


def report(pred: np.ndarray, y: np.ndarray, rows: list[dict]) -> dict:
    """One flat dict: LCC, SRCC, RMSE of the score; LCC and bias per impairment kind and per source;
    each diagnostic's MAE (or AUC)."""
    m = correlation_metrics(pred[:, 0], y[:, 0])
    out = {"n": len(y), "lcc": m["lcc"], "srcc": m["srcc"], "rmse": m["rmse"],
           "bias": float(np.mean(pred[:, 0] - y[:, 0]))}
    by = (("kind", lambda r: kind_of(r["degradations"])), ("source", lambda r: source_of(r["speaker"])))
    for label, key in by:
        groups = {}
        for i, r in enumerate(rows):
            groups.setdefault(key(r), []).append(i)
        for group, idx in sorted(groups.items()):
            p, t = pred[idx, 0], y[idx, 0]
            out[f"{label}_{group}_n"] = len(idx)
            out[f"{label}_{group}_bias"] = float(np.mean(p - t))
            out[f"{label}_{group}_lcc"] = output_quality("score", p, t) if len(idx) >= 3 else float("nan")
    for k, name in enumerate(TARGETS, 1):
        if TARGETS[name].binary:
            out[f"diag_{name}_auc"] = auc(pred[:, k], y[:, k])
        else:
            out[f"diag_{name}_mae"] = float(np.mean(np.abs(pred[:, k] - y[:, k])))
    return out


# ---------------------------------------------------------------- state on disk
def save_state(path, state: dict) -> None:
    """The sums in float64, so a resumed campaign adds up exactly as an uncut one (float32 loses the
    small entries that are differences of large partial sums); zz, symmetric, as its upper triangle.
    The projection (fixed by the first block) goes to projection.npz beside it and the plain shards' sums
    (no longer added to) to plain.npz, each rewritten only when it changes: each session's commit then adds
    the later sums alone to the repository. plain_n stays in the state: it says plain.npz belongs to it."""
    path = Path(path)
    arrays = {k: v for k, v in state.items() if not k.endswith("zz")}
    for key in (k for k in state if k.endswith("zz")):
        arrays[key + "_upper"] = state[key][np.triu_indices(len(state[key]))]
    apart = {PROJECTION_FILE: {k: arrays.pop(k) for k in PROJECTION},
             PLAIN_FILE: {k: arrays.pop(k) for k in list(arrays) if k.startswith(PLAIN) and k != PLAIN + "n"}}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    for name, part in apart.items():
        side = path.with_name(name)
        old = _read_npz(side) if side.is_file() else {}
        if part and (set(old) != set(part) or not all(np.array_equal(old[k], v) for k, v in part.items())):
            with atomic_path(side) as tmp, open(tmp, "wb") as f:
                np.savez(f, **part)


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise MosqaError(f"{path}: not a campaign state ({exc})") from None


def load_state(path) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    state = _read_npz(path)
    if path.with_name(PROJECTION_FILE).is_file():
        state |= _read_npz(path.with_name(PROJECTION_FILE))
    if PLAIN + "n" in state:
        if not path.with_name(PLAIN_FILE).is_file():
            raise MosqaError(f"{path}: its plain shards' sums belong in {path.with_name(PLAIN_FILE)}, "
                             "which is missing")
        state |= _read_npz(path.with_name(PLAIN_FILE))
    for key in [k for k in state if k.endswith("zz_upper")]:
        upper = state.pop(key)
        rank = int(round((np.sqrt(8 * len(upper) + 1) - 1) / 2))
        zz = np.zeros((rank, rank))
        zz[np.triu_indices(rank)] = upper
        state[key.removesuffix("_upper")] = zz + np.triu(zz, 1).T
    missing = {*PROJECTION, *STATE_SUMS} - set(state)
    if missing:
        raise MosqaError(f"{path}: not a campaign state (no {', '.join(sorted(missing))})")
    return {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in state.items()}


def head_weights(state: dict, lambdas) -> tuple[np.ndarray, np.ndarray]:
    """The ridge head folded back onto the raw features: out = x @ W + b, (D, K) and (K,)."""
    w, b = solve(state, lambdas)
    full = (state["basis"].astype(np.float64) @ w) / state["scale"][:, None]
    return full, b - state["mean"] @ full


def export_head(dest, state: dict, lambdas, precision: str, row: dict, feature_blocks=None,
                card_extra: str = "", score_map=None) -> Path:
    """The head folded onto the raw features (the `feature_blocks` it reads, default the first campaign's
    design), its score through `score_map` (fit_score_map) where given, as a model folder `load_qa`
    reads (config.yaml, best.pt, MODEL_CARD.md from the campaign row and `card_extra`) with its ONNX graph
    (model.onnx, mosqa.export: `predict` runs it without torch). The folder is built beside `dest` and
    swapped in whole, so nothing of the model it replaces (its graph, an old card) survives, and a crash or
    a failed export leaves either."""
    import shutil

    import torch

    from mosqa.encoder_qa import ARCH, FEATURE_BLOCKS
    from mosqa.export import export_onnx
    from mosqa.runs import save_checkpoint, save_yaml

    w, b = head_weights(state, lambdas)
    dest = Path(dest)
    new, old = dest.with_name(f".{dest.name}.new"), dest.with_name(f".{dest.name}.old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    info = {k: row[k] for k in ("row", "shards", "clips", "valid_lcc", "test_lcc", "test_srcc") if k in row}
    save_yaml(new / "config.yaml", {"kind": "qa", "arch": ARCH, "sample_rate": 16000, "precision": precision,
                                    "feature_blocks": list(feature_blocks or FEATURE_BLOCKS),
                                    "outputs": list(OUTPUTS), "ridge_lambdas": [float(v) for v in lambdas],
                                    **({"score_map": [float(v) for v in score_map]} if score_map else {}),
                                    "campaign": info})
    weights = {"weight": torch.tensor(w.T, dtype=torch.float32), "bias": torch.tensor(b, dtype=torch.float32)}
    save_checkpoint(new / "best.pt", {"model": weights, "source_run": f"campaign row {row.get('row')}"})
    (new / "MODEL_CARD.md").write_text(model_card(dest.name, row, card_extra))
    try:
        export_onnx(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def _figure(row: dict, key: str, fmt: str = "{:.3f}") -> str:
    """One figure of the row for the card; '–' where it is missing or undefined (LCC of clean clips,
    whose labels are all PESQ's ceiling)."""
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError):
        return "–"
    return fmt.format(value) if math.isfinite(value) else "–"


FORMATS = {"n": "{:.0f}", "bias": "{:+.3f}"}


def _cells(row: dict, prefix: str, keys) -> str:
    """'| a | b |' of row[prefix + key] for each key, formatted as FORMATS says (else 3 decimals)."""
    return "| " + " | ".join(_figure(row, prefix + k, FORMATS.get(k, "{:.3f}")) for k in keys) + " |"


def _group_table(row: dict, label: str, test: str = "test") -> str:
    groups = sorted({k[len(f"{test}_{label}_"):-len("_n")] for k in row
                     if k.startswith(f"{test}_{label}_") and k.endswith("_n")})
    lines = [f"| {label} | clips | LCC | bias (predicted − true) |", "|---|---|---|---|"]
    lines += [f"| {g} " + _cells(row, f"{test}_{label}_{g}_", ("n", "lcc", "bias")) for g in groups]
    return "\n".join(lines)


OVERALL = ("n", "lcc", "srcc", "rmse", "bias")


def _cross_section(row: dict) -> str:
    """The cross-renderer figures of the row (issue 30), where it has them."""
    if "xtest_n" not in row:
        return ""
    return f"""
Rendered by someone else: the same held-out voices, noise files and rooms degraded by audiomentations
(`mosqa/crossrender.py`: its noise, room, clipping, tanh, MP3, filters, EQ, gain transitions, time masks,
aliasing, bit crush), labelled by the same PESQ-WB. A head that learned how mosqa renders impairments
falls here; promotion is decided on the cross-renderer validation.

| set | clips | LCC | SRCC | RMSE | bias |
|---|---|---|---|---|---|
| cross-renderer validation {_cells(row, "xvalid_", OVERALL)}
| cross-renderer test {_cells(row, "xtest_", OVERALL)}

Cross-renderer test per kind:

{_group_table(row, "kind", "xtest")}
"""


def _data_mix(row: dict) -> str:
    """What the shards added last drew besides the common kinds (the row's settings)."""
    mix = [text.format(float(row[key])) for key, text in (
        ("call_share", "call impairments in {:.0%} of degraded clips"),
        ("fault_share", "signal-path faults (aliasing, outages) in {:.0%}"),
        ("recording_chain", "{:.0%} of references through a recording chain"),
        ("voice_perturb", "voice speed ±{:.0%}")) if float(row.get(key) or 0)]
    if row.get("shard_options"):
        mix.append(f"`mosqa simulate {row['shard_options']}`")
    weight = float(row.get("plain_weight") or 1)
    plain = (f" Each clip of the shards without call impairments (rows 1-3) weighs {weight:g} in the sums, "
             "the weight chosen on the cross-renderer validation." if weight != 1 else "")
    return (f" The shards added last drew: {', '.join(mix)}." if mix else "") + plain


def _score_map_line(row: dict) -> str:
    """The card's sentence on the score's logistic and what it did to each validation (a row with one)."""
    if not row.get("score_map"):
        return ""
    floor, ceiling, slope, centre = (float(v) for v in str(row["score_map"]).split())
    return (f" The ridge's score then passes through a logistic fitted on the validation (floor {floor:.2f},"
            f" ceiling {ceiling:.2f}, slope {slope:.2f}, centre {centre:.2f}): validation LCC "
            f"{_figure(row, 'valid_linear_lcc')} → {_figure(row, 'valid_lcc')}, cross-renderer validation "
            f"{_figure(row, 'xvalid_linear_lcc')} → {_figure(row, 'xvalid_lcc')}.")


def model_card(name: str, row: dict, extra: str = "") -> str:
    """MODEL_CARD.md of a promoted head, its figures all read from the campaign row; `extra`, markdown the
    recipe adds (its head comparison)."""
    diag = [f"| {n} | {t.unit} | {'AUC' if t.binary else 'MAE'} "
            + _cells(row, f"test_diag_{n}_", ["auc" if t.binary else "mae"])[2:] for n, t in TARGETS.items()]
    return f"""# Model card: `{name}`

A non-intrusive speech quality model: one 16 kHz waveform in, no reference, out the **wideband PESQ**
(ITU-T P.862.2) it predicts and six diagnostics that say *why* a clip sounds bad. It is the frozen
Distill-MOS encoder (`mosqa/pretrained/distill-mos`, MIT; 4.1M parameters, shipped once) with a linear
head on 3,449 pooled features of its layers, fitted by the campaign (`recipes/campaign_qa.sh`, issue 19):
a ridge regression whose sums grow by a fresh simulated shard every session.{_score_map_line(row)}

    mosqa predict clips/ --out scores.csv --diagnose     # --model {name}
    qa = mosqa.load_qa("{name}")                          # differentiable: qa(wav (B, N), lengths) -> (B,)
    mosqa train-se ... --qa frozen --qa-model {name}

Campaign row {row.get("row")} ({row.get("date")}): {int(float(row.get("clips", 0))):,} training clips in
{row.get("shards")} shard(s), {_figure(row, "wall_min", "{:.0f}")} CPU-minutes of encoding. The curve:
`recipes/campaign/campaign.csv` and `campaign.png`.

## Held-out figures

Fixed sets simulated from voices, noise files, music and rooms that no shard uses
(`recipes/campaign/campaign_split.py`; the same clips every session): validation (ridge strengths picked on
it) and test (never tuned on); their version 2 (v2) gives 30 % of the degraded clips an impairment of
real calls (echo, a competing talker, chopped speech, a noise suppressor, gain faults, saturation, hum).

| set | clips | LCC | SRCC | RMSE | bias |
|---|---|---|---|---|---|
| validation {_cells(row, "valid_", OVERALL)}
| test {_cells(row, "test_", OVERALL)}
| validation v2 {_cells(row, "valid_v2_", OVERALL)}
| test v2 {_cells(row, "test_v2_", OVERALL)}

Test per impairment kind (clean: no impairment; combined: two or more):

{_group_table(row, "kind")}

Test per speech source:

{_group_table(row, "source")}
{_cross_section(row)}{extra}
## Diagnostics (`--diagnose`)

Targets are the values the simulator drew; a clip without the impairment has the value of no
impairment (SNR 50 dB, DRR 30 dB, band limit 8 kHz, 0 clipped, 0 lost, no codec). Test accuracy:

| column | unit | test |
|---|---|---|
{chr(10).join(diag)}

## `listener_mos`: what listeners would say

Beside `score`, `mosqa predict` writes `listener_mos` (1–5): the encoder's own output, the MOS head of
Distill-MOS, which its authors trained to predict listeners' ratings (B. Stahl, H. Gamper, "Distillation
and Pruning for Scalable Self-Supervised Representation-Based Speech Quality Assessment", ICASSP 2025:
a student distilled from an XLS-R model retrained on over 100,000 rated clips; they report that
distillation halves the gap in correlation with ground-truth MOS between a model of this size trained
on the labels alone and the XLS-R teacher, with two orders of magnitude fewer parameters than the
teacher; per-set correlations in the paper and in the benchmark figure of github.com/microsoft/Distill-MOS).
It is read on the same windows as the score, unpadded (a file is cut into chunks of at most 7.68 s,
each one window; its authors zero-pad every input to 7.68 s), and duration-weighted over the chunks
like the score, at no extra cost. On the lead's listener-rated real calls its ranking agrees with the
listeners' at 0.85 (0.84 run padded as its authors do), the PESQ head's at 0.67 (issue 32).

## What it is not

- **Not human MOS.** `score` predicts PESQ-WB, a reference-based measure, without the reference. Where
  PESQ and listeners disagree it follows PESQ (the frozen encoder was trained on listener ratings and
  the head is linear, which keeps some of that knowledge: issue 19's scout); `listener_mos` is the
  column that answers for listeners.
- **Not for every recording.** "Clean" means the references it saw: read speech with a noise floor at
  least 35 dB below the speech (`recipes/tools/select_references.py`). Distant microphones, singing and
  speech of languages or ages outside `../shared/corpus` are out of domain.
- Scores are clipped to 1–5; PESQ-WB itself tops out near 4.64.

## Data and licences

Simulated by `mosqa simulate` from `../shared/corpus` (LibriSpeech readers and speechocean762 speakers,
CC-BY-4.0; KLettres, GPL-2+; Asterisk prompts, CC-BY-SA-3.0/CC-BY-3.0; CMU ARCTIC; Speech Commands;
noise and music recordings and measured RIRs under the licences in that corpus's README). Impairments:
noise, babble of 3–8 other training voices, music, reverberation, clipping, band limits, codecs, packet
loss, alone or combined, and clean clips.{_data_mix(row)} The weights derive from share-alike and GPL
material among others; redistribute them with this card.
"""


def elapsed(since: float) -> float:
    return time.monotonic() - since
