"""The campaign's pieces: the Distill-MOS port against the published package, the ridge sums, the
diagnostic targets, and the shipped-model form of the head (differentiable, in range)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import run_cli, speech
from scipy.stats import mannwhitneyu

from mosqa import campaign, distill_mos
from mosqa.diagnostics import CALL_TARGETS, TARGETS, kind_of, source_of, target_value, targets
from mosqa.errors import MosqaError
from mosqa.pretrained import PRETRAINED_DIR

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def encoder():
    return distill_mos.load_encoder()


def test_encoder_matches_the_published_model(encoder):
    """Golden scores from recipes/bench/distillmos_reference.py (the package's own code, float32 weights);
    ours ship as float16. The 10 s files take the reference's several-window path."""
    golden = json.loads((FIXTURES / "distillmos" / "golden.json").read_text())["scores"]
    for name, want in golden.items():
        wav, _ = sf.read(FIXTURES / "dnsmos" / name, dtype="float32")
        with torch.no_grad():
            got = float(encoder(torch.from_numpy(wav)[None]))
        assert got == pytest.approx(want, abs=3e-3), name


def test_features_are_per_item_and_windowed(encoder):
    a, b = speech(3.0, 120), speech(9.0, 200)  # 9 s: two windows without padding
    with torch.no_grad():
        fa = encoder.features(torch.from_numpy(a)[None])
        fb = encoder.features(torch.from_numpy(b)[None])
        pair = encoder.features(torch.from_numpy(np.stack([a, a])))
    assert fa.shape == (1, distill_mos.FEATURE_DIM) and torch.isfinite(fb).all()
    assert torch.allclose(pair[0], fa[0], atol=1e-5) and torch.allclose(pair[1], fa[0], atol=1e-5)
    assert not torch.allclose(fa, fb)
    assert len(distill_mos.split_windows(torch.zeros(1, 9 * 16000))) == 2
    with torch.no_grad():  # pad=True is the reference's input: 7.68 s windows
        padded = encoder.features(torch.from_numpy(a)[None], pad=True)
    assert padded[0, -1] == pytest.approx(float(encoder(torch.from_numpy(a)[None])), abs=1e-5)


def test_feature_columns_select_the_shipped_layout_from_every_layer(encoder):
    """One all-layer extraction serves every head of the comparison: the columns of the shipped design's
    blocks are exactly the shipped features."""
    wav = torch.from_numpy(speech(3.0, 150))[None]
    with torch.no_grad():
        shipped = encoder.features(wav)
        every = encoder.features(wav, layers=distill_mos.ALL_LAYERS)
    assert every.shape[1] == distill_mos.feature_dim(distill_mos.ALL_LAYERS)
    cols = distill_mos.feature_columns(("cnn", *distill_mos.FEATURE_LAYERS, "pooled", "score"))
    assert torch.equal(every[:, cols], shipped)
    upper = distill_mos.feature_columns(("pooled", "score"))
    assert len(upper) == distill_mos.DIM + 1 and torch.equal(every[:, upper], shipped[:, -upper.size:])
    with pytest.raises(MosqaError, match="no feature block"):
        distill_mos.feature_columns((9, "score"))


def test_missing_weights_is_a_clean_error(tmp_path):
    with pytest.raises(MosqaError, match="weights are missing"):
        distill_mos.load_encoder(path=tmp_path / "none.pt")


def _data(n, d=40, k=len(campaign.OUTPUTS), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-2, 2, d)
    w = rng.standard_normal((d, k))
    return x, x @ w + 0.1 * rng.standard_normal((n, k))


def test_ridge_sums_add_up_across_shards_and_match_the_closed_form():
    x, y = _data(300)
    whole = campaign.new_state(x[:100], rank=40)
    campaign.accumulate(whole, x, y)
    parts = campaign.new_state(x[:100], rank=40)
    for chunk in np.array_split(np.arange(300), 3):
        campaign.accumulate(parts, x[chunk], y[chunk])
    lam = [0.1] * y.shape[1]
    w1, b1 = campaign.solve(whole, lam)
    w2, b2 = campaign.solve(parts, lam)
    assert np.allclose(w1, w2) and np.allclose(b1, b2)
    # the same ridge written out directly on the centred projected features
    z = campaign.project(whole, x)
    zc, yc = z - z.mean(0), y - y.mean(0)
    unit = np.linalg.eigvalsh(zc.T @ zc).mean()
    direct = np.linalg.solve(zc.T @ zc + 0.1 * unit * np.eye(z.shape[1]), zc.T @ yc)
    assert np.allclose(w1, direct, atol=1e-8)
    # folded onto raw features, the head gives the same outputs
    wf, bf = campaign.head_weights(whole, lam)
    assert np.allclose(x @ wf + bf, z @ w1 + b1, atol=1e-3)


def test_plain_shards_kept_apart_weigh_as_weighted_clips_and_survive_a_save(tmp_path):
    x, y = _data(300)
    state = campaign.new_state(x[:100], rank=40)
    campaign.accumulate(state, x[:120], y[:120], campaign.PLAIN)
    campaign.accumulate(state, x[120:], y[120:])
    assert state["n"] == 180 and state[campaign.PLAIN + "n"] == 120
    lam = [0.1] * y.shape[1]
    # weight 1: the ridge on every clip, as if they had never been apart
    together = campaign.new_state(x[:100], rank=40)
    campaign.accumulate(together, x, y)
    for got, want in zip(campaign.solve(campaign.weighted(state, 1.0), lam), campaign.solve(together, lam),
                         strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)
    # weight 0.3: the weighted ridge written out directly, each plain clip counting 0.3
    w, b = campaign.solve(campaign.weighted(state, 0.3), lam)
    z = campaign.project(state, x)
    c = np.r_[np.full(120, 0.3), np.ones(180)][:, None]
    zm, ym = (c * z).sum(0) / c.sum(), (c * y).sum(0) / c.sum()
    zc, yc = z - zm, y - ym
    gram = zc.T @ (c * zc)
    unit = np.linalg.eigvalsh(gram).mean()
    direct = np.linalg.solve(gram + 0.1 * unit * np.eye(z.shape[1]), zc.T @ (c * yc))
    np.testing.assert_allclose(w, direct, atol=1e-8)
    np.testing.assert_allclose(b, ym - zm @ direct, atol=1e-8)
    assert not any(k.startswith(campaign.PLAIN) for k in campaign.weighted(state, 0.3))
    campaign.save_state(tmp_path / "state.npz", state)
    back = campaign.load_state(tmp_path / "state.npz")
    for key in (*campaign.STATE_SUMS, *(campaign.PLAIN + k for k in campaign.STATE_SUMS)):
        np.testing.assert_array_equal(back[key], state[key])
    # the plain sums, added to no more, sit in their own file, rewritten only when they change
    plain = (tmp_path / "plain.npz").read_bytes()
    campaign.accumulate(state, x, y)
    campaign.save_state(tmp_path / "state.npz", state)
    assert (tmp_path / "plain.npz").read_bytes() == plain
    with np.load(tmp_path / "state.npz") as sums:
        assert {k for k in sums.files if k.startswith(campaign.PLAIN)} == {campaign.PLAIN + "n"}
    # a state whose plain sums are missing says so; one without any ignores a stray plain.npz
    (tmp_path / "plain.npz").unlink()
    with pytest.raises(MosqaError, match="plain.npz, which is missing"):
        campaign.load_state(tmp_path / "state.npz")
    alone = campaign.new_state(x[:100], rank=40)
    campaign.accumulate(alone, x, y)
    (tmp_path / "alone").mkdir()
    campaign.save_state(tmp_path / "alone" / "state.npz", alone)
    (tmp_path / "alone" / "plain.npz").write_bytes(plain)
    assert campaign.PLAIN + "n" not in campaign.load_state(tmp_path / "alone" / "state.npz")


def test_state_round_trip_and_bad_state(tmp_path):
    x, y = _data(120)
    state = campaign.new_state(x, rank=20)
    campaign.accumulate(state, x, y)
    campaign.save_state(tmp_path / "state.npz", state)
    back = campaign.load_state(tmp_path / "state.npz")
    assert back["n"] == 120 and np.array_equal(back["zz"], state["zz"])
    assert all(np.array_equal(back[k], state[k]) for k in campaign.PROJECTION)
    # the projection, fixed by the first block, is written once: a session's commit adds only the sums
    projection = (tmp_path / "projection.npz").read_bytes()
    campaign.accumulate(state, x, y)
    campaign.save_state(tmp_path / "state.npz", state)
    assert (tmp_path / "projection.npz").read_bytes() == projection
    with np.load(tmp_path / "state.npz") as sums:
        assert not set(campaign.PROJECTION) & set(sums.files)
    assert campaign.load_state(tmp_path / "none.npz") is None
    (tmp_path / "bad.npz").write_bytes(b"not a state")
    with pytest.raises(MosqaError, match="not a campaign state"):
        campaign.load_state(tmp_path / "bad.npz")


def test_lambda_selection_prefers_regularisation_on_noisy_few_clips():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 50))
    y = np.tile(x[:, :1] + 2.0 * rng.standard_normal((60, 1)), (1, len(campaign.OUTPUTS)))
    xv = rng.standard_normal((400, 50))
    yv = np.tile(xv[:, :1], (1, len(campaign.OUTPUTS)))
    state = campaign.new_state(x, rank=50)
    campaign.accumulate(state, x, y)
    lambdas = campaign.select_lambdas(state, campaign.project(state, xv), yv)
    assert lambdas[0] > campaign.LAMBDAS[0]


