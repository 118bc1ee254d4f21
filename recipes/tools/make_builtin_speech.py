"""Regenerate the built-in demo speech under mosqa/speech/ with espeak-ng (run once by a maintainer).

Six synthetic "speakers" (voice + variant + speed + pitch) read six sentences each from
mosqa/speech/sentences.txt; 16 kHz mono FLAC, levelled to -24 dBFS. Needs espeak-ng; the package
itself never does.
"""

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mosqa.audio import level_db, load_audio, write_audio

DATA = Path(__file__).resolve().parents[1] / "mosqa" / "speech"
# folder name -> espeak-ng voice, words per minute, pitch (0-99)
SPEAKERS = {
    "spk1": ("en-us+m3", 145, 45),
    "spk2": ("en-gb+f3", 165, 60),
    "spk3": ("en-gb-scotland+m5", 155, 35),
    "spk4": ("en-us+f4", 175, 70),
    "spk5": ("en-gb-x-rp+m7", 135, 50),
    "spk6": ("en-us+f2", 150, 55),
}
PER_SPEAKER = 6
LEVEL_DB = -24.0


def main():
    sentences = [s.strip() for s in (DATA / "sentences.txt").read_text().splitlines() if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        for s, (name, (voice, speed, pitch)) in enumerate(SPEAKERS.items()):
            # Each speaker reads a different window of the sentence pool, so texts overlap only partly.
            for i in range(PER_SPEAKER):
                n = (s * 2 + i) % len(sentences)
                raw = Path(tmp) / "u.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw),
                                sentences[n]], check=True)
                wav = load_audio(raw, 16000)
                wav = wav * np.float32(10 ** ((LEVEL_DB - level_db(wav)) / 20))
                write_audio(DATA / name / f"{name}_s{n + 1:02d}.flac", wav, 16000)


if __name__ == "__main__":
    main()
