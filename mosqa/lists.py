"""Reading and writing the list files users have, in one place.

Formats (auto-detected from the first non-comment line):
  wav,score                       the log's QA lists
  noisy,clean,score               the log's SE lists (score optional: noisy,clean)
  wav score                       whitespace separated (Kaldi/ESPnet style)
  CSV with a header               NISQA's filepath_deg/mos, or any columns named by the caller
A bare path per line, or a CSV with only a path column, is accepted where scores are not needed
(dnsmos, enhance, train-se's clean/noise lists).
Relative paths resolve against the list's own folder, so lists travel with their data.
"""

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from mosqa.audio import AUDIO_SUFFIXES, atomic_path, find_audio
from mosqa.errors import MosqaError

SCORE_RANGE = (1.0, 5.0)
PATH_COLUMNS = ("filepath_deg", "path", "wav", "filepath", "file", "filename", "deg", "noisy")
SCORE_COLUMNS = ("mos", "score", "mos_true", "pesq", "label")
CLEAN_COLUMNS = ("filepath_ref", "clean", "ref", "reference")
CONDITION_COLUMNS = ("condition", "con", "system", "sys", "db_condition")
GROUP_COLUMNS = ("group", "speaker", "spk", "speaker_id", "clean_id")


@dataclass
class Item:
    """One list line: a degraded file, its score, and what else the line said."""

    path: Path
    score: float | None = None
    clean: Path | None = None
    condition: str | None = None
    group: str | None = None
    where: str = ""  # "list:line", for error messages
    extra: dict = field(default_factory=dict)


def _resolve(base: Path, text: str) -> Path:
    p = Path(text.strip())
    return p if p.is_absolute() else base / p


