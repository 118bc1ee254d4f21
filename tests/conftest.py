"""What several test files share: test audio, a tiny labelled corpus, small runs, the CLI runner.

Test modules import these by name (`from conftest import tone`); pytest puts tests/ on the path.
"""

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

SR = 16000
# A train-qa model small enough for a CPU test (~3k parameters), still a real qualitynet.
QA_TINY = ["--arch", "qualitynet", "--lstm-hidden", "8", "--batch-size", "4", "--threads", "1",
           "--device", "cpu"]


def tone(freq: float = 440.0, sr: int = SR, seconds: float = 1.0, amp: float = 0.3, channels: int = 1):
    """A pure sine, float32; (n, channels) when channels > 1."""
    t = np.arange(int(sr * seconds)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def speech(seconds: float, f0: float, sr: int = SR) -> np.ndarray:
    """Voiced, syllable-modulated harmonics: enough like speech for PESQ to find utterances."""
    t = np.arange(int(seconds * sr)) / sr
    harmonics = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    return (0.1 * harmonics * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2).astype(np.float32)


def make_corpus(root, n: int = 24, seed: int = 0) -> dict:
    """n clips (0.5-1.2 s), a speech-like tone in white noise at SNRs spread over -5..30 dB, labelled
    with a score rising with the SNR; train/valid/test lists with conditions."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        dur = rng.uniform(0.5, 1.2)  # 0.5 s: the shortest clip train-qa accepts (audio.MIN_SECONDS)
        t = np.arange(int(dur * SR)) / SR
        f0 = rng.uniform(100, 220)
        voice = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        voice *= 0.5 * (1 + np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)))
        snr = -5 + 35 * i / (n - 1)
        noise = rng.standard_normal(len(t))
        noise *= np.sqrt(np.mean(voice**2) / np.mean(noise**2) / 10 ** (snr / 10))
        wav = 0.3 * (voice + noise) / np.max(np.abs(voice + noise))
        path = root / f"clip{i:02d}.wav"
        sf.write(path, wav.astype(np.float32), SR)
        rows.append((path.name, 1 + 4 * i / (n - 1), f"snr{int(snr // 10)}"))
    lists = {}
    splits = {"train": lambda i: i % 4 != 1, "valid": lambda i: i % 4 == 1, "test": lambda i: True}
    for split, keep in splits.items():
        lists[split] = root / f"{split}.list"
        lines = ["path,score,condition"] + [f"{p},{s:.3f},{c}" for i, (p, s, c) in enumerate(rows) if keep(i)]
        lists[split].write_text("\n".join(lines) + "\n")
    return lists


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def write_pairs(root, n_train: int = 4, n_valid: int = 2, seconds: float = 1.2):
    """noisy,clean training and validation lists of speech-like items in white noise."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_train + n_valid):
        s = speech(seconds, 110 + 15 * i)
        sf.write(root / f"c{i}.wav", s, SR)
        sf.write(root / f"n{i}.wav", s + 0.03 * rng.standard_normal(len(s)).astype(np.float32), SR)
        lines.append(f"n{i}.wav,c{i}.wav")
    (root / "train.list").write_text("\n".join(lines[:n_train]) + "\n")
    (root / "valid.list").write_text("\n".join(lines[n_train:]) + "\n")
    return root / "train.list", root / "valid.list"


def run_cli(*args):
    """`mosqa ARGS...` in this process; paths and numbers may be given as they are."""
    from cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def runs_in(exp) -> list:
    """The run directories under exp (hidden folders such as .cache and .partial runs excluded)."""
    return [p for p in exp.iterdir() if not p.name.startswith(".")]


def write_csv(path, header: list[str], rows: list[list]) -> None:
    """A CSV with a header, its folder made: the files recipes read (meta.csv, predictions.csv ...)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
