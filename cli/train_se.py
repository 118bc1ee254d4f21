"""`mosqa train-se`: parse options, hand them to mosqa.train_se."""

from pathlib import Path

import typer


def command(
    config: Path = typer.Option(None, "--config", "-c", help="YAML config (recipes/conf/se_*.yaml); "
                                "flags override it."),
    resume: Path = typer.Option(None, help="Continue a run from its last.pt (its own config is used)."),
    arch: str = typer.Option(None, help="Enhancement model: lstm | dpcrn."),
    mask_act: str = typer.Option(None, help="lstm mask activation: softplus | sigmoid."),
    target: str = typer.Option(None, help="mag (loss on the masked magnitude) | iam (mask vs |S|/|Y|)."),
    n_fft: int = typer.Option(None, help="STFT size (DPCRN paper 400, the log 512)."),
    hop: int = typer.Option(None, help="STFT hop (paper 200, log 256)."),
    window: str = typer.Option(None, help="STFT window: sine (paper) | hann | hamming."),
    sample_rate: int = typer.Option(None, help="Rate the enhancer works at."),
    hidden: int = typer.Option(None, help="lstm: BLSTM hidden units per direction (256)."),
    conv_channels: int = typer.Option(None, help="lstm: Conv1d output channels (512)."),
    layers: int = typer.Option(None, help="lstm: BLSTM layers (2)."),
    compress: float = typer.Option(None, help="lstm: input magnitude compression exponent (0.3)."),
    blocks: int = typer.Option(None, help="dpcrn: DPRNN blocks (2)."),
    intra_hidden: int = typer.Option(None, help="dpcrn: intra-chunk BLSTM units per direction (64)."),
    inter_hidden: int = typer.Option(None, help="dpcrn: inter-chunk LSTM units (128)."),
    identity_init: bool = typer.Option(None, "--identity-init/--random-init", help="Start from mask = 1."),
    train_list: Path = typer.Option(None, help="noisy,clean[,score] training list."),
    valid_list: Path = typer.Option(None, help="noisy,clean[,score] validation list."),
    clean: Path = typer.Option(None, help="Clean speech folder or list, mixed on the fly."),
    noise: Path = typer.Option(None, help="Noise folder or list for on-the-fly mixing."),
    rir: Path = typer.Option(None, help="Optional room impulse responses (folder or list)."),
    valid_clean: Path = typer.Option(None, help="Validation clean speech (mixed with a fixed seed)."),
    valid_noise: Path = typer.Option(None, help="Validation noise."),
    snr_min: float = typer.Option(None, help="Lowest mixing SNR in dB."),
    snr_max: float = typer.Option(None, help="Highest mixing SNR in dB."),
    crop_seconds: float = typer.Option(None, help="Training crop length."),
    valid_crop_seconds: float = typer.Option(None, help="Validation crop (0 = whole files)."),
    epoch_items: int = typer.Option(None, help="Mixtures per epoch (on-the-fly mixing)."),
    valid_items: int = typer.Option(None, help="Validation mixtures (default: one per clean file)."),
    loss: str = typer.Option(None, help="Spectral loss terms joined by '+': mag, complex, sisnr, iam."),
    loss_weights: str = typer.Option(None, help="Comma-separated weights, one per loss term."),
    qa: str = typer.Option(None, help="Quality guidance: none | frozen | grl | joint."),
    qa_model: Path = typer.Option(None, help="train-qa run directory used as the quality model."),
    qa_weight: float = typer.Option(None, help="Weight of the quality term."),
    qa_every: int = typer.Option(None, help="joint: add the quality term every k steps."),
    grl_lambda: float = typer.Option(None, help="grl: gradient-reversal scale."),
    qa_lr: float = typer.Option(None, help="grl/joint: learning rate of the quality model."),
    spec_weight: float = typer.Option(None, help="Weight of the spectral loss."),
    epochs: int = typer.Option(None),
    batch_size: int = typer.Option(None),
    lr: float = typer.Option(None),
    scheduler: str = typer.Option(None, help="Learning-rate schedule over the whole run: none | cosine "
                                  "(per step, down to 0 at the last epoch)."),
    steps_per_epoch: int = typer.Option(None, help="Cap on training steps per epoch."),
    monitor: str = typer.Option(None, help="Early-stopping metric: pesq, stoi, si_snr, sig, bak, ovrl."),
    patience: int = typer.Option(None, help="Epochs without improvement before stopping (0 = never)."),
    dnsmos: bool = typer.Option(None, "--dnsmos/--no-dnsmos", help="DNSMOS SIG/BAK/OVRL in validation."),
    exp_dir: Path = typer.Option(None, help="Runs go to <exp-dir>/<name><YYYYmmdd_HHMMSS>/."),
    name: str = typer.Option(None, help="Run name prefix (default e.g. dpcrn_grl)."),
    seed: int = typer.Option(None),
    device: str = typer.Option(None, help="auto | cpu | cuda[:N]."),
    amp: bool = typer.Option(None, "--amp/--no-amp", help="Mixed precision (CUDA only)."),
    threads: int = typer.Option(None, help="torch CPU threads (0 = torch's default)."),
):
    """Train a speech-enhancement model (lstm | dpcrn), optionally guided by a quality model."""
    from mosqa.train_se import resolve, train

    if resume is not None:
        train(resume=resume, epochs=epochs, device=device)
        return
    overrides = {k: v for k, v in locals().items() if k not in ("config", "resume", "resolve", "train")}
    overrides = {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()}
    from mosqa.checks import checked_config

    run_dir = train(checked_config(resolve(config, overrides), runs={"qa_model": "qa"}))
    typer.echo(str(run_dir))
