"""mosqa.upper_head: the layer-4 frame cache resumes by part, the untrained copy scores as the frozen
encoder (so the copy and the masks are right), every trained parameter learns, and a cut training resumes
to the uncut one."""

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SR, speech
from torch.nn.utils.rnn import pad_sequence

from mosqa import campaign, distill_mos, upper_head

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def encoder():
    return distill_mos.load_encoder()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Seven 1-2 s speech-like clips and one of 9 s (two windows), with made-up targets."""
    root = tmp_path_factory.mktemp("clips")
    paths = []
    for i, seconds in enumerate([1.0, 1.5, 2.0, 9.0, 1.2, 1.8, 1.1, 1.6]):
        paths.append(root / f"c{i}.wav")
        sf.write(paths[-1], speech(seconds, 100 + 20 * i), SR)
    y = np.random.default_rng(0).uniform(1, 4.5, (len(paths), len(campaign.OUTPUTS)))
    return paths, y


@pytest.fixture(scope="module")
def frames(clips, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setattr(campaign, "PART", 3)  # three part files of the eight clips
    cache = tmp_path_factory.mktemp("frames")
    return upper_head.cache_frames(clips[0], cache), cache


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_a_deleted_part_is_rebuilt_equal(frames, clips, monkeypatch_module):
    data, cache = frames
    assert data.clips == 8 and data.frames.dtype == torch.float16
    assert (data.first[4] - data.first[3]) == 2  # the 9 s clip: two windows, as split_windows cuts it
    parts = sorted(cache.glob("part_*.npz"))
    assert len(parts) == 3
    kept = parts[0].stat().st_mtime_ns
    parts[1].unlink()
    again = upper_head.cache_frames(clips[0], cache)
    assert parts[1].is_file() and parts[0].stat().st_mtime_ns == kept
    for field in ("frames", "starts", "first", "listener"):
        assert torch.equal(getattr(again, field), getattr(data, field)), field


def test_the_untrained_copy_scores_as_the_frozen_encoder(encoder, frames):
    """Alone and in a padded batch of two lengths (torch's eval-mode path), and from the float16 cache
    (the training-mode path that scoring takes)."""
    a, b = (torch.from_numpy(speech(s, f))[None] for s, f in ((1.5, 120), (2.0, 180)))
    with torch.no_grad():
        oa, ob = encoder.frames(a), encoder.frames(b)
        model = upper_head.UpperHead(encoder).eval()
        _, alone = model(oa[4], torch.zeros(oa[4].shape[:2], dtype=torch.bool))
        x = pad_sequence([oa[4][0], ob[4][0]], batch_first=True)
        pad = torch.arange(x.shape[1])[None] >= torch.tensor([oa[4].shape[1], ob[4].shape[1]])[:, None]
        _, pair = model(x, pad)
    assert float(alone) == pytest.approx(float(oa["score"]), abs=1e-4)
    assert torch.allclose(pair, torch.cat([oa["score"], ob["score"]]), atol=1e-4)
    _, listener = upper_head.predict(model, frames[0])
    assert np.allclose(listener, frames[0].clip_listener(), atol=1e-4)


def test_outputs_and_distillation_are_finite_and_every_parameter_learns(encoder, frames, clips):
    data, y = frames[0], clips[1]
    model = upper_head.UpperHead(encoder)
    picked = torch.tensor([0, 3, 5])
    batch = upper_head._batch(data, picked, "cpu")
    out, listener = model(*batch[:2])
    assert out.shape == (4, len(campaign.OUTPUTS)) and torch.isfinite(out).all()
    distilled = upper_head.loss(model, batch, torch.tensor(y[picked], dtype=torch.float32), 0.5, 1.0, 0.3)
    assert torch.isfinite(distilled)
    distilled.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # the pool's softmax over time is blind to a shift of its logits: that bias alone learns nothing
        assert name == "att_score.bias" or p.grad.abs().sum() > 0, name


def test_a_resumed_training_equals_an_uncut_one(encoder, frames, clips, tmp_path):
    data, y = frames[0], clips[1]
    train_set, valid = (data, y), {"valid": (data, y[::-1].copy())}
    uncut, history = upper_head.train(upper_head.UpperHead(encoder), train_set, valid, tmp_path / "a", 2,
                                      batch=3, log=lambda _: None)
    assert [r["epoch"] for r in history] == [0, 1, 2] and np.isfinite(history[-1]["loss"])
    assert {"valid_lcc", "valid_drift_lcc", "valid_drift_mae"} <= set(history[-1])
    upper_head.train(upper_head.UpperHead(encoder), train_set, valid, tmp_path / "b", 1, batch=3,
                     log=lambda _: None)
    resumed, again = upper_head.train(upper_head.UpperHead(encoder), train_set, valid, tmp_path / "b", 2,
                                      batch=3, log=lambda _: None)
    assert again == [pytest.approx(r, nan_ok=True) for r in history]
    for (name, a), b in zip(uncut.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    saved = torch.load(tmp_path / "a" / upper_head.CHECKPOINT, weights_only=True)
    assert saved["best_epoch"] == max(range(3), key=lambda e: (history[e]["valid_lcc"], -e))
