"""Build a PESQ-labelled corpus from clean speech (+ noise, RIR and music folders or lists; babble
from the clean set's other speakers), the Quality-Net way.

Every clean utterance yields K degraded clips. Clip (utterance i, copy k) is drawn from a
generator seeded with (seed, i, k), so the corpus does not depend on worker count or order.
A worker takes one utterance at a time (its file is read once for all K copies). Each finished clip
is appended to OUT/progress.jsonl; a rerun skips what is recorded there, and the final lists,
meta.csv, the label histogram and the per-impairment coverage report are rewritten atomically from
that journal. A clip is written only if prepare-list would accept it. Torch-free.
"""

import ctypes
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import MISSING, asdict, dataclass, fields, replace
from itertools import groupby
from pathlib import Path

import numpy as np

from mosqa.audio import (
    SAMPLE_RATE,
    SILENCE_DB,
    atomic_csv,
    atomic_path,
    find_audio,
    is_silent,
    load_audio,
    load_checked,
    resample,
    write_audio,
)
from mosqa.checks import check_options, made_folder, not_an_input
from mosqa.codecs import select_codecs
from mosqa.defaults import builtin_speech_dir, generated_noises
from mosqa.degrade import CLEAN, COLUMNS, DEGRADATIONS, Sources, degrade, normalise_rir
from mosqa.errors import MosqaError
from mosqa.lists import Item, audio_files, write_list
from mosqa.metrics import pesq_wb, stoi
from mosqa.plots import coverage_png, histogram_png
from mosqa.prepare import MAX_SECONDS, histogram
from mosqa.ranges import Ranges, check_ranges, ranges_from_dict
from mosqa.recording import COLUMNS as CHAIN_COLUMNS
from mosqa.recording import recorded
from mosqa.workers import die_with_parent

JOURNAL = "progress.jsonl"
LABEL_EDGES = np.round(np.arange(1.0, 5.0001, 0.25), 2)
COVERAGE_EDGES = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)


@dataclass
class Settings:
    """Everything that changes the clips; a rerun into the same folder must match it."""

    clean_dir: str
    noise_dir: str | None
    rir_dir: str | None
    per_utt: int
    seed: int
    ranges: dict
    with_stoi: bool
    speaker_map: dict
    codecs: tuple
    voice_perturb: float = 0.0
    music_dir: str | None = None
    babble: bool = False


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


def clean_files(clean_dir: Path, speaker_map: dict, exclude: Path | None = None) -> list[tuple[Path, str]]:
    """(file, speaker) for every clean utterance, sorted: what plan and babble draw from.

    Files under `exclude` (the output folder, when it lies inside the clean folder) are not clean speech.
    """
    files = find_audio(clean_dir)
    if exclude is not None and exclude.resolve().is_relative_to(clean_dir.resolve()):
        files = [f for f in files if not f.resolve().is_relative_to(exclude.resolve())]
    if not files:
        raise MosqaError(f"{clean_dir}: no audio files found")
    out = []
    for f in files:
        rel = f.relative_to(clean_dir)
        folder = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        out.append((f, speaker_map.get(folder, folder)))
    return out


def plan(clean_dir: Path, per_utt: int, seed: int, max_utts: int | None, speaker_map: dict,
         exclude: Path | None = None) -> list[Task]:
    """One Task per (utterance, k); a --max-utts subset is a seeded draw spread over all speakers."""
    files = clean_files(clean_dir, speaker_map, exclude)
    indices = np.arange(len(files))
    if max_utts is not None and max_utts < len(files):
        indices = np.sort(np.random.default_rng(seed).choice(len(files), max_utts, replace=False))
    tasks = []
    for i in indices.tolist():
        path, speaker = files[i]
        clean_id = path.relative_to(clean_dir).with_suffix("").as_posix().replace("/", "__")
        tasks += [Task(i, k, str(path), clean_id, speaker) for k in range(per_utt)]
    return tasks


def talkers(files: list[tuple[Path, str]]) -> dict:
    """speaker -> their clean files (paths only: babble and a talker read the few they draw when drawn).

    The whole clean folder, not the --max-utts subset, so a subset's clips get the same babble as they
    would in the full run.
    """
    out: dict = {}
    for path, speaker in files:
        out.setdefault(speaker, []).append(str(path))
    return {speaker: tuple(paths) for speaker, paths in out.items()}


