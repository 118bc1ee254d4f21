"""The campaign recipe end to end at tiny sizes (recipes/campaign/campaign_qa.py): a session cut after one
block resumes where it stopped and ends with the same sums as an uncut one; the row step writes the curve
and promotes only on a cross-renderer validation gain, with the new head's ONNX graph. Runs on the built-in
voices and generated noise: no corpus needed."""

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf

from mosqa import campaign
from mosqa.defaults import builtin_speech_dir, generated_noises
from mosqa.export import sha256

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "campaign"))
import campaign_qa  # noqa: E402

SR = 16000
PARTS = {"train": "spk1", "valid": "spk2", "test": "spk3"}
TINY = ["--per-utt", "1", "--block", "4", "--fixed-per-utt", "1", "--jobs", "1"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """exp/campaign/split as campaign_split.py writes it: one voice, noise, music file and room a part."""
    root = tmp_path_factory.mktemp("campaign")
    split = root / "work" / "split"
    noises = list(generated_noises(seconds=4.0).values())
    t = np.arange(4 * SR) / SR
    for i, (part, speaker) in enumerate(PARTS.items()):
        (split / part / "speech").mkdir(parents=True)
        (split / part / "speech" / speaker).symlink_to(builtin_speech_dir() / speaker)
        decay = np.exp(-np.arange(SR // 4) / (400 + 200 * i))
        files = {"noise": noises[i % len(noises)],
                 "music": 0.1 * np.sin(2 * np.pi * (220 + 55 * i) * t) * (1 + np.sin(2 * np.pi * 2 * t)),
                 "rir": decay * np.random.default_rng(i).standard_normal(SR // 4)}
        for kind, wav in files.items():
            path = root / "sources" / f"{part}_{kind}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(path, wav.astype(np.float32), SR)
            (split / f"{part}_{kind}.list").write_text(f"{path}\n")
    return root


def _train(work, state, *more):
    campaign_qa.main(["train", "--work", str(work / "work"), "--state", str(state), *TINY, *more])
    return campaign.load_state(state / "state.npz")


def test_a_cut_session_resumes_to_the_sums_of_an_uncut_one(work):
    cut = _train(work, work / "cut", "--max-blocks", "1")
    assert int(cut["shards"]) == 0 and int(cut["shard_done"]) == 4 and int(cut["clips"]) == 4
    resumed = _train(work, work / "cut", "--max-blocks", "1")  # the shard's last 2 clips
    whole = _train(work, work / "whole", "--max-blocks", "2")
    assert int(resumed["shards"]) == int(whole["shards"]) == 1 and int(resumed["clips"]) == 6
    assert resumed[campaign.PLAIN + "n"] == 6 and resumed["n"] == 0  # shards without call impairments
    for key in (*campaign.STATE_SUMS, *(campaign.PLAIN + k for k in campaign.STATE_SUMS)):
        np.testing.assert_allclose(resumed[key], whole[key], rtol=1e-12)
    np.testing.assert_array_equal(resumed["basis"], whole["basis"])  # the projection of the first block


def test_a_new_state_started_at_a_later_shard_resumes_there_with_its_voice_speed_chain_and_faults(work):
    cut = _train(work, work / "later", "--shard", "2", "--max-blocks", "1", "--voice-perturb", "0.1",
                 "--recording-chain", "1", "--fault-share", "1", "--shard-options", "--band-order-range 1,2")
    assert int(cut["shards"]) == 2 and int(cut["shard_done"]) == 4  # a cut resumes shard 2, not shard 0
    assert float(cut["voice_perturb"]) == pytest.approx(0.1) and float(cut["recording_chain"]) == 1.0
    assert float(cut["fault_share"]) == 1.0 and str(cut["shard_options"]) == "--band-order-range 1,2"
    simulated = json.loads((work / "work" / "shard_002" / "simulate.json").read_text())["ranges"]
    assert simulated["band_order"] == [1, 2]
    rows = list(csv.DictReader(open(work / "work" / "shard_002" / "meta.csv")))
    speeds = {row["voice_speed"] for row in rows}
    assert speeds and all(0.9 <= float(v) <= 1.1 for v in speeds) and speeds != {"1.0"}
    assert all(row["chain_level_dbfs"] for row in rows)  # every reference recorded through a chain
    assert all(row["aliasing_hz"] or row["dropout_ms"] for row in rows if row["degradations"] != "clean")


def test_the_row_weighs_plain_shards_by_the_cross_renderer_validation_within_the_own_drop(capsys):
    """Plain clips follow one rule, later ones another, the cross-renderer validation the later one: the
    row takes the weight with the best cross-renderer validation whose own validation stays in reach."""
    rng = np.random.default_rng(3)
    d, k = 12, len(campaign_qa.OUTPUTS)
    w_plain = rng.standard_normal((d, k))
    w_later = w_plain + rng.standard_normal((d, k))
    x = rng.standard_normal((900, d))
    y_plain, y_later = 3 + 0.2 * x @ w_plain, 3 + 0.2 * x @ w_later  # scores inside the head's 1-5
    state = campaign.new_state(x[:100], rank=d)
    campaign.accumulate(state, x[:600], y_plain[:600], campaign.PLAIN)
    campaign.accumulate(state, x[600:700], y_later[600:700])
    sets = {"valid": (x[700:800], 0.9 * y_plain[700:800] + 0.1 * y_later[700:800], []),
            "xvalid": (x[800:], y_later[800:], [])}
    weight, weighed, lambdas = campaign_qa.weigh_plain(state, sets)
    table = capsys.readouterr().out
    assert all(f"weighing {w:g}:" in table for w in campaign_qa.PLAIN_WEIGHTS)
    lines = re.findall(r"weighing ([\d.]+): valid LCC ([-\d.]+), xvalid LCC ([-\d.]+)", table)
    figures = {float(w): (float(own), float(cross)) for w, own, cross in lines}
    floor = figures[1.0][0] - campaign_qa.OWN_DROP
    allowed = {w: cross for w, (own, cross) in figures.items() if own >= floor}
    assert weight == max(allowed, key=allowed.get) and weight < 1  # the later rule wins the cross set
    assert len(allowed) < len(figures)  # and the own validation's floor ruled some weights out
    assert weighed["n"] == pytest.approx(100 + 600 * weight) and campaign.PLAIN + "n" not in weighed
    assert len(lambdas) == k


def test_row_appends_the_curve_and_promotes_only_on_a_gain(work):
    state = work / "whole"
    model = work / "pesq-wb"
    args = ["row", "--work", str(work / "work"), "--state", str(state), "--promote-to", str(model), *TINY]
    campaign_qa.main(args)
    assert (model / "MODEL_CARD.md").is_file() and (model / "best.pt").is_file()
    # the promoted head ships with its ONNX graph, exported from its weights (checked against torch)
    meta = {p.key: p.value for p in onnx.load(str(model / "model.onnx")).metadata_props}
    assert meta["checkpoint_sha256"] == sha256(model / "best.pt") and meta["max_samples"] == "122880"
    first = (model / "best.pt").read_bytes()
    campaign_qa.main(args)  # the same state again: no gain, no promotion
    with open(state / "campaign.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["row"] for r in rows] == ["1", "2"] and [r["promoted"] for r in rows] == ["1", "0"]
    assert all(np.isfinite(float(r[k])) for r in rows
               for k in ("valid_lcc", "test_srcc", "test_rmse", "xvalid_lcc", "xtest_lcc"))
    assert not any(k.startswith(("xvalid_diag", "xtest_diag")) for k in rows[0])  # nothing to check them by
    assert (model / "best.pt").read_bytes() == first
    assert (state / "campaign.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every fixed set reported, each version under its own columns, simulated with its call share
    assert all(int(r[f"{name}_n"]) > 0 for r in rows for name in campaign_qa.FIXED)
    shares = {name: json.loads((work / "work" / f"fixed_{name}" / "simulate.json").read_text())["ranges"]
              ["call_share"] for name in campaign_qa.FIXED}
    assert shares == {"valid": 0.0, "test": 0.0, "valid_v2": 0.3, "test_v2": 0.3}


def test_a_row_after_the_recorded_rows_keeps_them_and_adds_the_second_fixed_sets(work):
    """campaign.csv as the campaign has it (its first rows on the first fixed sets only) takes a row with v2
    columns, and every recorded row keeps its figures."""
    state = work / "recorded"
    state.mkdir()
    for name in ("state.npz", "projection.npz", "plain.npz"):
        shutil.copy(work / "whole" / name, state / name)
    recorded = Path(__file__).resolve().parents[1] / "recipes" / "campaign" / "campaign.csv"
    shutil.copy(recorded, state / "campaign.csv")
    with open(recorded, newline="") as f:
        before = list(csv.DictReader(f))
    campaign_qa.main(["row", "--work", str(work / "work"), "--state", str(state), "--promote-to",
                      str(work / "never"), *TINY])
    with open(state / "campaign.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(before) + 1 and rows[-1]["row"] == str(len(before) + 1)
    for old, now in zip(before, rows, strict=False):
        assert {k: now[k] for k in old} == old and now["test_v2_lcc"] == old.get("test_v2_lcc", "")
    assert before[0]["test_v2_lcc"] == ""  # the first row predates the second fixed sets
    assert rows[-1]["test_v2_n"] and rows[-1]["promoted"] == "0" and not (work / "never").exists()
    assert (state / "campaign.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_state_on_other_feature_blocks_keeps_them_and_refuses_another_design(work, monkeypatch):
    from mosqa import export

    # the graph of a promoted head is checked in the test above; a ridge on 6 clips has weights too large
    # for its float32 graph to match torch to 1e-4
    monkeypatch.setattr(export, "export_onnx", lambda spec, out=None: (Path(spec) / "model.onnx").touch())
    blocks = "7,pooled,score"
    state = _train(work, work / "upper", "--max-blocks", "1", "--feature-blocks", blocks)
    assert list(state["feature_blocks"]) == ["7", "pooled", "score"]
    assert state["mean"].shape == (len(campaign_qa.feature_columns((7, "pooled", "score"))),)
    resumed = _train(work, work / "upper", "--max-blocks", "1")  # the state's design, unasked
    assert int(resumed["clips"]) == 6
    with pytest.raises(SystemExit, match="its sums read 7,pooled,score, not cnn"):
        _train(work, work / "upper", "--feature-blocks", "cnn,2,4,7,pooled,score")
    campaign_qa.main(["row", "--work", str(work / "work"), "--state", str(work / "upper"), "--promote-to",
                      str(work / "upper_model"), *TINY])
    with open(work / "upper" / "campaign.csv", newline="") as f:
        row = list(csv.DictReader(f))[-1]
    assert row["feature_blocks"] == "7 pooled score" and np.isfinite(float(row["xvalid_lcc"]))
    if row["promoted"] == "1":  # a promoted head says what it reads, for load_qa
        config = (work / "upper_model" / "config.yaml").read_text()
        assert "feature_blocks:\n- 7\n- pooled\n- score" in config


def test_the_shipped_design_reads_a_set_from_the_every_layer_cache_when_it_is_there(work, tmp_path):
    root = work / "work"
    sim = campaign_qa.set_dir(root, "test", 1, 1)
    x_all, _, _ = campaign_qa.features_of(root, sim, 1, campaign_qa.ALL_LAYERS)  # the comparison's cache
    shutil.rmtree(root / "features" / sim.name, ignore_errors=True)  # a row step's, if one ran before
    x, y, _ = campaign_qa.features_of(root, sim, 1, None)
    assert not (root / "features" / sim.name).exists()  # nothing encoded again
    paths, _, _ = campaign.read_set(sim)
    direct = campaign.extract_features(paths, tmp_path / "direct", 1, campaign_qa.PRECISION)
    assert x.shape == direct.shape and x_all.shape[1] > x.shape[1]
    np.testing.assert_allclose(x, direct, atol=1e-5)
