"""PNG figures: score histograms, predicted-vs-true scatters, training curves (per epoch, and per session
of the QA campaign). Matplotlib's Agg backend, no display."""

from pathlib import Path

import numpy as np

from mosqa.audio import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def histogram_png(path, series: dict, edges) -> None:
    """One step histogram per named score series (e.g. before/after balancing) over shared bin edges."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, scores in series.items():
        label = f"{name} (n={len(scores)})"
        ax.hist(np.asarray(scores, float), bins=edges, histtype="step", linewidth=1.8, label=label)
    ax.set_xlabel("score")
    ax.set_ylabel("items")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path, plt)


def coverage_png(path, by_kind: dict, edges) -> None:
    """One histogram row per impairment kind over the same label bins: which kind reaches which scores."""
    plt = _pyplot()
    height = 1.1 * len(by_kind) + 0.8
    fig, axes = plt.subplots(len(by_kind), 1, figsize=(7, height), sharex=True, squeeze=False)
    for ax, (kind, scores) in zip(axes[:, 0], by_kind.items(), strict=True):
        ax.hist(np.asarray(scores, float), bins=edges, color="C0")
        ax.set_ylabel(f"{kind}\nn={len(scores)}", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("label (PESQ-WB)")
    _save(fig, path, plt)


def scatter_png(path, pred, true, title: str) -> None:
    """Predicted vs true with the identity line; the metrics go in the title."""
    plt = _pyplot()
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(true, pred, s=8, alpha=0.5)
    lo = float(min(true.min(), pred.min(), 1.0))
    hi = float(max(true.max(), pred.max(), 5.0))
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    _save(fig, path, plt)


def _column(rows: list[dict], name: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one metrics.csv column, skipping epochs without it (a column added on resume)."""
    pairs = [(int(r["epoch"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
    return [e for e, _ in pairs], [v for _, v in pairs]


def curves_png(path, rows: list[dict], losses, metric: str, best_epoch: int | None) -> None:
    """Training curves from metrics.csv's rows: the `losses` columns, the early-stopping column `metric`
    and the learning rate, one panel each over epochs, the epoch best.pt holds marked in every panel;
    train and validation drifting apart is over-fitting, seen at a glance."""
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(6, 6.5), sharex=True)
    panels = ((axes[0], [c for c in losses if any(c in r for r in rows)], "loss"),
              (axes[1], [metric], f"{metric} (early stopping)"), (axes[2], ["lr"], "learning rate"))
    for ax, names, label in panels:
        for name in names:
            epochs, values = _column(rows, name)
            ax.plot(epochs, values, marker="o", markersize=3, label=name)
            if best_epoch in epochs and name == metric:
                ax.plot([best_epoch], [values[epochs.index(best_epoch)]], "r*", markersize=12,
                        label=f"best.pt (epoch {best_epoch})")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="r", linestyle=":", linewidth=1)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    _save(fig, path, plt)


def campaign_png(path, rows: list[dict], target: float = 0.92, bias_band: float = 0.25) -> None:
    """The campaign's curve from campaign.csv's rows, over training clips seen: held-out correlations
    (the `target` LCC dotted) and the test bias per impairment kind (the +-`bias_band` band shaded)."""
    plt = _pyplot()
    clips = [int(r["clips"]) / 1000 for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    curves = (("valid_lcc", "o-"), ("test_lcc", "s-"), ("valid_srcc", "o--"), ("test_srcc", "s--"),
              ("xvalid_lcc", "^-"), ("xtest_lcc", "v-"))  # x: the cross-renderer sets (rows 4 on)
    for key, style in curves:
        values = [float(r.get(key) or "nan") for r in rows]
        label = key.replace("_", " ").replace("xvalid", "cross valid").replace("xtest", "cross test")
        if any(np.isfinite(values)):
            ax1.plot(clips, values, style, label=label)
    ax1.axhline(target, color="grey", lw=0.8, ls=":")
    ax1.set(xlabel="training clips seen (thousands)", ylabel="correlation with PESQ-WB",
            title="held-out voices, noises and rooms")
    kinds = sorted(k[len("test_kind_"):-len("_bias")] for k in rows[-1]
                   if k.startswith("test_kind_") and k.endswith("_bias"))
    for kind in kinds:
        ax2.plot(clips, [float(r.get(f"test_kind_{kind}_bias") or "nan") for r in rows], ".-", label=kind)
    ax2.axhspan(-bias_band, bias_band, color="grey", alpha=0.15)
    ax2.set(xlabel="training clips seen (thousands)", ylabel="mean predicted - true",
            title="test bias per kind")
    for ax, size in ((ax1, 8), (ax2, 7)):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=size, ncol=1 if ax is ax1 else 2)
    _save(fig, path, plt)


def _save(fig, path, plt) -> None:
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
