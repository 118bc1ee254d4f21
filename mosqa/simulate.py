"""Build a PESQ-labelled corpus from clean speech (+ noise and RIR folders), the Quality-Net way.

Every clean utterance yields K degraded clips. Clip (utterance i, copy k) is drawn from a
generator seeded with (seed, i, k), so the corpus does not depend on worker count or order.
Each finished clip is appended to OUT/progress.jsonl; a rerun skips what is recorded there, and
the final lists and meta.csv are rewritten atomically from that journal. Torch-free.
"""

import csv
import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np

from mosqa.audio import SAMPLE_RATE, atomic_path, find_audio, is_silent, load_audio, resample, write_audio
from mosqa.defaults import builtin_speech_dir, generated_noises
from mosqa.degrade import SNR_RANGE, Sources, degrade, ffmpeg_codecs, normalise_rir
from mosqa.errors import MosqaError
from mosqa.lists import Item, write_list
from mosqa.metrics import pesq_wb, stoi

JOURNAL = "progress.jsonl"


@dataclass
class Settings:
    """Everything that changes the clips; a rerun into the same folder must match it."""

    clean_dir: str
    noise_dir: str | None
    rir_dir: str | None
    per_utt: int
    seed: int
    snr_range: tuple
    with_stoi: bool
    speaker_map: dict
    codecs: tuple
    voice_perturb: float = 0.0


@dataclass
class Task:
    index: int  # position of the utterance in the sorted clean folder
    k: int
    clean: str
    clean_id: str
    speaker: str

    @property
    def name(self) -> str:
        return f"{self.clean_id}_k{self.k:02d}"


def parse_speaker_map(text: str | None) -> dict:
    """'a=x,b=x' -> {'a': 'x', 'b': 'x'}: folders that are the same person get one speaker id."""
    out = {}
    for pair in filter(None, (p.strip() for p in (text or "").split(","))):
        if "=" not in pair:
            raise MosqaError(f"--speaker-map: expected FOLDER=SPEAKER, got {pair!r}")
        key, value = (s.strip() for s in pair.split("=", 1))
        out[key] = value
    return out


def plan(clean_dir: Path, per_utt: int, seed: int, max_utts: int | None, speaker_map: dict,
         exclude: Path | None = None) -> list[Task]:
    """One Task per (utterance, k); a --max-utts subset is a seeded draw spread over all speakers.

    Files under `exclude` (the output folder, when it lies inside the clean folder) are not clean speech.
    """
    files = find_audio(clean_dir)
    if exclude is not None:
        files = [f for f in files if not f.resolve().is_relative_to(exclude.resolve())]
    if not files:
        raise MosqaError(f"{clean_dir}: no audio files found")
    indices = np.arange(len(files))
    if max_utts is not None and max_utts < len(files):
        indices = np.sort(np.random.default_rng(seed).choice(len(files), max_utts, replace=False))
    tasks = []
    for i in indices.tolist():
        rel = files[i].relative_to(clean_dir)
        folder = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        clean_id = rel.with_suffix("").as_posix().replace("/", "__")
        speaker = speaker_map.get(folder, folder)
        tasks += [Task(i, k, str(files[i]), clean_id, speaker) for k in range(per_utt)]
    return tasks


def load_folder(folder: str | None, transform=None) -> dict:
    if folder is None:
        return {}
    files = find_audio(Path(folder))
    if not files:
        raise MosqaError(f"{folder}: no audio files found")
    out = {}
    for f in files:
        wav = load_audio(f, SAMPLE_RATE)
        if is_silent(wav, -90.0):
            raise MosqaError(f"{f}: silent file in {folder}")
        out[f.relative_to(folder).with_suffix("").as_posix()] = transform(wav) if transform else wav
    return out


def load_sources(s: Settings) -> Sources:
    noises = load_folder(s.noise_dir) or generated_noises(seed=s.seed)
    return Sources(noises, load_folder(s.rir_dir, normalise_rir), tuple(s.codecs), tuple(s.snr_range))


_worker: dict = {}


def _init_worker(settings: Settings, out_dir: str) -> None:
    _worker["settings"] = settings
    _worker["out_dir"] = Path(out_dir)
    _worker["sources"] = load_sources(settings)


