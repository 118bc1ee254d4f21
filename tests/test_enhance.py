"""`mosqa enhance`: chunked streaming with bounded model input, rates, outputs, scoring."""

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SR, run_cli, speech

from mosqa.enhance import collect_inputs, crossfade, enhance_files, enhance_wave
from mosqa.errors import MosqaError
from mosqa.runs import save_checkpoint, save_yaml
from mosqa.se_models import build_se_model
from mosqa.train_se import DEFAULTS

torch.set_num_threads(1)


class Recorder(torch.nn.Module):
    """Identity model that remembers the longest input it was given."""

    def __init__(self):
        super().__init__()
        self.longest = 0
        self.calls = 0

    def forward(self, wav, lengths=None):
        self.longest = max(self.longest, wav.shape[-1])
        self.calls += 1
        return wav * 1.0


def _identity_run(tmp_path, arch: str = "dpcrn") -> str:
    """A train-se run directory whose model is the identity (mask = 1)."""
    cfg = DEFAULTS | {"arch": arch, "identity_init": True}
    if arch == "lstm":
        cfg |= {"hidden": 16, "conv_channels": 16, "layers": 1, "n_fft": 512, "hop": 256, "window": "hann"}
    run = tmp_path / "run"
    run.mkdir()
    save_yaml(run / "config.yaml", cfg)
    save_checkpoint(run / "best.pt", {"model": build_se_model(cfg).state_dict(), "epoch": 1})
    return str(run)


def test_crossfade_sums_to_one():
    fade_in, fade_out = crossfade(800)
    assert np.allclose(fade_in + fade_out, 1.0)
    assert fade_in[0] < 0.01 and fade_in[-1] > 0.99


def test_sixty_second_file_runs_in_bounded_chunks():
    wav = np.random.default_rng(0).standard_normal(60 * SR).astype(np.float32) * 0.1
    model = Recorder()
    chunk, overlap = 4 * SR, SR // 2
    out = enhance_wave(model, wav, chunk, overlap)
    assert model.longest <= chunk + overlap
    assert model.calls == 15
    # An identity model comes back unchanged: the crossfades sum to one.
    assert out.shape == wav.shape and np.allclose(out, wav, atol=1e-6)


def test_chunked_matches_whole_file_for_identity_dpcrn(tmp_path):
    from mosqa.enhance import load_se

    model, _ = load_se(_identity_run(tmp_path))
    wav = speech(3.3, 220)
    out = enhance_wave(model, wav, SR, 1600)
    assert np.allclose(out, wav, atol=1e-4)


def test_enhance_keeps_input_rate_and_length(tmp_path):
    run = _identity_run(tmp_path)
    for sr in (8000, 44100):
        sf.write(tmp_path / f"in{sr}.wav", speech(1.7, 220, sr), sr)
    rows = enhance_files(run, [tmp_path / "in8000.wav", tmp_path / "in44100.wav"], tmp_path / "out",
                         chunk_seconds=0.5, overlap_seconds=0.1)
    assert len(rows) == 2
    for sr in (8000, 44100):
        out, out_sr = sf.read(tmp_path / "out" / f"in{sr}.wav")
        ref, _ = sf.read(tmp_path / f"in{sr}.wav")
        assert out_sr == sr and len(out) == len(ref)
        assert np.corrcoef(out, ref)[0, 1] > 0.99


def test_folders_lists_and_name_clashes(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    sf.write(tmp_path / "a" / "x.wav", speech(0.5, 220), SR)
    sf.write(tmp_path / "a" / "sub" / "y.flac", speech(0.5, 220), SR)
    (tmp_path / "files.txt").write_text("a/x.wav\n")
    names = [str(f.name) for f in collect_inputs([tmp_path / "a"])]
    assert names == ["sub/y.wav", "x.wav"]
    assert [str(f.name) for f in collect_inputs([tmp_path / "files.txt"])] == ["x.wav"]
    sf.write(tmp_path / "x.wav", speech(0.5, 220), SR)
    with pytest.raises(MosqaError, match="clashes"):
        collect_inputs([tmp_path / "a" / "x.wav", tmp_path / "x.wav"])
    with pytest.raises(MosqaError, match="no such audio file"):
        collect_inputs([tmp_path / "missing.wav"])


def test_cli_enhance_with_dnsmos_scores(tmp_path):
    run = _identity_run(tmp_path, "lstm")
    sf.write(tmp_path / "in.wav", speech(1.2, 220), SR)
    res = run_cli("enhance", run, str(tmp_path / "in.wav"), "--out-dir", str(tmp_path / "o"),
                                   "--score", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "in.wav").is_file()
    lines = (tmp_path / "o" / "dnsmos.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["input", "output", "OVRL"] and len(lines) == 2
    assert 1.0 <= float(lines[1].split(",")[2]) <= 5.0


def test_cli_enhance_bad_run_dir_is_one_line(tmp_path):
    sf.write(tmp_path / "in.wav", speech(0.5, 220), SR)
    res = run_cli("enhance", str(tmp_path / "nope"), str(tmp_path / "in.wav"), "-o",
                                   str(tmp_path / "o"))
    assert res.exit_code == 2
    assert "no such run directory" in res.output and len(res.output.strip().splitlines()) == 1
