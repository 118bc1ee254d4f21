"""Training data for quality models: features computed once and cached on disk, length-bucketed batches.

A list's features are stored as one float16 file named by the front-end settings and every clip's
path, mtime and size, so changing a setting or touching a file recomputes it, and a CPU epoch only
reads arrays. Batches group clips of similar length (less padding), in an order drawn from a
generator keyed by seed and epoch, so a resumed run sees exactly the batches it would have seen.
"""

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mosqa.audio import atomic_path, load_checked
from mosqa.errors import MosqaError
from mosqa.frontend import FrontEnd, features
from mosqa.lists import Item


def cache_path(cache_dir, fe: FrontEnd, items: list[Item], tag: str = "list") -> Path:
    """The cache file for these items under these front-end settings."""
    h = hashlib.sha1(fe.key().encode())
    for it in items:
        try:
            st = Path(it.path).stat()
        except OSError:
            raise MosqaError(f"{it.where or it.path}: no such audio file {it.path}") from None
        h.update(f"{Path(it.path).absolute()}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return Path(cache_dir) / f"{tag}_{h.hexdigest()[:20]}.npz"


def clip_features(path, fe: FrontEnd, where: str = "") -> np.ndarray:
    """(frames, n_bins) float32 features of one file, exactly as the model sees them at inference.

    The clip must pass audio.load_checked, the check prepare-list makes: a clip prepare-list would
    drop is never trained on or scored.
    """
    wav = torch.from_numpy(load_checked(path, fe.sample_rate, where))
    with torch.no_grad():
        return features(wav[None], fe)[0].numpy()


def load_features(items: list[Item], fe: FrontEnd, cache_dir, tag: str = "list", progress=None):
    """(features float16 (sum of frames, n_bins), offsets (N+1,)); computed on first use, then read."""
    path = cache_path(cache_dir, fe, items, tag)
    if path.is_file():
        with np.load(path) as z:
            return z["feats"], z["offsets"]
    chunks = []
    task = progress.add_task(f"features {tag}", total=len(items)) if progress is not None else None
    for it in items:
        f = clip_features(it.path, fe, it.where)
        if not np.all(np.isfinite(f)):
            raise MosqaError(f"{it.where or it.path}: features of {it.path} are not finite")
        chunks.append(f.astype(np.float16))
        if task is not None:
            progress.advance(task)
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(c) for c in chunks])
    feats = np.concatenate(chunks)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, feats=feats, offsets=offsets)
    return feats, offsets


class FeatureSet(Dataset):
    """Cached features with their scores; item i -> (features (T, F) float32, score, i)."""

    def __init__(self, feats: np.ndarray, offsets: np.ndarray, scores):
        self.feats, self.offsets = feats, offsets
        self.scores = np.asarray(scores, dtype=np.float32)
        self.lengths = np.diff(offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.feats[self.offsets[i] : self.offsets[i + 1]].astype(np.float32))
        return x, float(self.scores[i]), i


def collate(batch):
    """Zero-pad to the longest clip: x (B, T, F), lengths (B,), scores (B,), indices (B,)."""
    xs, scores, idx = zip(*batch, strict=True)
    lengths = torch.tensor([len(x) for x in xs])
    out = xs[0].new_zeros(len(xs), int(lengths.max()), xs[0].shape[-1])
    for b, x in enumerate(xs):
        out[b, : len(x)] = x
    return out, lengths, torch.tensor(scores, dtype=torch.float32), torch.tensor(idx)


class BucketBatchSampler(Sampler):
    """Batches of similar-length clips.

    Shuffled: a random permutation is cut into chunks of `bucket_batches` batches, each chunk is
    sorted by length and cut into batches, and the batch order is shuffled. Under DDP each rank takes
    every world_size-th batch; the batch list is padded by wrapping so all ranks step equally often.
    Not shuffled (evaluation): batches in length order, no padding, so every clip is seen once.
    """

    def __init__(
        self,
        lengths,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        bucket_batches: int = 20,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise MosqaError(f"batch size must be >= 1, got {batch_size}")
        self.lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket_batches, self.rank, self.world_size = max(1, bucket_batches), rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = torch.argsort(self.lengths, stable=True).tolist()
            return [order[i : i + bs] for i in range(0, n, bs)]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(n, generator=g)
        chunk = bs * self.bucket_batches
        batches = []
        for start in range(0, n, chunk):
            part = perm[start : start + chunk]
            part = part[torch.argsort(self.lengths[part], stable=True)].tolist()
            batches += [part[i : i + bs] for i in range(0, len(part), bs)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        if self.world_size > 1 and len(batches) % self.world_size:
            short = self.world_size - len(batches) % self.world_size
            batches += (batches * short)[:short]
        return batches

    def __iter__(self):
        yield from self._all_batches()[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self._all_batches()[self.rank :: self.world_size])