def test_auc_against_scipy():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200).astype(float)
    scores = labels + rng.standard_normal(200).round(1)  # rounding makes ties
    u = mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    assert campaign.auc(scores, labels) == pytest.approx(u / (labels.sum() * (200 - labels.sum())))
    assert np.isnan(campaign.auc(scores, np.ones(200)))


def test_diagnostic_targets_from_meta_rows():
    clean = {"degradations": "clean"}
    assert targets(clean) == [t.absent for t in TARGETS.values()]
    row = {"snr_db": "12.5", "babble_snr_db": "4", "drr_db": "", "clipped_share": "0.02",
           "band_high_hz": "3400", "codec": "opus+mp3", "loss_rate": "0.1"}
    assert target_value(row, "snr_db") == 4.0  # the strongest of the additive sources
    assert target_value(row, "drr_db") == TARGETS["drr_db"].absent
    assert target_value(row, "codec") == 1.0 and target_value(row, "band_high_hz") == 3400
    assert target_value({"snr_db": "80"}, "snr_db") == TARGETS["snr_db"].high
    assert kind_of("noise") == "noise" and kind_of("noise+codec") == "combined"
    assert source_of("libri_1088") == "libri"


def test_call_impairment_targets_from_meta_rows_stay_out_of_the_model_outputs():
    clean = {"degradations": "clean"}
    assert [target_value(clean, n) for n in CALL_TARGETS] == [t.absent for t in CALL_TARGETS.values()]
    row = {"echo_level_db": "14.5", "talker_snr_db": "-7", "chops_per_s": "3.2", "ns_mode": "gate",
           "gain_swing_db": "", "saturation_sdr_db": "80", "hum_snr_db": "21"}
    assert target_value(row, "echo_level_db") == 14.5 and target_value(row, "talker_snr_db") == -7.0
    assert target_value(row, "chops_per_s") == 3.2 and target_value(row, "suppressor") == 1.0
    assert target_value(row, "gain_swing_db") == 0.0 and target_value(row, "hum_snr_db") == 21.0
    assert target_value(row, "saturation_sdr_db") == CALL_TARGETS["saturation_sdr_db"].high
    assert len(targets(row)) == len(TARGETS)  # what the campaign's sums and the heads are fitted to
    shipped = yaml.safe_load((PRETRAINED_DIR / "pesq-wb" / "config.yaml").read_text())
    assert shipped["outputs"] == list(campaign.OUTPUTS) == ["score", *TARGETS]


