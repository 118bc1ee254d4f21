"""audio.py (loading, resampling, downmix, bad files, atomic writes) and frontend.py (STFT features)."""

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tone

from mosqa.audio import atomic_path, is_silent, level_db, load_audio, load_audio_native, resample, write_audio
from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd, features, frame_lengths, istft, mel_filterbank, stft


def peak_hz(wav, sr):
    spec = np.abs(np.fft.rfft(wav))
    return np.fft.rfftfreq(len(wav), 1 / sr)[np.argmax(spec)]


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_any_rate_is_resampled_to_16k(tmp_path, sr):
    path = tmp_path / f"t{sr}.wav"
    sf.write(path, tone(1000, sr, 1.0, 0.5), sr)
    wav = load_audio(path)
    assert wav.dtype == np.float32
    assert abs(len(wav) - 16000) <= 1
    assert abs(peak_hz(wav, 16000) - 1000) < 5
    assert 0.45 < np.max(np.abs(wav[100:-100])) < 0.55  # amplitude survives resampling


def test_native_rate_and_none_keep_the_file_rate(tmp_path):
    sf.write(tmp_path / "a.wav", tone(440, 44100, 0.5, 0.5), 44100)
    wav, sr = load_audio_native(tmp_path / "a.wav")
    assert sr == 44100 and len(wav) == 22050
    assert len(load_audio(tmp_path / "a.wav", sr=None)) == 22050


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    left, right = tone(500, amp=0.5), tone(1500, amp=0.2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    wav = load_audio(tmp_path / "st.wav")
    assert wav.ndim == 1
    np.testing.assert_allclose(wav, (left + right) / 2, atol=1e-6)


def test_resample_is_exact_rational_and_identity_at_same_rate():
    x = tone(300, 48000, 0.1, 0.5)
    assert resample(x, 48000, 48000) is x
    assert len(resample(x, 48000, 16000)) == 1600
    assert len(resample(x, 44100, 16000)) == int(np.ceil(len(x) * 160 / 441))


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(MosqaError, match=r"nope\.wav: no such audio file"):
        load_audio(tmp_path / "nope.wav")


def test_corrupt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" + bytes(range(200)))
    with pytest.raises(MosqaError, match=r"corrupt\.wav: cannot decode audio"):
        load_audio(bad)


def test_empty_file_is_refused(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(MosqaError, match="empty audio file"):
        load_audio(tmp_path / "empty.wav")


def test_nan_samples_are_refused(tmp_path):
    x = tone(1000, amp=0.5)
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(MosqaError, match="NaN or infinite"):
        load_audio(tmp_path / "nan.wav")


def test_silence_detection_and_level():
    assert is_silent(np.zeros(1000, np.float32))
    assert level_db(np.zeros(10)) == float("-inf")
    assert not is_silent(tone(1000, amp=0.01))
    assert level_db(np.ones(100)) == pytest.approx(0.0)
    assert is_silent(tone(1000, amp=1e-5))  # about -100 dBFS


def test_write_audio_round_trip_and_no_temp_files(tmp_path):
    x = tone(700, 16000, 0.3, 0.5)
    write_audio(tmp_path / "sub" / "x.wav", x)
    write_audio(tmp_path / "x.flac", x)
    assert sf.info(tmp_path / "sub" / "x.wav").subtype == "PCM_16"
    np.testing.assert_allclose(load_audio(tmp_path / "x.flac"), x, atol=1e-4)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["x.flac", "x.wav"]


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- front end

def test_stft_shape_is_batch_frames_bins():
    fe = FrontEnd(n_fft=512, hop=256)
    wav = torch.randn(2, 16000)
    spec = stft(wav, fe)
    assert spec.shape == (2, 16000 // 256 + 1, 257)
    assert spec.is_complex()
    assert fe.num_frames(16000) == spec.shape[1]


def test_istft_inverts_stft():
    for window in ("hann", "hamming", "sine"):
        fe = FrontEnd(n_fft=512, hop=256, window=window)
        wav = torch.randn(1, 8000)
        back = istft(stft(wav, fe), fe, 8000)
        assert torch.allclose(back, wav, atol=1e-4), window


def test_compression_is_a_power_law_on_the_magnitude():
    wav = torch.randn(1, 4000)
    raw = features(wav, FrontEnd(compress=1.0))
    cp = features(wav, FrontEnd(compress=0.5))
    assert raw.shape == cp.shape == (1, 4000 // 256 + 1, 257)
    assert torch.allclose(cp, (raw + 1e-8) ** 0.5, atol=1e-5)
    assert torch.allclose(raw, stft(wav, FrontEnd()).abs())


def test_complex_feature_keeps_phase_and_compresses_magnitude():
    wav = torch.randn(1, 4000)
    fe = FrontEnd(feature="complex", compress=0.3)
    feat = features(wav, fe)
    assert feat.shape[-1] == fe.n_bins == 514
    re, im = feat[..., :257], feat[..., 257:]
    spec = stft(wav, fe)
    assert torch.allclose(torch.sqrt(re ** 2 + im ** 2), (spec.abs() + 1e-8) ** 0.3, atol=1e-3)
    assert torch.allclose(torch.atan2(im, re)[spec.abs() > 1e-3], spec.angle()[spec.abs() > 1e-3], atol=1e-3)


def test_logmel_shape_and_filterbank():
    fe = FrontEnd(feature="logmel", n_mels=48)
    assert features(torch.randn(3, 3200), fe).shape == (3, 3200 // 256 + 1, 48)
    fb = mel_filterbank(fe)
    assert fb.shape == (48, 257) and torch.all(fb >= 0)
    assert torch.all(fb.sum(dim=1) > 0)  # no empty filter


def test_features_are_differentiable():
    wav = torch.randn(1, 2000, requires_grad=True)
    features(wav, FrontEnd(compress=0.5)).sum().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all()


def test_frame_lengths_match_the_padded_batch():
    fe = FrontEnd()
    lengths = torch.tensor([16000, 8000, 300])
    actual = [features(torch.randn(1, n), fe).shape[1] for n in (16000, 8000, 300)]
    assert frame_lengths(lengths, fe).tolist() == actual


def test_front_end_settings_round_trip_and_key():
    fe = FrontEnd(n_fft=400, hop=200, window="sine", feature="complex", compress=0.5)
    assert FrontEnd.from_dict({**fe.to_dict(), "unrelated": 1}) == fe
    assert fe.key() != FrontEnd().key()
    with pytest.raises(MosqaError, match="feature"):
        FrontEnd(feature="wavelet")
    with pytest.raises(MosqaError, match="compress"):
        FrontEnd(compress=0.0)
    with pytest.raises(MosqaError, match="unknown window"):
        stft(torch.randn(1, 1000), FrontEnd(window="kaiser"))
