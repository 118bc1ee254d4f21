"""The README's Results table (recipes/tools/results.py): each model's LCC/SRCC per group against scipy, on
the same clips, and the scatter."""

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_csv
from scipy.stats import pearsonr, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "tools"))
import results  # noqa: E402


def test_table_rows_are_the_correlations_of_each_group(tmp_path):
    rng = np.random.default_rng(0)
    n = 24
    names = [f"c{i:02d}.wav" for i in range(n)]
    speakers = ["libri_1" if i % 2 else "so762_2" for i in range(n)]
    kinds = ["noise" if i % 3 else "codec+noise" for i in range(n)]
    true = rng.uniform(1, 4.5, n)
    ours, ovrl, p808 = (true + rng.normal(0, s, n) for s in (0.3, 0.8, 1.2))
    write_csv(tmp_path / "meta.csv", ["wav", "speaker", "degradations"],
           [[f"w/{a}", b, c] for a, b, c in zip(names, speakers, kinds, strict=True)])
    write_csv(tmp_path / "eval" / "predictions.csv", ["path", "true", "score"],
           [[f"/x/{a}", t, p] for a, t, p in zip(names, true, ours, strict=True)])
    write_csv(tmp_path / "dnsmos.csv", ["filename", "OVRL", "P808_MOS", "error"],
           [[f"/y/{a}", o, p, ""] for a, o, p in zip(names, ovrl, p808, strict=True)])
    out = tmp_path / "docs" / "results.md"
    assert results.main(["--eval", str(tmp_path / "eval"), "--meta", str(tmp_path / "meta.csv"), "--dnsmos",
                         str(tmp_path / "dnsmos.csv"), "--name", "m", "--out", str(out), "--scatter",
                         str(tmp_path / "docs" / "s.png")]) == 0
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in out.read_text().splitlines()
             if line.startswith("| ") and not line.startswith("| group")]
    rows = {c[0]: c[1:] for c in cells}
    assert list(rows) == ["all", "source: libri", "source: so762", "impairment: combined",
                          "impairment: noise"]

    def cell(mask, pred):
        return f"{pearsonr(true[mask], pred[mask])[0]:.2f} / {spearmanr(true[mask], pred[mask])[0]:.2f}"

    libri = np.array([s == "libri_1" for s in speakers])
    assert rows["source: libri"][0] == str(libri.sum())
    assert rows["source: libri"][1:] == [cell(libri, ours), cell(libri, ovrl), cell(libri, p808)]
    every = np.ones(n, bool)
    assert rows["all"][1] == cell(every, ours)
    assert (tmp_path / "docs" / "s.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit):
        results.main(["--eval", str(tmp_path / "eval")])  # the other inputs are required