def perturb_voice(wav: np.ndarray, rng: np.random.Generator, amount: float) -> tuple[np.ndarray, float]:
    """Play the utterance slower or faster by a factor in [1 - amount, 1 + amount].

    Pitch and formants move together, so a few recorded voices become many: the quality model must
    then learn the degradation rather than the voice. The factor is rounded to 1/160 so the
    polyphase resampler's ratio stays small.
    """
    factor = round(float(rng.uniform(1 - amount, 1 + amount)) * 160) / 160
    return resample(wav, round(SAMPLE_RATE * factor), SAMPLE_RATE), factor


def run_item(task: Task) -> dict:
    """Degrade, label and write one clip. Returns the meta row, or {'skipped': reason}."""
    s, out_dir, sources = _worker["settings"], _worker["out_dir"], _worker["sources"]
    try:
        clean = load_audio(task.clean, SAMPLE_RATE)
    except MosqaError as exc:
        return {"skipped": f"unreadable clean file ({exc})"}
    if is_silent(clean):
        return {"skipped": "silent clean file"}
    rng = np.random.default_rng([s.seed, task.index, task.k])
    # A perturbed voice is a new reference, so it gets its own clean file; unperturbed copies share one.
    clean_name, voice = task.clean_id, {}
    if s.voice_perturb:
        clean, factor = perturb_voice(clean, rng, s.voice_perturb)
        clean_name, voice = task.name, {"voice_speed": factor}
    deg, params = degrade(clean, rng, sources)
    try:
        score = pesq_wb(clean, deg, SAMPLE_RATE)
    except MosqaError as exc:
        return {"skipped": str(exc)}
    clean_path = out_dir / "clean" / f"{clean_name}.wav"
    if not clean_path.exists():  # identical content from any worker, written atomically
        write_audio(clean_path, clean, SAMPLE_RATE)
    wav_path = out_dir / "wav" / f"{task.name}.wav"
    write_audio(wav_path, deg, SAMPLE_RATE)
    row = {"wav": f"wav/{wav_path.name}", "clean": f"clean/{clean_path.name}", "clean_id": task.clean_id,
           "speaker": task.speaker, "k": task.k, **voice, **params, "pesq": round(score, 4)}
    if s.with_stoi:
        row["stoi"] = round(stoi(clean, deg, SAMPLE_RATE), 4)
    return row


