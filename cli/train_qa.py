"""`mosqa train-qa`: parse options, hand them to mosqa.train. Every option is also a YAML key."""

from pathlib import Path

import typer

FE, MODEL, LOSS, TRAIN = "Front end", "Model (default: the architecture's own)", "Loss", "Training"


def _opt(panel: str, help: str = "", *flags: str):
    """An option that defaults to None ('not given'), so YAML and defaults stay in charge."""
    return typer.Option(None, *flags, help=help, rich_help_panel=panel)


def command(
    config: Path = typer.Option(None, "--config", "-c", help="YAML config (recipes/conf/*.yaml); "
                                "flags override it."),
    resume: Path = typer.Option(None, help="Continue RUN_DIR exactly from its last.pt (its own config)."),
    train: Path = _opt(TRAIN, "Training list (wav,score)."),
    valid: Path = _opt(TRAIN, "Validation list (early stopping, best.pt)."),
    arch: str = _opt(TRAIN, "qualitynet | hasa | mosnet | cnn | cnnA | can2d | lstmcan | crn | nisqa."),
    loss: str = _opt(LOSS, "Weighted terms joined by '+': mse, norm-mse, frame-mse, frame-mse-norm, ce, edm, "
                     "frame-edm (e.g. 10*norm-mse+ce)."),
    epochs: int = _opt(TRAIN, "Epochs (30)."),
    batch_size: int = _opt(TRAIN, "Clips per batch (16)."),
    lr: float = _opt(TRAIN, "Learning rate (1e-3)."),
    optimizer: str = _opt(TRAIN, "adam | adamw | rmsprop."),
    weight_decay: float = _opt(TRAIN),
    scheduler: str = _opt(TRAIN, "none | cosine | plateau."),
    lr_factor: float = _opt(TRAIN, "plateau: lr multiplier (0.5)."),
    lr_patience: int = _opt(TRAIN, "plateau: epochs before lowering lr (2)."),
    grad_clip: float = _opt(TRAIN, "Max gradient norm, 0 = off (5)."),
    early_stop_metric: str = _opt(TRAIN, "Valid metric for best.pt and early stopping: lcc | srcc | mse."),
    patience: int = _opt(TRAIN, "Epochs without improvement before stopping, 0 = never (10)."),
    seed: int = _opt(TRAIN),
    device: str = _opt(TRAIN, "auto | cpu | cuda[:N]."),
    amp: bool = _opt(TRAIN, "Mixed precision (CUDA only).", "--amp/--no-amp"),
    threads: int = _opt(TRAIN, "torch CPU threads (0 = default)."),
    num_workers: int = _opt(TRAIN, "DataLoader workers (0)."),
    bucket_batches: int = _opt(TRAIN, "Batches per length-sorted bucket (20)."),
    cache_dir: Path = _opt(TRAIN, "Feature cache (default <exp-dir>/.cache)."),
    exp_dir: Path = _opt(TRAIN, "Runs go to <exp-dir>/<name><YYYYmmdd_HHMMSS>/ (exp)."),
    name: str = _opt(TRAIN, "Run name prefix (default e.g. crn_cp_qn)."),
    sample_rate: int = _opt(FE, "Audio rate the model reads (16000)."),
    n_fft: int = _opt(FE, "STFT size (512)."),
    hop: int = _opt(FE, "STFT hop (256)."),
    win: int = _opt(FE, "Window length (n_fft)."),
    window: str = _opt(FE, "hann | hamming | sine."),
    feature: str = _opt(FE, "mag | complex | logmel."),
    compress: float = _opt(FE, "Magnitude power-law exponent: 1 = raw, 0.5 = the log's cp."),
    n_mels: int = _opt(FE, "Mel bands for logmel (48)."),
    level_norm: float = _opt(FE, "Scale each clip to this RMS level in dBFS before the STFT (off)."),
    C: int = _opt(MODEL, "Conv channels (crn, cnn, cnnA, can2d, lstmcan).", "--C", "--channels"),
    lstm_hidden: int = _opt(MODEL, "LSTM hidden size."),
    trans: int = _opt(MODEL, "crn: units of the linear layer after the LSTM."),
    conv_layers: int = _opt(MODEL),
    conv_kernel: int = _opt(MODEL),
    prepare_layers: int = _opt(MODEL, "cnn/cnnA: layers of the 1-D conv prepare block."),
    prepare_kernel: int = _opt(MODEL),
    prepare_dilation: int = _opt(MODEL),
    prepare_bn: bool = _opt(MODEL, "BatchNorm1d in the prepare block.", "--prepare-bn/--no-prepare-bn"),
    attn_heads: int = _opt(MODEL),
    attn_dropout: float = _opt(MODEL),
    dropout: float = _opt(MODEL),
    layer_norm: bool = _opt(MODEL, "LayerNorm after each attention block.", "--layer-norm/--no-layer-norm"),
    local_mask: int = _opt(MODEL, "Attend only to frames within ±W (0 = full attention)."),
    time_pool: int = _opt(MODEL, "hasa: average k frames into one after the linear layer (1 = off)."),
    head_hidden: int = _opt(MODEL, "Hidden layer before the frame score and classifier (0 = none)."),
    pooling: str = _opt(MODEL, "mean | attn."),
    head: str = _opt(MODEL, "reg | cls (classifier over score bins)."),
    norm_output: bool = _opt(MODEL, "Sigmoid output mapped to 1–5 (default) or linear.",
                             "--norm-output/--no-norm-output"),
    step: float = _opt(MODEL, "cls: bin width (0.2 = 20 bins)."),
    predict: str = _opt(MODEL, "cls: score = cls | avg+cls."),
    hardsigmoid: bool = _opt(MODEL, "hardsigmoid instead of sigmoid.", "--hardsigmoid/--no-hardsigmoid"),
    y_max: float = _opt(LOSS, "Frame losses weigh clips by 10^(y - y_max) (5)."),
    edm_root: bool = _opt(LOSS, "EDM with the square root (NIMA's form).", "--edm-root/--no-edm-root"),
    edm_target: str = _opt(LOSS, "onehot | gaussian."),
    edm_sigma: float = _opt(LOSS, "gaussian EDM target width in MOS."),
):
    """Train a non-intrusive quality (MOS) model, e.g.
    `mosqa train-qa -c recipes/conf/crn_cp_qn_C256_L128_T256.yaml --train T --valid V --C 128`."""
    options = {k: v for k, v in locals().items() if k not in ("config", "resume")}
    from mosqa.checks import checked_config
    from mosqa.errors import MosqaError
    from mosqa.train import resolve
    from mosqa.train import train as run

    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    if resume is not None:
        if config is not None:
            raise MosqaError("--resume uses the run's own config.yaml; drop --config")
        run_dir = run(resume=resume, overrides=options)
    else:
        run_dir = run(checked_config(resolve(config, options)))
    typer.echo(str(run_dir))