def _parse_score(text: str, where: str, score_range) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MosqaError(f"{where}: score {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise MosqaError(f"{where}: score {text.strip()!r} is not finite")
    if score_range is not None and not score_range[0] <= value <= score_range[1]:
        raise MosqaError(f"{where}: score {value:g} outside {score_range[0]:g}..{score_range[1]:g}")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _is_header_word(line: str) -> bool:
    """A one-column header such as `path` or `filepath_deg` (a path-only CSV)."""
    return line.strip().lower() in PATH_COLUMNS


def _pick(header: list[str], wanted: str | None, candidates, where: str, required: bool):
    lowered = [h.strip().lower() for h in header]
    if wanted is not None:
        if wanted.lower() not in lowered:
            raise MosqaError(f"{where}: no column {wanted!r} in header {header}")
        return lowered.index(wanted.lower())
    for name in candidates:
        if name in lowered:
            return lowered.index(name)
    if required:
        raise MosqaError(f"{where}: header {header} has none of the columns {list(candidates)}")
    return None


def read_list(
    list_path,
    *,
    require_score: bool = True,
    score_range=SCORE_RANGE,
    path_col: str | None = None,
    score_col: str | None = None,
    clean_col: str | None = None,
    condition_col: str | None = None,
    group_col: str | None = None,
    bad_lines: list | None = None,
) -> list[Item]:
    """Parse a list file into Items; any bad line raises MosqaError naming `list:line`.

    `require_score=False` reads a list for its paths alone (dnsmos, predict, enhance, train-se): its
    scores are ignored (any number in a header-less line, anything in a score column), so a list scored
    on another scale, or with a text label there, works as is.
    Pass a list as `bad_lines` to skip bad lines instead: each one's message is appended to it.
    """
    list_path = Path(list_path)
    if list_path.is_dir():
        raise MosqaError(f"{list_path}: is a folder, not a list file")
    if not list_path.is_file():
        raise MosqaError(f"{list_path}: no such list file")
    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise MosqaError(f"{list_path}: not a text list (is it an audio file?)") from None
    base = list_path.parent
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise MosqaError(f"{list_path}: list is empty")
    first = lines[0][1]
    named = any(c is not None for c in (path_col, score_col, clean_col, condition_col, group_col))
    if "," in first or named or _is_header_word(first):
        fields = next(csv.reader([first]))
        # A header names columns; a data line holds at least one audio path (which has a suffix).
        if named or not any(Path(f.strip()).suffix for f in fields if not _is_number(f)):
            return _read_csv_with_header(list_path, text, require_score, score_range, path_col, score_col,
                                         clean_col, condition_col, group_col, bad_lines)
    items = []
    for n, line in lines:
        try:
            where = f"{list_path}:{n}"
            fields = next(csv.reader([line])) if "," in line else line.split()
            fields = [f.strip() for f in fields]
            if not require_score and len(fields) > 1 and _resolve(base, line).is_file():
                fields = [line.strip()]  # one path with spaces or commas in it
            if len(fields) == 1:
                if require_score:
                    raise MosqaError(f"{where}: expected 'wav,score', got one field {fields[0]!r}")
                items.append(Item(_resolve(base, fields[0]), where=where))
            elif len(fields) == 2 and _is_number(fields[1]):
                score = _parse_score(fields[1], where, score_range) if require_score else None
                items.append(Item(_resolve(base, fields[0]), score, where=where))
            elif len(fields) == 2 and not require_score:
                items.append(Item(_resolve(base, fields[0]), clean=_resolve(base, fields[1]), where=where))
            elif len(fields) == 3 and (require_score or _is_number(fields[2])):  # a third field is a score
                score = _parse_score(fields[2], where, score_range) if require_score else None
                items.append(Item(_resolve(base, fields[0]), score, clean=_resolve(base, fields[1]),
                                  where=where))
            else:
                if len(fields) == 2:
                    _parse_score(fields[1], where, score_range)  # raises the precise reason
                raise MosqaError(
                    f"{where}: expected 'wav,score' or 'noisy,clean,score', got {len(fields)} fields")
        except MosqaError as exc:
            if bad_lines is None:
                raise
            bad_lines.append(str(exc))
    return items


def _read_csv_with_header(list_path, text, require_score, score_range, path_col, score_col, clean_col,
                          condition_col, group_col, bad_lines=None) -> list[Item]:
    rows = list(csv.reader(io.StringIO(text)))
    header_index = next(i for i, r in enumerate(rows) if any(c.strip() for c in r))
    header = rows[header_index]
    where0 = f"{list_path}:{header_index + 1}"
    ip = _pick(header, path_col, PATH_COLUMNS, where0, True)
    iscore = _pick(header, score_col, SCORE_COLUMNS, where0, require_score)
    iclean = _pick(header, clean_col, CLEAN_COLUMNS, where0, False)
    icond = _pick(header, condition_col, CONDITION_COLUMNS, where0, False)
    igroup = _pick(header, group_col, GROUP_COLUMNS, where0, False)
    base = list_path.parent
    items = []
    for n, row in enumerate(rows[header_index + 1:], header_index + 2):
        if not any(c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        where = f"{list_path}:{n}"
        try:
            if len(row) != len(header):
                raise MosqaError(f"{where}: {len(row)} fields, the header has {len(header)}")
            def cell(i, row=row):
                return row[i].strip() if i is not None else ""
            score = _parse_score(cell(iscore), where, score_range) if require_score else None
            items.append(Item(
                path=_resolve(base, cell(ip)),
                score=score,
                clean=_resolve(base, cell(iclean)) if cell(iclean) else None,
                condition=cell(icond) or None,
                group=cell(igroup) or None,
                where=where,
                extra={h.strip(): v for h, v in zip(header, row, strict=True)},
            ))
        except MosqaError as exc:
            if bad_lines is None:
                raise
            bad_lines.append(str(exc))
    if not items:
        raise MosqaError(f"{list_path}: list has a header but no rows")
    return items


def audio_files(source) -> dict[Path, str]:
    """A folder (searched recursively), a list file (first column) or one audio file -> audio paths, each
    with where it was named (`list:line` for a list, else "") for error messages."""
    source = Path(source)
    if source.is_dir():
        files = find_audio(source)
        if not files:
            raise MosqaError(f"{source}: folder holds no audio files")
        return dict.fromkeys(files, "")
    if source.suffix.lower() in AUDIO_SUFFIXES:
        if not source.is_file():
            raise MosqaError(f"{source}: no such audio file")
        return {source: ""}
    items = read_list(source, require_score=False)
    for it in items:
        if not it.path.is_file():
            raise MosqaError(f"{it.where}: no such audio file {it.path}")
    return {it.path: it.where for it in items}


def _portable(path: Path, base: Path) -> str:
    """Relative to the list's folder when the file lies below it, else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(base.absolute()))
    except ValueError:
        return str(path)


def write_list(list_path, items: list[Item], *, with_clean: bool | None = None) -> None:
    """Write `wav,score` (or `noisy,clean,score` when items carry clean paths), atomically.

    Items with a condition or group become a CSV with a header (`path,score,condition,group`), so a
    list passed through prepare-list keeps what eval-qa's per-condition metrics and later splits need.
    """
    list_path = Path(list_path)
    base = list_path.parent
    if with_clean is None:
        with_clean = any(it.clean is not None for it in items)
    with_score = any(it.score is not None for it in items)
    labels = [name for name in ("condition", "group") if any(getattr(it, name) for it in items)]
    rows = [["path", *(["clean"] if with_clean else []), *(["score"] if with_score else []), *labels]]
    for it in items:
        fields = [_portable(it.path, base)]
        if with_clean:
            fields.append(_portable(it.clean, base))
        if with_score:
            fields.append(f"{it.score:.4f}" if it.score is not None else "")
        fields += [getattr(it, name) or "" for name in labels]
        rows.append(fields)
    if not labels:
        rows = rows[1:]  # the log's header-less format
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    with atomic_path(list_path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`K/N` (1 <= K <= N) -> (K, N); None stays None."""
    if text is None:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise MosqaError(f"--shard {text!r}: expected K/N, e.g. 3/8") from None
    if not 1 <= k <= n:
        raise MosqaError(f"--shard {text}: need 1 <= K <= N")
    return k, n


def shard(items: list, spec: str | None) -> list:
    """Shard K of N: the K-th of N contiguous, near-equal blocks of `items` (all of them without `spec`).

    Contiguous blocks, not every N-th item, so that the shards' outputs concatenated in order 1..N are
    the unsharded output, row for row. K is 1-based like Slurm's --array=1-N (SLURM_ARRAY_TASK_ID).
    """
    parsed = parse_shard(spec)
    if parsed is None:
        return list(items)
    k, n = parsed
    return list(items[(k - 1) * len(items) // n : k * len(items) // n])
