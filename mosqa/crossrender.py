"""Fixed quality-model sets degraded by someone else's code: audiomentations instead of mosqa.degrade.

Why: a validation set rendered by the simulator that made the training shards rewards a head for
learning how that simulator renders. Issue 30 measured it: 15x more shards gained +0.01 on the
campaign's own sets and lost 0.07-0.11 on recordings from other pipelines. These sets take the same
held-out voices, noise files and rooms as the campaign's fixed sets but degrade them with audiomentations
(MIT, a well-kept augmentation library) and its own level conventions, so a head that rises here has
learned quality rather than our rendering. Labels stay wideband PESQ against the clean reference.

Each clip draws 1-3 transforms of TRANSFORMS (audiomentations' own parameter draws), or stays clean with
probability CLEAN_SHARE. Clip (utterance i, copy k) is drawn from (seed, i, k), so a set is the same on
every machine and with any number of jobs. audiomentations is an optional extra (`pip install
'mosqa[campaign]'`); nothing else in mosqa imports it.
"""

import csv
import json
import multiprocessing
import random
from pathlib import Path

import numpy as np

from mosqa.audio import SAMPLE_RATE, atomic_path, audio_problem, find_audio, load_audio, write_audio
from mosqa.errors import MosqaError
from mosqa.metrics import pesq_wb_or_nan

CLEAN_SHARE = 0.06
MAX_TRANSFORMS = 3
COLUMNS = ("wav", "clean", "speaker", "k", "degradations", "pesq")
JOURNAL = "progress.jsonl"


def _audiomentations():
    try:
        import audiomentations
    except ImportError:
        raise MosqaError("the cross-renderer sets need audiomentations: "
                         "pip install 'mosqa[campaign]'") from None
    return audiomentations


# name -> factory(A, noises, rooms) -> one transform applied always (p=1); the clip's draw picks which.
# Ranges reach from barely audible to severe, as the campaign's own kinds do; the levels are the
# library's conventions (its SNR over the whole clip, its percentile clipping, its bit rates).
TRANSFORMS = {
    "background_noise": lambda A, noises, rooms: A.AddBackgroundNoise(noises, min_snr_db=0.0, max_snr_db=40.0,
                                                                       p=1.0),
    "colour_noise": lambda A, noises, rooms: A.AddColorNoise(min_snr_db=5.0, max_snr_db=50.0, p=1.0),
    "room": lambda A, noises, rooms: A.ApplyImpulseResponse(rooms, p=1.0),
    "clipping": lambda A, noises, rooms: A.ClippingDistortion(min_percentile_threshold=1,
                                                              max_percentile_threshold=40, p=1.0),
    "tanh_distortion": lambda A, noises, rooms: A.TanhDistortion(min_distortion=0.01, max_distortion=0.5,
                                                                 p=1.0),
    "mp3": lambda A, noises, rooms: A.Mp3Compression(min_bitrate=8, max_bitrate=48, backend="lameenc",
                                                             preserve_delay=True, p=1.0),
    "low_pass": lambda A, noises, rooms: A.LowPassFilter(min_cutoff_freq=500.0, max_cutoff_freq=6000.0,
                                                         min_rolloff=12, max_rolloff=48, p=1.0),
    "band_pass": lambda A, noises, rooms: A.BandPassFilter(min_center_freq=800.0, max_center_freq=2000.0,
                                                           min_bandwidth_fraction=0.8,
                                                           max_bandwidth_fraction=1.8, p=1.0),
    "eq": lambda A, noises, rooms: A.SevenBandParametricEQ(min_gain_db=-12.0, max_gain_db=12.0, p=1.0),
    "gain_transition": lambda A, noises, rooms: A.GainTransition(min_gain_db=-30.0, max_gain_db=6.0, p=1.0),
    "time_mask": lambda A, noises, rooms: A.TimeMask(min_band_part=0.02, max_band_part=0.2, p=1.0),
    "aliasing": lambda A, noises, rooms: A.Aliasing(min_sample_rate=4000, max_sample_rate=15000, p=1.0),
    "bit_crush": lambda A, noises, rooms: A.BitCrush(min_bit_depth=5, max_bit_depth=14, p=1.0),
}


def plan(speech_dir, per_utt: int) -> list[tuple[int, int, Path, str]]:
    """(utterance index, copy, clean file, speaker) for every clip; the first folder level is the speaker."""
    speech_dir = Path(speech_dir)
    files = find_audio(speech_dir)
    if not files:
        raise MosqaError(f"{speech_dir}: no audio files")
    return [(i, k, f, f.relative_to(speech_dir).parts[0])
            for i, f in enumerate(files) for k in range(per_utt)]


_worker: dict = {}


def make_transforms(noises: list[str], rooms: list[str]) -> dict:
    A = _audiomentations()
    return {name: make(A, noises, rooms) for name, make in TRANSFORMS.items()}