def load_source(source: str | None, transform=None) -> dict:
    """A folder (recursive) or a list file of recordings -> name -> 16 kHz audio; a bad file is named by
    its `list:line`. A list lets a campaign hold whole noise files or rooms out of a set.

    Names are paths relative to the folder, or for a list to the folder all its files share, without
    the suffix: short in meta.csv, and the same for a file whether it comes from a folder or a list.
    """
    if source is None:
        return {}
    files = audio_files(source)
    base = Path(source) if Path(source).is_dir() else Path(os.path.commonpath([f.parent for f in files]))
    out = {}
    for f, where in files.items():
        try:
            wav = load_audio(f, SAMPLE_RATE)
            if is_silent(wav, -90.0):
                raise MosqaError(f"{f}: silent file in {source}")
        except MosqaError as exc:
            raise MosqaError(f"{where}: {exc}" if where else str(exc)) from None
        out[f.relative_to(base).with_suffix("").as_posix()] = transform(wav) if transform else wav
    return out


def load_sources(s: Settings, files: list[tuple[Path, str]]) -> Sources:
    """Noises, RIRs and music in memory (loaded once, shared by the workers); the talkers of babble and
    of a competing talker as paths."""
    noises = load_source(s.noise_dir) or generated_noises(seed=s.seed)
    return Sources(noises, load_source(s.rir_dir, normalise_rir), tuple(s.codecs), ranges_from_dict(s.ranges),
                   music=load_source(s.music_dir), talkers=talkers(files), babble=s.babble)


_worker: dict = {}


