"""Training data for enhancement: (noisy, clean) pairs from a list, or mixtures made on the fly.

Randomness is a pure function of (seed, epoch, index): an epoch replays identically after
`--resume`, and the validation set (epoch fixed at 0, its own seed) is the same for every run,
so runs compare on exactly the same mixtures.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.signal import fftconvolve

from mosqa.audio import audio_info, load_audio, load_checked
from mosqa.errors import MosqaError
from mosqa.lists import audio_files, read_list

VALID_EPOCH = -1


def read_pairs(list_path) -> list[tuple[Path, Path, str]]:
    """`noisy,clean[,score]` lines -> (noisy, clean, where); checks files and lengths up front."""
    pairs = []
    for it in read_list(list_path, require_score=False):
        if it.clean is None:
            raise MosqaError(f"{it.where}: expected 'noisy,clean[,score]', no clean reference given")
        for p in (it.path, it.clean):
            if not p.is_file():
                raise MosqaError(f"{it.where}: no such audio file {p}")
        try:
            (n_noisy, sr_noisy), (n_clean, sr_clean) = audio_info(it.path), audio_info(it.clean)
        except MosqaError as exc:
            raise MosqaError(f"{it.where}: {exc}") from None
        # Compare durations, not sample counts: the two files may be stored at different rates.
        dn, dc = n_noisy / sr_noisy, n_clean / sr_clean
        if abs(dn - dc) > 1.0 / min(sr_noisy, sr_clean):
            raise MosqaError(f"{it.where}: noisy and clean differ in length ({dn:.3f} s vs {dc:.3f} s)")
        pairs.append((it.path, it.clean, it.where))
    return pairs


def _rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch + 1, index])


def crop(rng, wavs: list[np.ndarray], n: int | None) -> list[np.ndarray]:
    """The same random window of `n` samples from aligned signals; zero-pad shorter ones."""
    if n is None:
        return wavs
    total = len(wavs[0])
    if total <= n:
        return [np.pad(w, (0, n - total)) for w in wavs]
    start = int(rng.integers(0, total - n + 1))
    return [w[start : start + n] for w in wavs]


class PairDataset(torch.utils.data.Dataset):
    """Aligned noisy/clean files from a list."""

    def __init__(
        self, list_path, sample_rate: int, crop_samples: int | None, seed: int = 0, cache: int = 512
    ):
        self.pairs = read_pairs(list_path)
        self.sr, self.crop, self.seed, self.epoch = sample_rate, crop_samples, seed, VALID_EPOCH
        self.load = lru_cache(maxsize=cache)(lambda p, where: load_checked(p, sample_rate, where))

    def __len__(self):
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i):
        noisy, clean, where = self.pairs[i]
        y, s = self.load(noisy, where), self.load(clean, where)
        n = min(len(y), len(s))  # header check allowed one sample of rounding
        y, s = crop(_rng(self.seed, self.epoch, i), [y[:n], s[:n]], self.crop)
        return y, s


class MixDataset(torch.utils.data.Dataset):
    """Clean speech + noise at a random SNR (optionally reverberated first), made on the fly.

    The target is the (reverberant, when a RIR is used) clean speech: the model learns to remove noise.
    With `crop_samples` None each item is a whole clean utterance (validation).
    """

    def __init__(
        self,
        clean_files,
        noise_files,
        sample_rate: int,
        crop_samples: int | None,
        snr_range=(0.0, 15.0),
        rir_files=(),
        items: int | None = None,
        seed: int = 0,
        level_range=(-35.0, -15.0),
        rir_prob: float = 0.5,
        cache: int = 512,
        where: dict | None = None,
    ):
        if not clean_files or not noise_files:
            raise MosqaError("on-the-fly mixing needs at least one clean and one noise file")
        self.clean, self.noise, self.rirs = list(clean_files), list(noise_files), list(rir_files)
        self.sr, self.crop, self.snr, self.level = sample_rate, crop_samples, snr_range, level_range
        self.items = items or len(self.clean)
        self.seed, self.epoch, self.rir_prob = seed, VALID_EPOCH, rir_prob
        # Speech and noise pass the check every command makes (errors name `where[path]`, a list:line);
        # RIRs are short and mostly quiet by nature.
        where = where or {}
        self.load = lru_cache(maxsize=cache)(lambda p: load_checked(p, sample_rate, where.get(p, "")))
        self.load_rir = lru_cache(maxsize=cache)(lambda p: load_audio(p, sample_rate))

    def __len__(self):
        return self.items

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i):
        rng = _rng(self.seed, self.epoch, i)
        # Validation walks the clean files in order so every file is used; training samples them.
        ci = i % len(self.clean) if self.epoch == VALID_EPOCH else int(rng.integers(len(self.clean)))
        speech = self.load(self.clean[ci])
        (speech,) = crop(rng, [speech], self.crop)
        if self.rirs and rng.random() < self.rir_prob:
            rir = self.load_rir(self.rirs[int(rng.integers(len(self.rirs)))])
            rir = rir / (np.max(np.abs(rir)) + 1e-9)
            speech = fftconvolve(speech, rir)[: len(speech)].astype(np.float32)
        noise = self.load(self.noise[int(rng.integers(len(self.noise)))])
        if len(noise) < len(speech):
            noise = np.tile(noise, len(speech) // len(noise) + 1)
        start = int(rng.integers(0, len(noise) - len(speech) + 1))
        noise = noise[start : start + len(speech)]
        return mix(speech, noise, rng.uniform(*self.snr), rng.uniform(*self.level))


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float, level_db: float):
    """Scale noise to `snr_db` below the speech, then both to a mixture level of `level_db` dBFS."""
    ps = float(np.mean(speech.astype(np.float64) ** 2)) + 1e-12
    pn = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-12
    noise = noise * np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    noisy = speech + noise
    gain = 10 ** (level_db / 20) / (np.sqrt(np.mean(noisy.astype(np.float64) ** 2)) + 1e-12)
    peak = np.max(np.abs(noisy)) * gain
    if peak > 0.99:  # never clip: the model would learn clipping as part of the noise
        gain *= 0.99 / peak
    return (noisy * gain).astype(np.float32), (speech * gain).astype(np.float32)


def collate(batch):
    """Pad to the longest item; lengths keep the padding out of losses and metrics."""
    lengths = torch.tensor([len(y) for y, _ in batch])
    n = int(lengths.max())
    noisy = torch.zeros(len(batch), n)
    clean = torch.zeros(len(batch), n)
    for k, (y, s) in enumerate(batch):
        noisy[k, : len(y)] = torch.from_numpy(y)
        clean[k, : len(s)] = torch.from_numpy(s)
    return noisy, clean, lengths


def build_dataset(cfg: dict, split: str) -> torch.utils.data.Dataset:
    """`split` 'train' or 'valid' from the config: a pair list, or clean + noise sources to mix."""
    sr = cfg["sample_rate"]
    if split == "train":
        crop_samples = int(cfg["crop_seconds"] * sr)
        list_path, clean, noise, items, seed = (
            cfg["train"],
            cfg["clean"],
            cfg["noise"],
            cfg["epoch_items"],
            cfg["seed"],
        )
    else:
        crop_samples = int(cfg["valid_crop_seconds"] * sr) if cfg["valid_crop_seconds"] else None
        list_path, clean, noise, items, seed = (
            cfg["valid"],
            cfg["valid_clean"],
            cfg["valid_noise"],
            cfg["valid_items"],
            cfg["valid_seed"],
        )
    if list_path:
        return PairDataset(list_path, sr, crop_samples, seed)
    if clean and noise:
        rirs = list(audio_files(cfg["rir"])) if cfg.get("rir") else []
        speech, noises = audio_files(clean), audio_files(noise)
        return MixDataset(
            list(speech),
            list(noises),
            sr,
            crop_samples,
            (cfg["snr_min"], cfg["snr_max"]),
            rirs,
            items,
            seed,
            where=speech | noises,
        )
    flag = (
        "--train LIST or --clean and --noise"
        if split == "train"
        else "--valid LIST or --valid-clean and --valid-noise"
    )
    raise MosqaError(f"no {split} data: give {flag}")
