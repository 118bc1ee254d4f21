"""`mosqa simulate`: parse options, run mosqa.simulate with a progress bar, print its reports."""

import os
from pathlib import Path

import typer

from mosqa.errors import MosqaError
from mosqa.ranges import RANGE_OPTIONS, SHARE_OPTIONS, Ranges, RoomRanges

DEFAULT = Ranges()
RANGES = "Degradation ranges (drawn per clip; the drawn values go to meta.csv)"
CHAIN = "Recording chain (a reference's own microphone, low cut, resampling and level; drawn per clip)"


def _pair(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def _ranged(default, flag: str, help: str, panel: str = RANGES):
    """An option of a ranges panel; a range's default is shown as LOW,HIGH, as it is typed."""
    shown = _pair(default) if isinstance(default, tuple) else default
    return typer.Option(shown, flag, rich_help_panel=panel, help=help)


def command(
    clean_dir: Path = typer.Argument(None, help="Clean speech folder, searched recursively; the first folder "
                                     "level is the speaker. Omit it (or pass --builtin) for the built-in "
                                     "espeak-ng demo speech (the default)."),
    builtin: bool = typer.Option(False, "--builtin", help="Use the built-in demo speech (6 speakers x "
                                 "6 sentences). Default: off, unless CLEAN_DIR is omitted."),
    out_dir: Path = typer.Option(Path("simulated"), "--out-dir", "-o", help="Where wav/, clean/, all.list, "
                                 "pairs.list, meta.csv and the reports go. Rerunning into it resumes."),
    noise_dir: Path = typer.Option(None, "--noise-dir", help="Noise folder, or a list file (one path a line, "
                                   "relative to the list; # comments) to hold whole noise files out of a "
                                   "set. Default: generated white, pink, brown and babble noise."),
    rir_dir: Path = typer.Option(None, "--rir-dir", help="Room impulse response folder or list file, "
                                 "mixed with synthetic rooms (see --synthetic-rooms). Default: synthetic "
                                 "rooms only."),
    music_dir: Path = typer.Option(None, "--music-dir", help="Music folder or list file: adds the impairment "
                                   "kind 'music', mixed like noise at --music-snr-range. Default: none (no "
                                   "music clips; keep music out of --noise-dir to rate it as its own kind)."),
    babble: bool = typer.Option(True, "--babble/--no-babble", help="Draw the kind 'babble': N other speakers "
                                "of CLEAN_DIR talking at once (--babble-talkers), never the clip's own. "
                                "Default: on when CLEAN_DIR has at least 4 speakers."),
    per_utt: int = typer.Option(4, "--per-utt", "-k", help="Degraded versions per clean utterance."),
    seed: int = typer.Option(0, "--seed", help="Clip (utterance i, copy k) is drawn from (seed, i, k): "
                             "the same seed gives the same corpus with any --jobs. Default: 0."),
    max_utts: int = typer.Option(None, "--max-utts", help="Use a seeded random subset of N utterances "
                                 "(default: all)."),
    jobs: int = typer.Option(None, "--jobs", "-j", help="Worker processes (default: one per core)."),
    with_stoi: bool = typer.Option(False, "--stoi", help="Also compute STOI (a meta.csv column). "
                                   "Default: off."),
    speaker_map: str = typer.Option(None, "--speaker-map", help="FOLDER=SPEAKER,... for folders that are the "
                                    "same person, e.g. ast_en_allison=allison,ast_es_allison=allison. "
                                    "Default: each folder is its own speaker."),
    codecs: str = typer.Option("in-process", "--codecs", help="Codecs drawn besides numpy mu-law: "
                               "in-process (PyAV's: opus, mp3, aac, amr-nb, g722, g723.1), all (also gsm, "
                               "g726, speex, codec2, vorbis when the ffmpeg program has them: a process "
                               "start per use, 2-4x the CPU), none, or NAME,NAME,..."),
    no_codecs: bool = typer.Option(False, "--no-codecs", help="Same as --codecs none. Default: off."),
    voice_perturb: float = typer.Option(0.0, "--voice-perturb", help="Speed each clean utterance up or down "
                                        "by a random factor within +-AMOUNT (e.g. 0.2) before degrading it: "
                                        "pitch and formants move, so few recorded voices become many. "
                                        "Default 0 (off)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start afresh even if OUT holds another run. "
                                   "Default: off (rerunning resumes)."),
    snr_range: str = _ranged(
        DEFAULT.snr, "--snr-range", help="Additive-noise SNR, dB, LOW,HIGH. "
        "Wideband PESQ is ~1.05 below 10 dB, so the range reaches high to spread labels over 1-4.6."),
    music_snr_range: str = _ranged(
        DEFAULT.music_snr, "--music-snr-range", help="Music SNR, dB, "
        "LOW,HIGH: median PESQ-WB goes from ~1.3 at 5 dB to ~4.5 at 45, so music clips' labels spread."),
    babble_snr_range: str = _ranged(
        DEFAULT.babble_snr, "--babble-snr-range", help="Babble SNR, dB: "
        "~3 dB harsher than music (PESQ-WB ~1.2 at 8 dB, ~4.5 at 48), so the range sits 3 dB higher."),
    babble_talkers: str = _ranged(
        DEFAULT.babble_talkers, "--babble-talkers", help="Babble: how many "
        "other speakers talk at once, MIN,MAX (3 is still a few voices one can follow, 8 a crowd)."),
    drr_range: str = _ranged(
        DEFAULT.drr, "--drr-range", help="Direct-to-reverberant ratio, dB: "
        "recorded RIRs are rescaled to it, synthetic rooms place the talker to give it."),
    rt60_range: str = _ranged(
        DEFAULT.room.rt60, "--rt60-range",
        help="Synthetic rooms: reverberation time RT60, seconds (log-uniform)."),
    room_size_range: str = _ranged(
        DEFAULT.room.length, "--room-size-range", help="Synthetic rooms: "
        "longest side, metres (log-uniform; width 40-100 % of it, height 2.4 m up to a third of it)."),
    synthetic_rooms: float = _ranged(
        DEFAULT.synthetic_rooms, "--synthetic-rooms", help="With --rir-dir: share "
        "of reverberant clips in a synthetic room instead of a recorded RIR (without it all are synthetic)."),
    clip_range: str = _ranged(
        DEFAULT.clip, "--clip-range",
        help="Clipping level as a fraction of the peak."),
    band_high_range: str = _ranged(
        DEFAULT.band_high, "--band-high-range",
        help="Band-limiting: upper edge, Hz (log-uniform)."),
    band_low_range: str = _ranged(
        DEFAULT.band_low, "--band-low-range", help="Band-limiting: lower "
        "edge, Hz (below 50 Hz: no high-pass); 300 with an upper edge of 3400 is the telephone band."),
    band_order_range: str = _ranged(
        DEFAULT.band_order, "--band-order-range", help="Band-limiting: Butterworth order, run forwards and "
        "backwards (12 dB per octave each; a whole number, uniform): 1,8 mixes gentle and steep slopes."),
    loss_range: str = _ranged(
        DEFAULT.loss, "--loss-range",
        help="Packet loss: share of lost 20 ms frames (log-uniform)."),
    burst_range: str = _ranged(
        DEFAULT.burst, "--burst-range",
        help="Packet loss: mean burst length, frames (1 = independent losses)."),
    tandem_prob: float = _ranged(
        DEFAULT.tandem, "--tandem-prob",
        help="Probability that a codec clip goes through two codecs in a chain."),
    combine_probs: str = _ranged(
        DEFAULT.combine, "--combine-probs",
        help="Weights of 1, 2 and 3 degradations in one clip, P1,P2,P3."),
    clean_share: float = _ranged(
        DEFAULT.clean_share, "--clean-share", help="Share of clips left undegraded "
        "(degradations 'clean', labelled like any clip), so a model learns the top of the scale too."),
    call_share: float = _ranged(
        DEFAULT.call_share, "--call-share", help="Share of degraded clips that carry one of the impairments "
        "of real calls (echo, talker, chop, suppressor, gain, saturation, hum; then 0-2 more of any kind). "
        "0: none, as before they existed."),
    echo_delay_range: str = _ranged(
        DEFAULT.echo_delay, "--echo-delay-range", help="Echo: delay, ms (log-uniform; below ~30 ms a "
        "colouring comb filter, above a distinct echo)."),
    echo_loss_range: str = _ranged(
        DEFAULT.echo_loss, "--echo-loss-range", help="Echo: return loss of the first repeat, dB."),
    echo_feedback_range: str = _ranged(
        DEFAULT.echo_feedback, "--echo-feedback-range", help="Echo: each further repeat this times the one "
        "before (0: one repeat)."),
    talker_snr_range: str = _ranged(
        DEFAULT.talker_snr, "--talker-snr-range", help="Competing talker (one other speaker of CLEAN_DIR): "
        "SNR, dB (median PESQ-WB ~1.3 at 10 dB, ~2.7 at 25, ~4.1 at 40)."),
    chop_length_range: str = _ranged(
        DEFAULT.chop_length, "--chop-length-range", help="Chopped speech: length of each deleted, zeroed or "
        "repeated segment, ms (log-uniform)."),
    chop_rate_range: str = _ranged(
        DEFAULT.chop_rate, "--chop-rate-range", help="Chopped speech: segments per second (log-uniform)."),
    suppressor_snr_range: str = _ranged(
        DEFAULT.suppressor_snr, "--suppressor-snr-range", help="Noise suppressor: SNR of the noise it is "
        "given to remove, dB."),
    suppressor_oversub_range: str = _ranged(
        DEFAULT.suppressor_oversub, "--suppressor-oversub-range", help="Noise suppressor: over-subtraction "
        "(gate: threshold over the noise) factor; high values cut speech onsets and tails."),
    suppressor_floor_range: str = _ranged(
        DEFAULT.suppressor_floor, "--suppressor-floor-range", help="Noise suppressor: what is left of a "
        "suppressed bin or a closed gate, dB."),
    speech_level_range: str = _ranged(
        DEFAULT.speech_level, "--speech-level-range",
        help="Gain faults: speech level (RMS) before them, dBFS."),
    agc_attack_range: str = _ranged(
        DEFAULT.agc_attack, "--agc-attack-range", help="Gain faults: AGC attack time, ms (log-uniform)."),
    agc_release_range: str = _ranged(
        DEFAULT.agc_release, "--agc-release-range", help="Gain faults: AGC release time, ms (log-uniform; "
        "short ones pump)."),
    gain_step_range: str = _ranged(
        DEFAULT.gain_step, "--gain-step-range", help="Gain faults: size of each sudden gain step, dB."),
    gain_step_rate_range: str = _ranged(
        DEFAULT.gain_step_rate, "--gain-step-rate-range", help="Gain faults: gain steps per second."),
    gain_fade_range: str = _ranged(
        DEFAULT.gain_fade, "--gain-fade-range", help="Gain faults: the gains a slow fade starts and ends at, "
        "dB, each drawn from it (a fade of 0.2-4 s). One value: no fades, as before they existed (e.g. "
        "-30,6)."),
    saturation_drive_range: str = _ranged(
        DEFAULT.saturation_drive, "--saturation-drive-range", help="Saturation: dB the peak is driven past "
        "the knee of the tanh (PESQ-WB ~4.5 at -12, ~3 at 0, ~1.3 at 12)."),
    hum_snr_range: str = _ranged(
        DEFAULT.hum_snr, "--hum-snr-range", help="Hum (50 or 60 Hz with harmonics): SNR, dB."),
    dc_offset_range: str = _ranged(
        DEFAULT.dc_offset, "--dc-offset-range", help="Hum: DC offset added with it, a fraction of the peak."),
    fault_share: float = _ranged(
        DEFAULT.fault_share, "--fault-share", help="Share of degraded clips that carry a signal-path fault "
        "(a converter without an anti-aliasing filter, an outage of 1-3 lost stretches; then 0-2 more of "
        "the common kinds). 0: none, as before they existed (e.g. 0.1)."),
    aliasing_rate_range: str = _ranged(
        DEFAULT.aliasing_rate, "--aliasing-rate-range", help="Aliasing: the rate the filterless converter "
        "runs at, Hz (log-uniform; all above half of it folds back)."),
    dropout_length_range: str = _ranged(
        DEFAULT.dropout_length, "--dropout-length-range", help="Outage: length of each of its 1-3 lost "
        "stretches, ms (log-uniform; at most a quarter of the clip each)."),
    recording_chain: float = _ranged(
        DEFAULT.recording_chain, "--recording-chain", panel=CHAIN, help="Share of clips whose clean "
        "utterance first passes a drawn recording chain (microphone EQ, low cut, a resampling round trip, "
        "level), which becomes that clip's reference: the label still measures the degradation, while the "
        "input's colour, level and resampling stop being a cue. 0: none, as before it existed (e.g. 0.5)."),
    chain_level_range: str = _ranged(
        DEFAULT.chain_level, "--chain-level-range", panel=CHAIN, help="Level (RMS) the chained reference is "
        "stored at, dBFS (lower where its peak would clip; meta.csv has the level used)."),
    chain_eq_freq_range: str = _ranged(
        DEFAULT.chain_eq_freq, "--chain-eq-freq-range", panel=CHAIN, help="Microphone EQ: centre (peak) or "
        "corner (shelf) of each of its 1-3 bands, Hz (log-uniform)."),
    chain_eq_gain_range: str = _ranged(
        DEFAULT.chain_eq_gain, "--chain-eq-gain-range", panel=CHAIN,
        help="Microphone EQ: each band's gain, dB."),
    chain_eq_q_range: str = _ranged(
        DEFAULT.chain_eq_q, "--chain-eq-q-range", panel=CHAIN, help="Microphone EQ: a peaking band's Q "
        "(log-uniform)."),
    chain_highpass_range: str = _ranged(
        DEFAULT.chain_highpass, "--chain-highpass-range", panel=CHAIN, help="Front-end low cut: cutoff, Hz "
        "(log-uniform; Butterworth of order 1-4)."),
):
    """Build a PESQ-labelled corpus the Quality-Net way.

    Each clean utterance gets K degraded versions drawn from reverberation (recorded RIRs and synthetic
    rooms), additive noise, babble of other speakers, music (with --music-dir), clipping, band-limiting,
    low bit-rate codecs alone or in tandem (through ffmpeg when installed; numpy mu-law always) and
    bursty packet loss, singly and combined; a few clips stay clean (--clean-share). A minority
    (--call-share) carries an impairment of real calls: residual echo, a competing talker, chopped
    speech, noise-suppressor artefacts, gain faults, saturation or hum; another (--fault-share) a
    signal-path fault: aliasing from a filterless converter or an outage. Label = wideband PESQ against
    the clean reference (a competing talker and echo are not part of it); with --recording-chain, a share
    of references first pass a drawn microphone, low cut, resampling and level of their own.
    Writes OUT/wav/*.wav, OUT/clean/*.wav (16 kHz references), OUT/all.list (wav,score), OUT/pairs.list
    (noisy,clean,score), OUT/meta.csv (speaker, every drawn parameter, PESQ), OUT/pesq_hist.png, the
    coverage report OUT/coverage.csv and OUT/coverage.png (labels per impairment kind), OUT/skipped.csv
    and OUT/summary.json. A clip prepare-list would refuse (silent, too short) is not written; it is
    named in skipped.csv and in the output.
    """
    ranges = ranges_from_options(locals())  # first, while every local name is an option
    from rich.console import Console

    from cli.prepare_list import histogram_table
    from mosqa import simulate as sim
    from mosqa.checks import output_dir
    from mosqa.codecs import codec_backends, select_codecs
    from mosqa.progress import progress_bar

    output_dir(out_dir)
    if builtin and clean_dir is not None:
        raise MosqaError("give either CLEAN_DIR or --builtin, not both")
    console = Console(stderr=True)
    codecs = "none" if no_codecs else codecs
    chosen, backends = select_codecs(codecs), codec_backends()
    spawned = [name for name in chosen if backends[name] == "ffmpeg"]
    unused = sorted(set(backends) - set(chosen))
    console.print(f"codecs: mulaw{''.join(', ' + n for n in chosen)}"
                  + (f" ({', '.join(spawned)} through the ffmpeg program)" if spawned else "")
                  + (f"; also available (--codecs): {', '.join(unused)}" if unused else ""), highlight=False)
    if not backends:
        console.print("[yellow]note:[/] neither PyAV nor ffmpeg found: the codec degradation uses numpy "
                      "mu-law only; `pip install av` for opus, mp3, aac, AMR, G.722, G.723.1")
    with progress_bar(console) as bar:
        task = bar.add_task("simulate", total=None)
        summary = sim.simulate(clean_dir, out_dir=out_dir, noise_dir=noise_dir, rir_dir=rir_dir,
                               music_dir=music_dir, babble=babble,
                               per_utt=per_utt, seed=seed, max_utts=max_utts,
                               jobs=jobs or os.cpu_count() or 1, ranges=ranges, with_stoi=with_stoi,
                               speaker_map=sim.parse_speaker_map(speaker_map), overwrite=overwrite,
                               codecs=codecs, voice_perturb=voice_perturb,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    out = Console()
    hist = summary["pesq_hist"]
    out.print(histogram_table("PESQ-WB labels", {"clips": hist["counts"]}, hist["edges"]))
    out.print(coverage_table(summary["coverage"]))
    rate = summary["clips_per_second"]
    console.print(f"{summary['clips']} clips labelled ({summary['new_clips']} new"
                  + (f", {rate:.2f} clips/s" if rate else "") + f"); PESQ mean "
                  f"{summary['pesq_mean']:.2f} ± {summary['pesq_std']:.2f}; written to {out_dir} "
                  "(coverage.csv/png, pesq_hist.png, summary.json)")
    by_source: dict = {}
    for s in summary["skipped"]:
        by_source.setdefault((s["source"], s["reason"]), []).append(s["clip"])
    for (source, reason), clips in by_source.items():
        console.print(f"[yellow]skipped {len(clips)} clip(s) of[/] {source}: {reason}", highlight=False,
                      soft_wrap=True)
    if by_source:
        console.print(f"skipped clips are listed in {out_dir / 'skipped.csv'}", highlight=False)


def coverage_table(rows: list):
    """Rich table of the coverage report: per kind, counts, label quantiles and a bar per half-point bin."""
    from rich.table import Table

    bins = [key for key in rows[0] if "-" in key]
    table = Table(title="Label coverage per impairment kind (clips carrying it, alone or combined)")
    for column in ("kind", "clips", "alone", "p10", "median", "p90"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    table.add_column(f"labels {bins[0].split('-')[0]}→{bins[-1].split('-')[1]}")
    for row in rows:
        peak = max(max(row[b] for b in bins), 1)
        bars = "".join(" ▁▂▃▄▅▆▇█"[round(8 * row[b] / peak)] for b in bins)
        table.add_row(*(str(row[k]) for k in ("kind", "clips", "alone", "p10", "median", "p90")), bars)
    return table


def ranges_from_options(options: dict) -> Ranges:
    """Ranges from the command's arguments (name -> value): each field from the option RANGE_OPTIONS or
    SHARE_OPTIONS names for it, whose parameter is the flag's name in snake case."""
    def given(flag: str):
        return options[flag.removeprefix("--").replace("-", "_")]

    fields = {key: _parse(given(flag), flag, 2) for key, (flag, _, _) in RANGE_OPTIONS.items()}
    fields |= {key: given(flag) for key, flag in SHARE_OPTIONS.items()}
    room = RoomRanges(**{key.removeprefix("room."): fields.pop(key) for key in list(fields) if "." in key})
    return Ranges(**fields, room=room, combine=_parse(given("--combine-probs"), "--combine-probs", 3))


def _parse(text: str, option: str, count: int) -> tuple:
    """'A,B' -> (A, B) as floats, or one line naming the option."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        shape = "LOW,HIGH" if count == 2 else ",".join(f"P{i + 1}" for i in range(count))
        raise MosqaError(f"{option}: expected {shape}, got {text!r}")
    return values
