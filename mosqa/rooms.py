"""Synthetic room impulse responses from a statistical room model, cheap enough to draw one per clip.

A shoebox room (drawn size), a microphone and a talker (drawn placement) and a drawn reverberation time
give: the direct path; the six first-order wall reflections at their image-source delays and 1/r
amplitudes (an image-source model of order one, walls reflecting sqrt(1 - absorption) of the
pressure); and a diffuse tail of Gaussian noise decaying exponentially in octave bands, high bands
faster (walls and air absorb more there). The tail's energy relative to the direct sound is
(distance / critical distance)^2, the classical diffuse-field result, so a talker near the
microphone in a hall sounds drier than one across the room. Absorption follows from the size and
RT60 by Eyring's formula. Everything is drawn from the clip's generator: the same seed, the same room.
"""

import numpy as np
from scipy.signal import butter, sosfilt

from mosqa.audio import SAMPLE_RATE
from mosqa.ranges import RoomRanges

SPEED_OF_SOUND = 343.0
# Octave bands of the tail (Hz) and each band's RT60 relative to the drawn (mid-band) RT60: typical of
# furnished rooms, where low frequencies ring longer and air absorption shortens the highs.
OCTAVE_EDGES = (0, 177, 355, 710, 1420, 2840, 5680, 8000)
BAND_RT60 = (1.3, 1.15, 1.0, 1.0, 0.85, 0.65, 0.45)
WALL_MARGIN_M = 0.3  # neither talker nor microphone closer than this to a wall
MIN_DISTANCE_M = 0.05  # a headset microphone
DIRECT_SECONDS = 0.0025  # what counts as the direct path when measuring the direct-to-reverberant ratio


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _octave_filters() -> list:
    sos = []
    for low, high in zip(OCTAVE_EDGES[:-1], OCTAVE_EDGES[1:], strict=True):
        if low == 0:
            sos.append(butter(4, high, "lowpass", fs=SAMPLE_RATE, output="sos"))
        elif high >= SAMPLE_RATE / 2:
            sos.append(butter(4, low, "highpass", fs=SAMPLE_RATE, output="sos"))
        else:
            sos.append(butter(4, [low, high], "bandpass", fs=SAMPLE_RATE, output="sos"))
    return sos


OCTAVE_SOS = _octave_filters()


def draw_room(rng: np.random.Generator, ranges: RoomRanges, drr_db: float) -> dict:
    """Room size, absorption, RT60, and microphone and talker positions (at the distance that gives
    `drr_db` in the diffuse-field model, as far as the room allows), all from `rng`."""
    length = log_uniform(rng, *ranges.length)
    # Width 40-100 % of the length; height 2.4 m up to a third of the length (halls are taller).
    size = np.array([length, length * rng.uniform(0.4, 1.0), rng.uniform(2.4, max(2.5, length / 3))])
    rt60 = log_uniform(rng, *ranges.rt60)
    volume = float(np.prod(size))
    surface = 2 * float(size[0] * size[1] + size[0] * size[2] + size[1] * size[2])
    absorption = 1 - np.exp(-0.161 * volume / (surface * rt60))  # Eyring, solved for the mean absorption
    critical = 0.057 * np.sqrt(volume / rt60)
    mic = rng.uniform(WALL_MARGIN_M, size - WALL_MARGIN_M)
    direction = rng.standard_normal(3) * (1, 1, 0.2)  # talkers mostly at about the microphone's height
    direction /= np.linalg.norm(direction) + 1e-12
    wanted = max(MIN_DISTANCE_M, critical * 10 ** (-drr_db / 20))
    talker = np.clip(mic + wanted * direction, WALL_MARGIN_M, size - WALL_MARGIN_M)
    if np.linalg.norm(talker - mic) < MIN_DISTANCE_M:  # pushed into a corner onto the microphone
        talker = np.clip(mic + MIN_DISTANCE_M * direction, 0.0, size)
    return {"size": size, "rt60": rt60, "volume": volume, "absorption": float(absorption),
            "critical": float(critical), "mic": mic, "talker": talker}


def room_rir(rng: np.random.Generator, room: dict) -> np.ndarray:
    """The impulse response of `room` at 16 kHz, direct path first (sample 0) with amplitude 1."""
    size, mic, talker = room["size"], room["mic"], room["talker"]
    distance = float(np.linalg.norm(talker - mic))
    # First-order images: the talker mirrored in each of the six walls.
    images = []
    for axis in range(3):
        for wall in (0.0, size[axis]):
            image = talker.copy()
            image[axis] = 2 * wall - talker[axis]
            images.append(float(np.linalg.norm(image - mic)))
    reflection = np.sqrt(1 - room["absorption"])
    rt60s = room["rt60"] * np.array(BAND_RT60)
    n = int(1.1 * rt60s.max() * SAMPLE_RATE) + int(max(images) / SPEED_OF_SOUND * SAMPLE_RATE) + 1
    rir = np.zeros(n)
    rir[0] = 1.0
    for d in images:
        rir[int(round((d - distance) / SPEED_OF_SOUND * SAMPLE_RATE))] += reflection * distance / d
    # Diffuse tail from the first reflection on, its energy set by the critical distance.
    start = int(round((min(images) - distance) / SPEED_OF_SOUND * SAMPLE_RATE))
    t = np.arange(n - start) / SAMPLE_RATE
    noise = rng.standard_normal(n - start)
    tail = sum(sosfilt(sos, noise) * 10 ** (-3 * t / rt) for sos, rt in zip(OCTAVE_SOS, rt60s, strict=True))
    tail *= distance / room["critical"] / (np.sqrt(np.sum(tail ** 2)) + 1e-12)
    rir[start:] += tail
    return rir.astype(np.float32)


def direct_to_reverberant_db(rir: np.ndarray) -> float:
    """Energy in the first 2.5 ms (the direct path) against the rest, in dB."""
    split = int(DIRECT_SECONDS * SAMPLE_RATE)
    head, rest = float(np.sum(rir[:split] ** 2)), float(np.sum(rir[split:] ** 2))
    return 10 * np.log10(head / rest) if rest > 0 else float("inf")
