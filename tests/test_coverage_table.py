"""Issue 14's per-kind table: LCC against scipy, bias as predicted minus true, mean ± sd over a group's runs,
and the target marks."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_csv
from scipy.stats import pearsonr

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "bench"))
import coverage_table  # noqa: E402

KINDS = ["noise", "clip", "reverb+noise"]  # the last counts as "combined"


def _corpus(tmp_path, rng):
    names = [f"c{i:02d}.wav" for i in range(30)]
    kinds = [KINDS[i % 3] for i in range(30)]
    rows = [[f"wav/{n}", k] for n, k in zip(names, kinds, strict=True)]
    write_csv(tmp_path / "meta.csv", ["wav", "degradations"], rows)
    return names, kinds, rng.uniform(1.0, 4.5, size=30)


def _run(folder, names, true, pred):
    write_csv(folder / "predictions.csv", ["path", "true", "score"],
           [[f"/x/{n}", t, p] for n, t, p in zip(names, true, pred, strict=True)])


def test_per_kind_lcc_and_bias_match_their_definitions(tmp_path):
    rng = np.random.default_rng(0)
    names, kinds, true = _corpus(tmp_path, rng)
    pred = true + 0.3 + rng.normal(0, 0.4, size=30)
    pairs = dict(zip(names, zip(true, pred, strict=True), strict=True))
    kind_of = {n: coverage_table.impairment_of(k) for n, k in zip(names, kinds, strict=True)}
    out = coverage_table.per_kind(pairs, kind_of)
    assert set(out) == {"noise", "clip", "combined", "all"}
    for kind in ("noise", "combined"):
        idx = [i for i, n in enumerate(names) if kind_of[n] == kind]
        lcc, bias, n = out[kind]
        assert lcc == pytest.approx(pearsonr(true[idx], pred[idx])[0])
        assert bias == pytest.approx(np.mean(pred[idx] - true[idx]))
        assert n == 10
    assert out["all"][2] == 30


def test_groups_give_mean_sd_over_runs_and_mark_missed_targets(tmp_path):
    rng = np.random.default_rng(1)
    names, _, true = _corpus(tmp_path, rng)
    biased = []
    for seed in range(3):  # "before": scattered and biased up by about 0.6
        pred = true + 0.6 + rng.normal(0, 0.5, size=30)
        _run(tmp_path / "before" / f"s{seed}", names, true, pred)
        biased.append(np.mean(pred - true))
    for seed in range(2):  # "after": close to the truth
        _run(tmp_path / "after" / f"s{seed}", names, true, true + rng.normal(0, 0.05, size=30))
    out = tmp_path / "table.md"
    assert coverage_table.main(["--meta", str(tmp_path / "meta.csv"), "--out", str(out),
                                f"before={tmp_path}/before/*", f"after={tmp_path}/after/*"]) == 0
    rows = {(r["group"], r["kind"]): r for r in csv.DictReader(open(out.with_suffix(".csv")))}
    before_all = rows[("before", "all")]
    assert int(before_all["runs"]) == 3 and int(before_all["clips"]) == 30
    assert float(before_all["bias_mean"]) == pytest.approx(np.mean(biased), abs=1e-4)
    assert float(before_all["bias_sd"]) == pytest.approx(np.std(biased, ddof=1), abs=1e-4)
    assert float(rows[("after", "clip")]["lcc_mean"]) > 0.99
    line = next(x for x in out.read_text().splitlines() if x.startswith("| all |"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[3].endswith("*") and not cells[4].endswith("*") and not cells[5].endswith("*")
    with pytest.raises(SystemExit) as exit_info:  # a group that matches no eval folder is an error
        coverage_table.main(["--meta", str(tmp_path / "meta.csv"), "--out", str(out), f"x={tmp_path}/none/*"])
    assert exit_info.value.code == 2
