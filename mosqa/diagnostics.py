"""Why a clip sounds bad: the diagnostic targets a quality model learns beside its score.

Each target is read from the values `mosqa simulate` drew for the clip (meta.csv), with the value of a
clip that does not carry that impairment (no noise: 50 dB SNR, no room: 30 dB DRR, ...), so every clip
teaches every head. Torch-free: `predict --help` and the tables read it.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    columns: tuple  # meta.csv columns; the lowest present value is the target
    absent: float  # the target of a clip without this impairment
    low: float  # the range predictions are clipped to (and a target outside it is clamped)
    high: float
    unit: str
    binary: bool = False  # scored by AUC, predicted as a probability


# name -> target; the order is the order of predict's --diagnose columns and of the outputs of every model
# with diagnostic heads (the shipped pesq-wb, the campaign's state): a name added here changes their shapes.
TARGETS = {
    "snr_db": Target(("snr_db", "babble_snr_db", "music_snr_db"), 50.0, -5.0, 50.0, "dB"),
    "drr_db": Target(("drr_db",), 30.0, -10.0, 30.0, "dB"),
    "clipped_share": Target(("clipped_share",), 0.0, 0.0, 1.0, "share of samples"),
    "band_high_hz": Target(("band_high_hz",), 8000.0, 0.0, 8000.0, "Hz"),
    "loss_rate": Target(("loss_rate",), 0.0, 0.0, 1.0, "share of 20 ms frames"),
    "codec": Target(("codec",), 0.0, 0.0, 1.0, "probability", binary=True),
}
# The impairments of real calls (degrade.CALL_KINDS), one number each, read from meta.csv like the others.
# No model has heads for them yet (the next campaign fits them), so they stay out of TARGETS.
CALL_TARGETS = {
    "echo_level_db": Target(("echo_level_db",), 50.0, -10.0, 50.0, "dB below the speech"),
    "talker_snr_db": Target(("talker_snr_db",), 50.0, -10.0, 50.0, "dB"),
    "chops_per_s": Target(("chops_per_s",), 0.0, 0.0, 20.0, "discontinuities per second"),
    "suppressor": Target(("ns_mode",), 0.0, 0.0, 1.0, "probability", binary=True),
    "gain_swing_db": Target(("gain_swing_db",), 0.0, 0.0, 60.0, "dB"),
    "saturation_sdr_db": Target(("saturation_sdr_db",), 50.0, 0.0, 50.0, "dB"),
    "hum_snr_db": Target(("hum_snr_db",), 50.0, -10.0, 50.0, "dB"),
}


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def target_value(row: dict, name: str) -> float:
    """The target `name` (of TARGETS or CALL_TARGETS) of one meta.csv row."""
    t = TARGETS.get(name) or CALL_TARGETS[name]
    if t.binary:
        return float(any(str(row.get(c) or "").strip() for c in t.columns))
    values = [v for v in (_number(row.get(c)) for c in t.columns) if v is not None]
    value = min(values) if values else t.absent
    return min(max(value, t.low), t.high)


def targets(row: dict) -> list[float]:
    """Every target of one meta.csv row that models have heads for, in TARGETS order."""
    return [target_value(row, name) for name in TARGETS]


def kind_of(degradations: str) -> str:
    """A clip's impairment kind for per-kind tables: its one degradation, or "combined"."""
    return degradations if "+" not in degradations else "combined"


def source_of(speaker: str) -> str:
    """The corpus a voice comes from (libri, so762, klettres, ast, arctic ...): its folder's prefix."""
    return speaker.split("_")[0]