def read_journal(path: Path) -> dict:
    """name -> result; a line torn by a crash is ignored (that clip is simply redone)."""
    done = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                done[entry["name"]] = entry["result"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def _check_settings(out_dir: Path, settings: Settings, overwrite: bool) -> None:
    path = out_dir / "simulate.json"
    current = json.loads(json.dumps(asdict(settings)))  # tuples -> lists, as they read back
    # Settings added later default to "off", so older simulations still resume.
    defaults = {f.name: f.default for f in fields(Settings) if f.default is not MISSING}
    stored = defaults | json.loads(path.read_text(encoding="utf-8")) if path.is_file() else current
    if not overwrite and stored != current:
        raise MosqaError(f"{path}: this folder holds a simulation with other settings; "
                         "choose a new --out-dir or pass --overwrite")
    if overwrite:  # only what simulate itself wrote
        (out_dir / JOURNAL).unlink(missing_ok=True)
        for sub in ("wav", "clean"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(current, indent=1) + "\n", encoding="utf-8")


def simulate(clean_dir=None, *, out_dir, noise_dir=None, rir_dir=None, per_utt: int = 4, seed: int = 0,
             max_utts: int | None = None, jobs: int = 1, snr_range=SNR_RANGE, with_stoi: bool = False,
             speaker_map: dict | None = None, overwrite: bool = False, use_codecs: bool = True,
             voice_perturb: float = 0.0, progress=None) -> dict:
    """Run (or resume) a simulation; returns a summary dict. `progress(done, total)` is called per clip."""
    clean_dir = Path(clean_dir) if clean_dir is not None else builtin_speech_dir()
    if not clean_dir.is_dir():
        raise MosqaError(f"{clean_dir}: clean speech folder not found")
    for name, folder in (("--noise-dir", noise_dir), ("--rir-dir", rir_dir)):
        if folder is not None and not Path(folder).is_dir():
            raise MosqaError(f"{folder}: {name} folder not found")
    if per_utt < 1:
        raise MosqaError(f"--per-utt must be >= 1, got {per_utt}")
    if not 0.0 <= voice_perturb < 0.5:
        raise MosqaError(f"--voice-perturb must be in [0, 0.5), got {voice_perturb}")
    if not snr_range[0] < snr_range[1]:
        raise MosqaError(f"--snr-range: low must be below high, got {snr_range}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(str(clean_dir.resolve()), noise_dir and str(Path(noise_dir).resolve()),
                        rir_dir and str(Path(rir_dir).resolve()), per_utt, seed, tuple(snr_range), with_stoi,
                        dict(speaker_map or {}), ffmpeg_codecs() if use_codecs else (), voice_perturb)
    _check_settings(out_dir, settings, overwrite)
    tasks = plan(clean_dir, per_utt, seed, max_utts, settings.speaker_map, exclude=out_dir)
    journal_path = out_dir / JOURNAL
    done = read_journal(journal_path)
    todo = [t for t in tasks if t.name not in done or ("skipped" not in done[t.name] and not all(
        (out_dir / done[t.name][key]).is_file() for key in ("wav", "clean")))]
    start = time.perf_counter()
    finished = len(tasks) - len(todo)
    with open(journal_path, "a", encoding="utf-8") as journal:
        if journal.tell() and not journal_path.read_bytes().endswith(b"\n"):
            journal.write("\n")  # end a line torn by a crash, so the next record starts clean
        for task, result in _results(todo, jobs, settings, out_dir):
            done[task.name] = result
            journal.write(json.dumps({"name": task.name, "result": result}) + "\n")
            journal.flush()
            finished += 1
            if progress:
                progress(finished, len(tasks))
    seconds = time.perf_counter() - start
    return _finish(out_dir, tasks, done, len(todo), seconds, settings)


def _results(todo: list[Task], jobs: int, settings: Settings, out_dir: Path):
    """(task, result) as clips finish: in this process for one job, else from a process pool."""
    if jobs <= 1:
        _init_worker(settings, str(out_dir))
        for task in todo:
            yield task, run_item(task)
        return
    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(settings, str(out_dir))) as pool:
        futures = {pool.submit(run_item, t): t for t in todo}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        except BaseException:  # Ctrl-C or a failure: do not work through the whole queue first
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _finish(out_dir: Path, tasks: list[Task], done: dict, n_new: int, seconds: float,
            settings: Settings) -> dict:
    """Rewrite all.list, pairs.list, meta.csv (task order, so reruns give identical files) and summarise."""
    rows = [done[t.name] for t in tasks if "skipped" not in done[t.name]]
    skipped: dict = {}
    for t in tasks:
        if "skipped" in done[t.name]:
            skipped[done[t.name]["skipped"]] = skipped.get(done[t.name]["skipped"], 0) + 1
    if not rows:
        raise MosqaError(f"{out_dir}: no clip could be labelled ({skipped})")
    items = [Item(out_dir / r["wav"], float(r["pesq"]), clean=out_dir / r["clean"]) for r in rows]
    write_list(out_dir / "all.list", items, with_clean=False)
    write_list(out_dir / "pairs.list", items, with_clean=True)
    fixed = ["wav", "clean", "clean_id", "speaker", "k", "degradations"]
    labels = ["pesq", "stoi"] if settings.with_stoi else ["pesq"]
    params = sorted({key for r in rows for key in r} - set(fixed) - set(labels))
    with atomic_path(out_dir / "meta.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fixed + params + labels, restval="")
        writer.writeheader()
        writer.writerows(rows)
    scores = np.array([r["pesq"] for r in rows])
    return {"clips": len(rows), "new_clips": n_new, "skipped": skipped, "seconds": seconds,
            "clips_per_second": n_new / seconds if seconds > 0 and n_new else None,
            "pesq": scores, "codecs": list(settings.codecs), "out_dir": str(out_dir)}