def test_report_has_every_kind_source_and_diagnostic():
    rng = np.random.default_rng(3)
    y = np.column_stack([rng.uniform(1, 4.5, 30), rng.uniform(0, 1, (30, len(TARGETS)))])
    y[:, -1] = rng.integers(0, 2, 30)
    kinds, speakers = ("noise", "codec", "noise+clip"), ("libri_1", "so762_2")
    rows = [{"degradations": kinds[i % 3], "speaker": speakers[i % 2]} for i in range(30)]
    out = campaign.report(y + 0.1, y, rows)
    assert out["lcc"] == pytest.approx(1.0) and out["bias"] == pytest.approx(0.1)
    assert {"kind_noise_lcc", "kind_combined_bias", "source_libri_n", "diag_codec_auc"} <= set(out)
    assert all(f"diag_{n}_mae" in out for n, t in TARGETS.items() if not t.binary)


def _random_head(seed=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((50, distill_mos.FEATURE_DIM))
    y = np.column_stack([rng.uniform(1, 5, 50), rng.uniform(0, 1, (50, len(TARGETS)))])
    state = campaign.new_state(x, rank=20)
    campaign.accumulate(state, x, y)
    return state, [1.0] * y.shape[1]


class GraphStub:
    """export_head without the minute its real ONNX export takes (tests/test_campaign_recipe.py's
    promotion does one): a placeholder model.onnx, or a failure when `fail` is set."""

    fail = False

    def __call__(self, spec, out=None):
        if self.fail:
            raise MosqaError(f"{spec}: the exported graph scores differently from torch")
        (Path(spec) / "model.onnx").write_bytes(b"graph of the new model")


@pytest.fixture
def graph_stub(monkeypatch):
    from mosqa import export

    stub = GraphStub()
    monkeypatch.setattr(export, "export_onnx", stub)
    return stub


def test_exported_head_loads_as_a_differentiable_quality_model(tmp_path, encoder, graph_stub):
    from mosqa.qa import load_qa

    state, lambdas = _random_head()
    campaign.export_head(tmp_path / "model", state, lambdas, "fp32", {"row": 1})
    scorer = load_qa(tmp_path / "model")
    wav = torch.from_numpy(np.stack([speech(2.0, 150), speech(2.0, 150)]))
    wav[1, 16000:] = 0
    wav.requires_grad_(True)
    out = scorer.full(wav, torch.tensor([32000, 16000]))
    assert set(out) == {*campaign.OUTPUTS, "listener_mos"}
    assert ((out["score"] >= 1) & (out["score"] <= 5)).all()
    for name, t in TARGETS.items():
        assert ((out[name] >= t.low) & (out[name] <= t.high)).all()
    # the head equals the ridge on the encoder's features, item by item at its own length
    with torch.no_grad():
        feats = encoder.features(wav[:1].detach()).numpy()
    w, b = campaign.solve(state, lambdas)
    want = np.clip(campaign.project(state, feats) @ w + b, 1, 5)[0, 0]
    assert float(out["score"][0].detach()) == pytest.approx(want, abs=1e-3)
    assert float(out["listener_mos"][0].detach()) == pytest.approx(feats[0, distill_mos.LISTENER], abs=1e-5)
    scorer.normalised(wav, torch.tensor([32000, 16000])).sum().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all() and wav.grad[0].abs().sum() > 0
    # beyond the range the score is clipped but its gradient is the unclipped one (a learning head)
    with torch.no_grad():
        scorer.head.bias[0] -= 100.0
    scorer.head.bias.grad = None
    score = scorer(wav.detach(), torch.tensor([32000, 16000]))
    assert torch.equal(score, torch.ones(2))
    score.sum().backward()
    assert scorer.head.bias.grad[0] == 2.0


def test_score_map_recovers_a_logistic_and_bends_only_the_score():
    rng = np.random.default_rng(3)
    raw = rng.uniform(0, 5, 2000)
    true = campaign.saturating(raw, 1.05, 4.6, 1.4, 2.8) + 0.05 * rng.standard_normal(2000)
    fitted = campaign.fit_score_map(raw, true)
    assert fitted == pytest.approx((1.05, 4.6, 1.4, 2.8), rel=0.05)
    assert campaign.fit_score_map(raw, 5 - raw) is None  # labels that fall as the score rises: no map
    z, w = rng.standard_normal((6, 3)), rng.standard_normal((3, len(campaign.OUTPUTS)))
    b = np.full(len(campaign.OUTPUTS), 0.5)
    plain, mapped = campaign.predict_projected(z, w, b), campaign.predict_projected(z, w, b, fitted)
    assert np.array_equal(mapped[:, 1:], plain[:, 1:])
    assert np.allclose(mapped[:, 0], campaign.saturating((z @ w + b)[:, 0], *fitted))


def test_an_exported_score_map_is_applied_by_the_model_with_a_gradient(tmp_path, encoder, graph_stub):
    from mosqa.qa import load_qa

    state, lambdas = _random_head()
    score_map = (1.1, 4.6, 1.5, 3.0)
    campaign.export_head(tmp_path / "model", state, lambdas, "fp32", {"row": 1}, score_map=score_map)
    scorer = load_qa(tmp_path / "model")
    wav = torch.from_numpy(speech(2.0, 150))[None].requires_grad_(True)
    score = scorer(wav)
    with torch.no_grad():
        feats = encoder.features(wav.detach()).numpy()
    w, b = campaign.solve(state, lambdas)
    want = campaign.predict_projected(campaign.project(state, feats), w, b, score_map)[0, 0]
    assert float(score[0].detach()) == pytest.approx(want, abs=1e-3)
    assert 1.1 < float(score[0].detach()) < 4.6
    score.sum().backward()
    assert torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0


def test_a_head_on_other_feature_blocks_reads_exactly_those_columns(tmp_path, encoder, graph_stub):
    from mosqa.qa import load_qa

    blocks = (4, 7, "pooled", "score")
    cols = distill_mos.feature_columns(blocks)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, len(cols)))
    y = np.column_stack([rng.uniform(1, 5, 50), rng.uniform(0, 1, (50, len(TARGETS)))])
    state = campaign.new_state(x, rank=20)
    campaign.accumulate(state, x, y)
    lambdas = [1.0] * y.shape[1]
    campaign.export_head(tmp_path / "model", state, lambdas, "fp32", {"row": 1}, feature_blocks=blocks)
    scorer = load_qa(tmp_path / "model")
    assert scorer.head.in_features == len(cols) == 2 * 2 * distill_mos.DIM + distill_mos.DIM + 1
    wav = torch.from_numpy(speech(2.0, 150))[None]
    with torch.no_grad():
        out = scorer.full(wav)
        feats = encoder.features(wav, layers=distill_mos.ALL_LAYERS).numpy()[:, cols]
    w, b = campaign.solve(state, lambdas)
    want = np.clip(campaign.project(state, feats) @ w + b, 1, 5)[0, 0]
    assert float(out["score"][0]) == pytest.approx(want, abs=1e-3)
    assert float(out["listener_mos"][0]) == pytest.approx(feats[0, -1], abs=1e-5)