def _init_worker(noises: list[str], rooms: list[str], seed: int, out_dir: str) -> None:
    _worker.update(transforms=make_transforms(noises, rooms), seed=seed, out_dir=Path(out_dir))


def _render(item: tuple[int, int, Path, str]) -> dict:
    """Degrade, label and write one clip; its meta row, or {'skipped': reason}."""
    i, k, path, speaker = item
    out_dir, transforms = _worker["out_dir"], _worker["transforms"]
    clean = load_audio(path, SAMPLE_RATE)
    rng = np.random.default_rng([_worker["seed"], i, k])
    names = []
    if rng.random() >= CLEAN_SHARE:
        count = int(rng.integers(1, MAX_TRANSFORMS + 1))
        names = sorted(rng.choice(list(transforms), size=count, replace=False).tolist(),
                       key=list(transforms).index)
    # audiomentations draws its parameters from the global generators: seed them from the clip's own
    random.seed(int(rng.integers(2 ** 31)))
    np.random.seed(int(rng.integers(2 ** 31)))
    deg = clean
    for name in names:
        deg = transforms[name](samples=deg.astype(np.float32), sample_rate=SAMPLE_RATE)
    deg = np.asarray(deg, dtype=np.float32)[: len(clean)]
    deg = np.pad(deg, (0, len(clean) - len(deg)))
    problem = audio_problem(deg, SAMPLE_RATE)
    score = pesq_wb_or_nan(clean, deg) if problem is None else float("nan")
    if not np.isfinite(score):
        return {"skipped": f"{path.name} copy {k}: {problem or 'PESQ refused the pair'}"}
    name = f"{speaker}_{path.stem}_x{k}"
    # float samples: a transform that overshoots full scale keeps its waveform, as a recording chain would
    write_audio(out_dir / "wav" / f"{name}.wav", deg, SAMPLE_RATE, subtype="FLOAT")
    clean_path = out_dir / "clean" / f"{speaker}_{path.stem}.wav"
    if not clean_path.exists():
        write_audio(clean_path, clean, SAMPLE_RATE, subtype="FLOAT")
    return {"wav": f"wav/{name}.wav", "clean": f"clean/{clean_path.name}", "speaker": speaker, "k": k,
            "degradations": "+".join(names) or "clean", "pesq": round(score, 4)}


def read_list(path) -> list[str]:
    """A simulate-style list of files (one path a line, relative to the list; # comments)."""
    path = Path(path)
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [str((path.parent / line).resolve()) for line in lines if line]


def render_set(speech_dir, noise_list, rir_list, out_dir, per_utt: int, seed: int, jobs: int = 1) -> Path:
    """Write OUT/wav, OUT/clean, OUT/all.list (wav,score) and OUT/meta.csv (campaign.read_set reads it).
    Each clip's row is journalled as it is made, so a cut run resumes where it stopped; meta.csv is
    written last, so a folder with meta.csv is whole, and such a set is kept as it is."""
    out_dir = Path(out_dir)
    meta = out_dir / "meta.csv"
    if meta.is_file():
        return out_dir
    noises, rooms = read_list(noise_list), read_list(rir_list)
    if not noises or not rooms:
        raise MosqaError(f"{noise_list if not noises else rir_list}: no files listed")
    make_transforms(noises, rooms)  # here, once: a pool whose workers fail to start never returns
    items = plan(speech_dir, per_utt)
    (out_dir / "wav").mkdir(parents=True, exist_ok=True)
    (out_dir / "clean").mkdir(exist_ok=True)
    journal = out_dir / JOURNAL
    done = {}
    if journal.is_file():  # a line torn by a crash is simply redone
        for line in journal.read_text().splitlines():
            try:
                entry = json.loads(line)
                done[(entry["i"], entry["k"])] = entry["row"]
            except (ValueError, KeyError, TypeError):
                continue
    todo = [item for item in items if (item[0], item[1]) not in done]
    if todo:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(max(1, jobs), _init_worker, (noises, rooms, seed, str(out_dir))) as pool, \
                open(journal, "a") as log:
            for item, row in zip(todo, pool.imap(_render, todo, chunksize=4), strict=True):
                done[(item[0], item[1])] = row
                log.write(json.dumps({"i": item[0], "k": item[1], "row": row}) + "\n")
                log.flush()
    results = [done[(i, k)] for i, k, _, _ in items]
    rows = [r for r in results if "skipped" not in r]
    if not rows:
        raise MosqaError(f"{out_dir}: every clip was skipped ({results[0]['skipped']})")
    with atomic_path(out_dir / "all.list") as tmp:  # `mosqa predict --list` reads it, as simulate's
        Path(tmp).write_text("".join(f"{r['wav']},{r['pesq']}\n" for r in rows))
    with atomic_path(meta) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out_dir
