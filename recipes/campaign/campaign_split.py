"""Split the corpus once for the quality-model campaign: voices, noise files, music and rooms.

Every shard is simulated from the `train` part; the fixed validation and test sets from their own parts,
so no voice, noise recording or room of theirs is ever trained on. The split is a pure function of the
file names (a hash), so a corpus that grows never moves a file from one part to another, and the
pinned voices are those `recipes/pretrain_qa.sh` holds out.

    python recipes/campaign/campaign_split.py REFERENCES CORPUS OUT --test-groups A,B --valid-groups C,D

REFERENCES is the speech folder `recipes/tools/select_references.py` wrote (<speaker>/<file> links). Writes
OUT/{train,valid,test}/speech/<speaker> links and OUT/{train,valid,test}_{noise,music,rir}.list.
"""

import argparse
import csv
import hashlib
import re
import sys
from pathlib import Path

from mosqa.audio import atomic_path, find_audio

PARTS = ("train", "valid", "test")
# Rooms whose channels or ears are separate files: one room, one part.
ROOM = re.compile(r"_(ch\d|left|right)$")
# In each group, in hash order, every EVERY-th recording goes to validation and the one half a cycle on
# to test: 1 in 8 each for noise (grouped by source, so every source with 5+ files has both) and music,
# 1 in 4 each for rooms (13 rooms: too few for less).
EVERY = {"noise": 8, "music": 8, "rir": 4}


def _hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def assign(named: list[tuple[str, str, Path]], every: int) -> dict[str, list[Path]]:
    """(group, name, path) -> part -> paths; all files of one name (a room's channels) share a part."""
    parts = {p: [] for p in PARTS}
    groups = {}
    for group, name, path in named:
        groups.setdefault(group, {}).setdefault(name, []).append(path)
    for names in groups.values():
        for j, name in enumerate(sorted(names, key=_hash)):
            part = "valid" if j % every == every // 2 - 1 else "test" if j % every == every - 1 else "train"
            parts[part] += names[name]
    return parts


def write_list(path: Path, files: list[Path]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{f.resolve()}\n" for f in files))


def music_names(manifest: Path) -> set[str]:
    """Noise recordings whose manifest category is music ("noise: music; ..."): a kind of its own."""
    with open(manifest, newline="") as f:
        return {r["speaker_or_name"] for r in csv.DictReader(f) if r["notes"].startswith("noise: music")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("references", type=Path)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--test-groups", required=True)
    ap.add_argument("--valid-groups", required=True)
    args = ap.parse_args(argv)
    pinned = {**dict.fromkeys(args.valid_groups.split(","), "valid"),
              **dict.fromkeys(args.test_groups.split(","), "test")}
    counts = {p: {"speakers": 0, "noise": 0, "music": 0, "rir": 0} for p in PARTS}
    for speaker in sorted(p for p in args.references.iterdir() if p.is_dir()):
        part = pinned.get(speaker.name, "train")
        link = args.out / part / "speech" / speaker.name
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(speaker.resolve())
        counts[part]["speakers"] += 1
    sources = {"noise": [], "music": [], "rir": []}
    music = music_names(args.corpus / "manifest.csv")
    for path in find_audio(args.corpus / "noise"):
        if path.stem in music:
            sources["music"].append(("music", path.stem, path))
        else:
            sources["noise"].append((path.stem.split("_")[0], path.stem, path))
    sources["rir"] = [("rir", ROOM.sub("", p.stem), p) for p in find_audio(args.corpus / "rir")]
    for kind, named in sources.items():
        for part, files in assign(named, EVERY[kind]).items():
            write_list(args.out / f"{part}_{kind}.list", files)
            counts[part][kind] = len(files)
    for part, c in counts.items():
        print(f"{part}: " + ", ".join(f"{v} {k}" for k, v in c.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