def test_export_replaces_the_whole_folder_and_writes_the_card(tmp_path, graph_stub):
    dest = tmp_path / "pesq-wb"
    dest.mkdir()
    (dest / "model.onnx").write_bytes(b"graph of the model being replaced")
    (dest / "notes.txt").write_text("left by the model being replaced")
    state, lambdas = _random_head()
    row = {"row": 3, "date": "2026-12-04", "clips": 20754, "shards": 2, "test_lcc": 0.91, "test_n": 1100,
           "test_kind_noise_n": 200, "test_kind_noise_lcc": 0.88, "test_kind_noise_bias": -0.04,
           "test_diag_codec_auc": 0.95, "test_diag_snr_db_mae": 4.2}
    graph_stub.fail = True  # a graph that cannot be exported: the shipped model stays as it was
    with pytest.raises(MosqaError, match="scores differently"):
        campaign.export_head(dest, state, lambdas, "bf16", row)
    assert sorted(p.name for p in dest.iterdir()) == ["model.onnx", "notes.txt"]
    assert not list(tmp_path.glob(".pesq-wb*"))
    graph_stub.fail = False
    campaign.export_head(dest, state, lambdas, "bf16", row)
    assert sorted(p.name for p in dest.iterdir()) == ["MODEL_CARD.md", "best.pt", "config.yaml", "model.onnx"]
    assert (dest / "model.onnx").read_bytes() == b"graph of the new model"
    assert not list(tmp_path.glob(".pesq-wb*"))  # no staging folder left behind
    card = (dest / "MODEL_CARD.md").read_text()
    assert "`pesq-wb`" in card and "row 3" in card and "20,754 training clips" in card
    assert "| noise | 200 | 0.880 | -0.040 |" in card and "AUC 0.950" in card and "MAE 4.200" in card
    assert "`listener_mos`" in card and "Stahl" in card
    assert "cross-renderer" not in card and "shards added last" not in card  # a row without them