def _keep_freed_memory() -> None:
    """Stop glibc from handing PESQ's large per-call buffers back to the OS after every clip.

    The ITU code allocates and frees several megabytes per call; above glibc's mmap threshold each
    one is a fresh mapping whose pages fault in again, about 7 % of PESQ's time. Elsewhere a no-op.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 256 << 20)
    libc.mallopt(m_trim_threshold, 512 << 20)


def _init_worker(settings: Settings, out_dir: str, sources: Sources) -> None:
    die_with_parent()
    _worker.update(settings=settings, out_dir=Path(out_dir), sources=sources)
    _keep_freed_memory()


def perturb_voice(wav: np.ndarray, rng: np.random.Generator, amount: float) -> tuple[np.ndarray, float]:
    """Play the utterance slower or faster by a factor in [1 - amount, 1 + amount].

    Pitch and formants move together, so a few recorded voices become many: the quality model must
    then learn the degradation rather than the voice. The factor is rounded to 1/160 so the
    polyphase resampler's ratio stays small.
    """
    factor = round(float(rng.uniform(1 - amount, 1 + amount)) * 160) / 160
    return resample(wav, round(SAMPLE_RATE * factor), SAMPLE_RATE), factor


def write_accepted(path: Path, wav: np.ndarray) -> str | None:
    """Write `path`, then take it back if prepare-list would refuse the file as written (16-bit): the reason.

    The decision is prepare-list's own check (audio.load_checked) on the very file, so the two never
    disagree.
    """
    write_audio(path, wav, SAMPLE_RATE)
    try:  # prepare-list's defaults: --min-dur, --max-dur, --silence-db
        load_checked(path, None, max_seconds=MAX_SECONDS)
    except MosqaError as exc:
        path.unlink()
        return str(exc).removeprefix(f"{path}: ")
    return None


def utterance_clips(tasks: list[Task]):
    """(task, meta row or skip) for the pending copies of one clean utterance, its file read once."""
    try:
        clean = load_audio(tasks[0].clean, SAMPLE_RATE)
    except MosqaError as exc:
        yield from ((t, {"skipped": f"unreadable clean file ({exc})"}) for t in tasks)
        return
    for task in tasks:
        yield task, run_item(task, clean)


def run_utterance(tasks: list[Task]) -> list[tuple[Task, dict]]:
    """utterance_clips as one result, the unit of work a pool worker sends back."""
    return list(utterance_clips(tasks))


def run_item(task: Task, clean: np.ndarray) -> dict:
    """Degrade, label and write one clip. Returns the meta row, or {'skipped': reason}."""
    s, out_dir, sources = _worker["settings"], _worker["out_dir"], _worker["sources"]
    if is_silent(clean):
        return {"skipped": f"silent clean file (below {SILENCE_DB:g} dBFS)"}
    rng = np.random.default_rng([s.seed, task.index, task.k])
    # A perturbed voice or a recording chain is a new reference, so it gets its own clean file; copies
    # with neither share one.
    clean_name, voice = task.clean_id, {}
    if s.voice_perturb:
        clean, factor = perturb_voice(clean, rng, s.voice_perturb)
        clean_name, voice = task.name, {"voice_speed": factor}
    clean, chain = recorded(clean, (s.seed, task.index, task.k), sources.ranges)  # never draws from rng
    if chain:
        clean_name = task.name
    try:  # a babble talker that cannot be read, or PESQ refusing the pair, costs this clip only
        deg, params = degrade(clean, rng, replace(sources, speaker=task.speaker))
        score = pesq_wb(clean, deg, SAMPLE_RATE)
    except MosqaError as exc:
        return {"skipped": str(exc)}
    clean_path = out_dir / "clean" / f"{clean_name}.wav"
    if not clean_path.exists():
        reason = write_accepted(clean_path, clean)
        if reason is not None:
            return {"skipped": f"clean reference refused: {reason}"}
    wav_path = out_dir / "wav" / f"{task.name}.wav"
    reason = write_accepted(wav_path, deg)
    if reason is not None:
        return {"skipped": f"degraded clip refused: {reason}"}
    row = {"wav": f"wav/{wav_path.name}", "clean": f"clean/{clean_path.name}", "clean_id": task.clean_id,
           "speaker": task.speaker, "k": task.k, **voice, **chain, **params, "pesq": round(score, 4)}
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
    # So do ranges added later: such a folder has no clean clips, call impairments or recording chains, and
    # no music or babble or echo to range over.
    stored["ranges"] = current["ranges"] | {"clean_share": 0.0, "call_share": 0.0, "recording_chain": 0.0,
                                            "fault_share": 0.0} \
        | stored["ranges"]
    if not overwrite and stored != current:
        raise MosqaError(f"{path}: this folder holds a simulation with other settings; "
                         "choose a new --out-dir or pass --overwrite")
    if overwrite:  # only what simulate itself wrote
        (out_dir / JOURNAL).unlink(missing_ok=True)
        for sub in ("wav", "clean"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(current, indent=1) + "\n", encoding="utf-8")


def simulate(clean_dir=None, *, out_dir, noise_dir=None, rir_dir=None, music_dir=None, babble: bool = True,
             per_utt: int = 4, seed: int = 0, max_utts: int | None = None, jobs: int = 1,
             ranges: Ranges | None = None, with_stoi: bool = False, speaker_map: dict | None = None,
             overwrite: bool = False, codecs: str = "in-process",
             voice_perturb: float = 0.0, progress=None) -> dict:
    """Run (or resume) a simulation and write its reports; returns the summary (also OUT/summary.json).

    `noise_dir`, `rir_dir`, `music_dir`: a folder or a list file of recordings. `babble`: draw babble
    when the clean folder has enough speakers (degrade.BABBLE_MIN_SPEAKERS).
    `codecs`: "in-process" (PyAV's, the default), "all" (also those only the ffmpeg program has, each
    use paying a process start), "none" (numpy mu-law only) or NAME,NAME,...

    `progress(done, total)` is called per clip.
    """
    ranges = ranges or Ranges()
    check_options({"per_utt": per_utt, "max_utts": max_utts, "jobs": jobs, "voice_perturb": voice_perturb})
    check_ranges(ranges)
    clean_dir = Path(clean_dir) if clean_dir is not None else builtin_speech_dir()
    if not clean_dir.is_dir():
        raise MosqaError(f"{clean_dir}: clean speech folder not found")
    for name, source in (("--noise-dir", noise_dir), ("--rir-dir", rir_dir), ("--music-dir", music_dir)):
        if source is not None and not Path(source).exists():
            raise MosqaError(f"{source}: {name} folder or list file not found")
    out_dir = Path(out_dir)
    existing = next(f for f in (out_dir.absolute(), *out_dir.absolute().parents) if f.exists())
    if not existing.is_dir():
        raise MosqaError(f"--out-dir {out_dir}: {existing} is a file, not a folder")
    # A folder inside the clean one is fine (plan() leaves it out); the clean folder itself is not.
    not_an_input([out_dir], [f for f in (clean_dir, noise_dir, rir_dir, music_dir) if f is not None])
    settings = Settings(str(clean_dir.resolve()), _resolved(noise_dir), _resolved(rir_dir), per_utt, seed,
                        json.loads(json.dumps(asdict(ranges))), with_stoi, dict(speaker_map or {}),
                        select_codecs(codecs), voice_perturb, _resolved(music_dir), babble)
    # Every input is found and read before anything is written: a bad file leaves no output behind.
    files = clean_files(clean_dir, settings.speaker_map, exclude=out_dir)
    tasks = plan(clean_dir, per_utt, seed, max_utts, settings.speaker_map, exclude=out_dir)
    start = time.perf_counter()  # loading noises and RIRs counts: every run pays for it
    sources = load_sources(settings, files)
    journal_path = out_dir / JOURNAL
    # A run that fails before its first clip leaves no folder behind (a full disk, a bad codec); one that
    # fails later keeps its clips for a rerun to resume.
    with made_folder(out_dir, keep=lambda: bool(read_journal(journal_path))):
        _check_settings(out_dir, settings, overwrite)
        done = read_journal(journal_path)
        todo = [t for t in tasks if t.name not in done or ("skipped" not in done[t.name] and not all(
            (out_dir / done[t.name][key]).is_file() for key in ("wav", "clean")))]
        finished = len(tasks) - len(todo)
        with open(journal_path, "a", encoding="utf-8") as journal:
            if journal.tell() and not journal_path.read_bytes().endswith(b"\n"):
                journal.write("\n")  # end a line torn by a crash, so the next record starts clean
            for task, result in _results(todo, jobs, settings, out_dir, sources):
                done[task.name] = result
                journal.write(json.dumps({"name": task.name, "result": result}) + "\n")
                journal.flush()
                finished += 1
                if progress:
                    progress(finished, len(tasks))
    seconds = time.perf_counter() - start
    return _finish(out_dir, tasks, done, len(todo), seconds, settings)


def _resolved(source) -> str | None:
    """An absolute path for simulate.json, so a resumed run from another folder still matches."""
    return source and str(Path(source).resolve())


def _results(todo: list[Task], jobs: int, settings: Settings, out_dir: Path, sources: Sources):
    """(task, result) as clips finish: in this process for one job, else from a process pool.

    The pool's workers are forked where the platform allows, so they share the noises and RIRs
    loaded once here instead of each decoding them again.
    """
    utterances = [list(group) for _, group in groupby(todo, key=lambda t: t.index)]
    if jobs <= 1 or len(utterances) <= 1:  # a finished run (nothing to do) or one utterance: no pool
        _init_worker(settings, str(out_dir), sources)
        for group in utterances:
            yield from utterance_clips(group)  # clip by clip, so an interrupt loses at most one
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(min(jobs, len(utterances)), mp_context=context, initializer=_init_worker,
                             initargs=(settings, str(out_dir), sources)) as pool:
        futures = [pool.submit(run_utterance, group) for group in utterances]
        try:
            for fut in as_completed(futures):
                yield from fut.result()
        except BaseException:  # Ctrl-C or a failure: do not work through the whole queue first
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _finish(out_dir: Path, tasks: list[Task], done: dict, n_new: int, seconds: float,
            settings: Settings) -> dict:
    """Rewrite the lists, meta.csv, skipped.csv, the label histogram and the coverage report (task order,
    so reruns give identical files) and return the summary, also written to summary.json."""
    rows = [done[t.name] for t in tasks if "skipped" not in done[t.name]]
    skipped = [{"clip": t.name, "source": t.clean, "reason": done[t.name]["skipped"]}
               for t in tasks if "skipped" in done[t.name]]
    if not rows:
        reasons = sorted({f"{Path(s['source']).name}: {s['reason']}" for s in skipped})
        raise MosqaError(f"{out_dir}: no clip could be labelled ({'; '.join(reasons[:3])}"
                         + (f"; {len(reasons) - 3} more" if len(reasons) > 3 else "") + ")")
    items = [Item(out_dir / r["wav"], float(r["pesq"]), clean=out_dir / r["clean"]) for r in rows]
    write_list(out_dir / "all.list", items, with_clean=False)
    write_list(out_dir / "pairs.list", items, with_clean=True)
    fixed = ["wav", "clean", "clean_id", "speaker", "k", "degradations"]
    labels = ["pesq", "stoi"] if settings.with_stoi else ["pesq"]
    # Every kind's and chain stage's columns, drawn or not, so shards of one campaign share a header; plus
    # any others the rows carry (voice_speed).
    declared = {c for columns in (*COLUMNS.values(), *CHAIN_COLUMNS.values()) for c in columns}
    params = sorted((declared | {key for r in rows for key in r}) - set(fixed) - set(labels))
    _write_csv(out_dir / "meta.csv", fixed + params + labels, rows)
    _write_csv(out_dir / "skipped.csv", ["clip", "source", "reason"], skipped)
    scores = np.array([r["pesq"] for r in rows])
    histogram_png(out_dir / "pesq_hist.png", {"PESQ-WB": scores}, LABEL_EDGES)
    by_kind = kind_scores(rows)
    cover = coverage(rows, by_kind)
    _write_csv(out_dir / "coverage.csv", list(cover[0]), cover)
    coverage_png(out_dir / "coverage.png", by_kind, LABEL_EDGES)
    summary = {"clips": len(rows), "new_clips": n_new, "skipped": skipped, "seconds": seconds,
               "clips_per_second": n_new / seconds if seconds > 0 and n_new else None,
               "pesq_mean": float(np.mean(scores)), "pesq_std": float(np.std(scores)),
               "pesq_min": float(np.min(scores)), "pesq_max": float(np.max(scores)),
               "pesq_hist": {"edges": LABEL_EDGES.tolist(), "counts": histogram(scores, LABEL_EDGES)},
               "coverage": cover, "codecs": list(settings.codecs), "ranges": settings.ranges,
               "sources": {"noise": settings.noise_dir, "rir": settings.rir_dir, "music": settings.music_dir,
                           "babble": settings.babble},
               "out_dir": str(out_dir)}
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def _write_csv(path: Path, columns: list, rows: list) -> None:
    with atomic_csv(path, columns, restval="") as writer:
        writer.writeheader()
        writer.writerows(rows)


def _kinds(row: dict) -> list[str]:
    """The coverage rows a clip counts in: each of its degradations (or 'clean'), and 'combined' for
    2-3 at once."""
    names = row["degradations"].split("+")
    return names + (["combined"] if len(names) > 1 else [])


def kind_scores(rows: list) -> dict:
    """Impairment kind -> the labels of the clips that carry it (alone or with others)."""
    kinds = [CLEAN, *DEGRADATIONS, "combined"]
    return {kind: np.array([r["pesq"] for r in rows if kind in _kinds(r)]) for kind in kinds}


def coverage(rows: list, by_kind: dict) -> list[dict]:
    """Per impairment kind: how many clips carry it (and alone), label quantiles, and counts per
    half-point label bin, so a user sees which kinds reach which part of the scale."""
    out = []
    for kind, scores in by_kind.items():
        alone = sum(1 for r in rows if r["degradations"] == kind) if kind != "combined" else ""
        stats = np.percentile(scores, [0, 10, 50, 90, 100]).round(2).tolist() if scores.size else [""] * 5
        bins = zip(COVERAGE_EDGES[:-1], COVERAGE_EDGES[1:], histogram(scores, COVERAGE_EDGES), strict=True)
        out.append({"kind": kind, "clips": int(scores.size), "alone": alone,
                    **dict(zip(("min", "p10", "median", "p90", "max"), stats, strict=True)),
                    **{f"{lo:g}-{hi:g}": count for lo, hi, count in bins}})
    return out
