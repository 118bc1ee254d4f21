"""Numbers every report uses: correlation metrics (as ITU-T P.1401 / NISQA report them) and the
signal metrics of enhancement (PESQ from the ITU reference code, STOI, SI-SNR).
"""

import numpy as np
from scipy import stats

from mosqa.errors import MosqaError

PESQ_RATE = 16000  # PESQ-WB (and DNSMOS) are defined on 16 kHz audio


def correlation_metrics(pred, true) -> dict:
    """MSE on the 1-5 and the normalised 0-1 scale, RMSE, LCC (Pearson), SRCC (Spearman), KTAU."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    mse = float(np.mean((pred - true) ** 2))
    out = {"n": int(pred.size), "mse": mse, "mse_norm": mse / 16.0, "rmse": float(np.sqrt(mse))}
    if pred.size >= 2 and np.ptp(pred) > 0 and np.ptp(true) > 0:
        out["lcc"] = float(stats.pearsonr(pred, true)[0])
        out["srcc"] = float(stats.spearmanr(pred, true)[0])
        out["ktau"] = float(stats.kendalltau(pred, true)[0])
    else:  # a constant prediction has no correlation; NaN says so instead of a fake 0
        out["lcc"] = out["srcc"] = out["ktau"] = float("nan")
    out["rmse_map"] = rmse_after_mapping(pred, true, order=1)
    return out


def rmse_after_mapping(pred, true, order: int = 1) -> float:
    """RMSE after a least-squares polynomial map of predictions onto the labels (P.1401)."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.size <= order or np.ptp(pred) == 0:
        return float("nan")
    mapped = np.polyval(np.polyfit(pred, true, order), pred)
    return float(np.sqrt(np.mean((mapped - true) ** 2)))


def per_condition_metrics(pred, true, conditions) -> dict:
    """Condition (system) level: average per condition first, then correlate, as NISQA's `*_con`."""
    pred, true, conditions = np.asarray(pred, float), np.asarray(true, float), np.asarray(conditions)
    names = sorted(set(conditions.tolist()))
    p = np.array([pred[conditions == c].mean() for c in names])
    t = np.array([true[conditions == c].mean() for c in names])
    m = correlation_metrics(p, t)
    return {"n_conditions": len(names), "lcc_con": m["lcc"], "srcc_con": m["srcc"],
            "rmse_con": m["rmse"], "rmse_map_con": m["rmse_map"]}


def pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """Wideband PESQ (ITU-T P.862.2). Raises MosqaError when the ITU code finds no utterance."""
    from pesq import NoUtterancesError, PesqError, pesq

    n = min(len(ref), len(deg))
    try:
        return float(pesq(sr, ref[:n].astype(np.float64), deg[:n].astype(np.float64), "wb"))
    except NoUtterancesError:
        raise MosqaError("PESQ: no speech found in the reference") from None
    except PesqError as exc:
        raise MosqaError(f"PESQ: {type(exc).__name__}") from None
    except ValueError:  # the wrapper's own error path fails on some pairs, e.g. a silent degraded signal
        raise MosqaError("PESQ: the ITU code could not score this pair") from None


def pesq_wb_or_nan(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """pesq_wb, NaN where it finds no speech: a batch's other items still count (a worker's function)."""
    try:
        return pesq_wb(ref, deg, sr)
    except MosqaError:
        return float("nan")


def stoi(ref: np.ndarray, deg: np.ndarray, sr: int = 16000, extended: bool = False) -> float:
    from pystoi import stoi as _stoi

    n = min(len(ref), len(deg))
    return float(_stoi(ref[:n], deg[:n], sr, extended=extended))


def si_snr(ref: np.ndarray, est: np.ndarray, eps: float = 1e-8) -> float:
    """Scale-invariant SNR in dB (zero-mean signals)."""
    n = min(len(ref), len(est))
    ref = ref[:n] - ref[:n].mean()
    est = est[:n] - est[:n].mean()
    target = np.dot(est, ref) / (np.dot(ref, ref) + eps) * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))