def test_the_card_quotes_the_cross_renderer_sets_the_data_mix_and_the_recipes_section():
    row = {"row": 4, "clips": 91144, "shards": 8, "xvalid_n": 741, "xvalid_lcc": 0.8379, "xtest_n": 687,
           "xtest_lcc": 0.8135, "xtest_bias": 0.0485, "xtest_kind_time_mask_n": 12,
           "xtest_kind_time_mask_lcc": 0.327, "xtest_kind_time_mask_bias": 0.52, "call_share": 0.15,
           "fault_share": 0.08, "recording_chain": "0.5000", "voice_perturb": 0.0}
    card = campaign.model_card("pesq-wb", row, "\n## Which features the head reads\n\n| head |\n")
    assert "| cross-renderer validation | 741 | 0.838 |" in card
    assert "| cross-renderer test | 687 | 0.814 | – | – | +0.049 |" in card
    assert "| time_mask | 12 | 0.327 | +0.520 |" in card
    assert ("call impairments in 15% of degraded clips, signal-path faults (aliasing, outages) in 8%, "
            "50% of references through a recording chain." in card)  # no voice speed: it was 0
    assert card.index("cross-renderer test") < card.index("## Which features") < card.index("## Diagnostics")
    later = campaign.model_card("pesq-wb", row | {"shard_options": "--band-order-range 1,8",
                                                  "plain_weight": 0.2})
    assert ("voice speed" not in later and "`mosqa simulate --band-order-range 1,8`." in later
            and "(rows 1-3) weighs 0.2 in the sums" in later)


