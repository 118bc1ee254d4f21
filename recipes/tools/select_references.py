"""Pick the clean references a PESQ-labelled corpus may be simulated from, by their own noise floor.

PESQ compares a degraded clip with its reference, so a reference with an audible floor caps what
its clips can score and makes noise below that floor invisible to the label but not to the
listener: the same degradation gets different labels on different references. References whose
floor (5th minus 95th percentile of 20 ms frame energy, `floor_rel_db` in the corpus's qc.csv,
computed here the same way where qc.csv has none) lies above --max-floor-db are left out.

    python recipes/tools/select_references.py CORPUS OUT_DIR [--max-floor-db -35]

Writes OUT_DIR/speech/<speaker>/<file> symlinks (the layout `mosqa simulate` reads) and
OUT_DIR/floors.csv (path, speaker, floor_rel_db, kept).
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from mosqa.audio import atomic_path, find_audio, load_audio

FRAME = 320  # 20 ms at 16 kHz


def floor_rel_db(wav: np.ndarray) -> float:
    """5th minus 95th percentile of the 20 ms frame energies, in dB (the corpus's qc.csv definition)."""
    frames = wav[: len(wav) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return float(np.percentile(energy_db, 5) - np.percentile(energy_db, 95))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--max-floor-db", type=float, default=-35.0)
    args = ap.parse_args(argv)
    known = {}
    with open(args.corpus / "qc.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["kind"] == "speech" and row.get("floor_rel_db"):
                known[row["path"]] = float(row["floor_rel_db"])
    speech = args.corpus / "speech"
    rows = []
    for path in find_audio(speech):
        rel = path.relative_to(args.corpus).as_posix()
        floor = known[rel] if rel in known else floor_rel_db(load_audio(path))
        keep = floor <= args.max_floor_db
        speaker = path.relative_to(speech).parts[0]
        rows.append({"path": rel, "speaker": speaker, "floor_rel_db": f"{floor:.2f}", "kept": int(keep)})
        link = args.out_dir / "speech" / path.relative_to(speech)
        if keep and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
    with atomic_path(args.out_dir / "floors.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    kept = sum(r["kept"] for r in rows)
    print(f"{kept} of {len(rows)} references kept (floor <= {args.max_floor_db} dB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