@pytest.fixture(scope="module")
def head_model(tmp_path_factory):
    from mosqa import export

    state, lambdas = _random_head(5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export, "export_onnx", GraphStub())
        return campaign.export_head(tmp_path_factory.mktemp("head") / "model", state, lambdas, "fp32",
                                    {"row": 1})


def test_predict_diagnose_adds_finite_in_range_columns(tmp_path, head_model):
    import csv

    for i, seconds in enumerate((1.5, 10.0)):  # the long one is scored in chunks
        sf.write(tmp_path / f"clip{i}.wav", speech(seconds, 120 + 40 * i), 16000)
    out = tmp_path / "scores.csv"
    res = run_cli("predict", str(tmp_path / "clip0.wav"), str(tmp_path / "clip1.wav"), "--model",
                  str(head_model), "--diagnose", "--chunk-seconds", "4", "--engine", "torch", "-o", str(out))
    assert res.exit_code == 0, res.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["num_chunks"] for r in rows] == ["1", "3"]
    for r in rows:
        assert 1 <= float(r["score"]) <= 5 and 1 <= float(r["listener_mos"]) <= 5
        for name, t in TARGETS.items():
            assert t.low <= float(r[name]) <= t.high, (name, r[name])
    plain = tmp_path / "plain.csv"
    res = run_cli("predict", str(tmp_path / "clip0.wav"), "--model", str(head_model), "--engine", "torch",
                  "-o", str(plain))
    assert res.exit_code == 0, res.output
    header = plain.read_text().splitlines()[0].split(",")
    assert "score" in header and "listener_mos" in header and not set(TARGETS) & set(header)


def test_the_shipped_model_diagnoses_what_it_has_heads_for(tmp_path):
    import csv

    sf.write(tmp_path / "clip.wav", speech(1.5, 120), 16000)
    res = run_cli("predict", str(tmp_path / "clip.wav"), "--model", "pesq-wb", "--diagnose",
                  "-o", str(tmp_path / "s.csv"))
    assert res.exit_code == 0, res.output
    with open(tmp_path / "s.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert set(TARGETS) <= set(row) and not set(CALL_TARGETS) & set(row)
    assert all(TARGETS[n].low <= float(row[n]) <= TARGETS[n].high for n in TARGETS)


def test_diagnose_with_a_model_without_heads_is_a_one_line_error(tmp_path):
    sf.write(tmp_path / "clip.wav", speech(1.5, 120), 16000)
    res = run_cli("predict", str(tmp_path / "clip.wav"), "--model", "pesq-wb-nisqa", "--diagnose",
                  "--engine", "torch", "-o", str(tmp_path / "s.csv"))
    assert res.exit_code != 0 and "has no diagnostic heads" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "s.csv").exists()
