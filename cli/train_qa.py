"""`mosqa train-qa`: parse options, hand them to mosqa.train. Every option is also a YAML key."""

from pathlib import Path

import typer

from cli.options import CONFIG_HELP, RESUME_HELP, opt
from cli.options import train as train_run
from mosqa.names import QA_ARCHS, QA_LOSSES, QA_METRICS, QA_OPTIMIZERS, QA_SCHEDULERS, choices

FE, MODEL = "Front end (default: the architecture's own)", "Model (default: the architecture's own)"
LOSS, TRAIN, RUN = "Loss", "Training", "Run"
OWN = " Default: the architecture's own."


def command(
    config: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    resume: Path = typer.Option(None, help=RESUME_HELP),
    train: Path = opt(TRAIN, "Training list (wav,score per line, or a CSV with a header). Required."),
    valid: Path = opt(TRAIN, "Validation list: picks best.pt and drives early stopping. Required."),
    arch: str = opt(MODEL, f"Architecture: {choices(QA_ARCHS)}. Default: qualitynet (with a warning)."),
    loss: str = opt(LOSS, f"Weighted terms joined by '+' from {choices(QA_LOSSES)} "
                    "(e.g. 10*norm-mse+ce). Default: norm-mse."),
    epochs: int = opt(TRAIN, "Epochs to train (at least 1). Default: 30."),
    batch_size: int = opt(TRAIN, "Clips per batch. Default: 16."),
    lr: float = opt(TRAIN, "Learning rate. Default: 1e-3."),
    optimizer: str = opt(TRAIN, f"Optimiser: {choices(QA_OPTIMIZERS)}. Default: adam."),
    weight_decay: float = opt(TRAIN, "Optimiser weight decay. Default: 0."),
    scheduler: str = opt(TRAIN, f"Learning-rate schedule per epoch: {choices(QA_SCHEDULERS)}. "
                         "Default: none."),
    lr_factor: float = opt(TRAIN, "plateau: multiply the lr by this when it lowers it. Default: 0.5."),
    lr_patience: int = opt(TRAIN, "plateau: epochs without improvement before lowering the lr. Default: 2."),
    grad_clip: float = opt(TRAIN, "Clip the gradient norm to this; 0 = off. Default: 5."),
    early_stop_metric: str = opt(TRAIN, "Validation metric for best.pt and early stopping: "
                                 f"{choices(QA_METRICS)}. Default: lcc."),
    patience: int = opt(TRAIN, "Epochs without improvement before stopping; 0 = never. Default: 10."),
    seed: int = opt(TRAIN, "Seed of initialisation, batch order and dropout. Default: 0."),
    device: str = opt(RUN, "auto | cpu | cuda[:N]; auto takes CUDA when present. Default: auto."),
    amp: bool = opt(RUN, "Mixed precision (CUDA only; bfloat16 where supported). Default: off.",
                    "--amp/--no-amp"),
    threads: int = opt(RUN, "torch CPU threads; 0 = torch's choice, split between DDP processes. "
                       "Default: 0."),
    num_workers: int = opt(RUN, "DataLoader worker processes. Default: 0."),
    tensorboard: bool = opt(RUN, "Also write metrics.csv's scalars as TensorBoard events under "
                            "<run>/tensorboard (pip install 'mosqa[tensorboard]'). Default: off.",
                            "--tensorboard/--no-tensorboard"),
    bucket_batches: int = opt(TRAIN, "Batches per length-sorted bucket (less padding). Default: 20."),
    cache_dir: Path = opt(RUN, "Feature cache folder. Default: <exp-dir>/.cache."),
    exp_dir: Path = opt(RUN, "Runs go to <exp-dir>/<name><YYYYmmdd_HHMMSS>/. Default: exp."),
    name: str = opt(RUN, "Run name prefix. Default: from arch and options, e.g. crn_cp_qn."),
    sample_rate: int = opt(FE, "Audio rate the model reads, in Hz." + OWN),
    n_fft: int = opt(FE, "STFT size in samples." + OWN),
    hop: int = opt(FE, "STFT hop in samples." + OWN),
    win: int = opt(FE, "Window length in samples." + OWN),
    window: str = opt(FE, "STFT window: hann | hamming | sine." + OWN),
    feature: str = opt(FE, "Input feature: mag | complex | logmel." + OWN),
    compress: float = opt(FE, "Magnitude power-law exponent: 1 = raw, 0.5 = the log's cp." + OWN),
    n_mels: int = opt(FE, "Mel bands of logmel." + OWN),
    level_norm: float = opt(FE, "Scale each clip to this RMS level in dBFS before the STFT. Default: off."),
    C: int = opt(MODEL, "Conv channels (crn, cnn, cnnA, can2d, lstmcan).", "--C", "--channels"),
    lstm_hidden: int = opt(MODEL, "LSTM hidden size (per direction for BLSTMs)."),
    trans: int = opt(MODEL, "crn: units of the linear layer after the LSTM."),
    conv_layers: int = opt(MODEL, "Conv layers of the conv stack."),
    conv_kernel: int = opt(MODEL, "Kernel size of the conv layers."),
    prepare_layers: int = opt(MODEL, "cnn/cnnA: layers of the 1-D conv prepare block."),
    prepare_kernel: int = opt(MODEL, "cnn/cnnA: kernel size of the prepare block."),
    prepare_dilation: int = opt(MODEL, "cnn/cnnA: dilation of the prepare block."),
    prepare_bn: bool = opt(MODEL, "cnn/cnnA: BatchNorm1d in the prepare block.",
                           "--prepare-bn/--no-prepare-bn"),
    attn_heads: int = opt(MODEL, "Attention heads."),
    attn_dropout: float = opt(MODEL, "Dropout inside attention."),
    dropout: float = opt(MODEL, "Dropout between layers."),
    layer_norm: bool = opt(MODEL, "LayerNorm after each attention block.", "--layer-norm/--no-layer-norm"),
    local_mask: int = opt(MODEL, "Attend only to frames within ±W; 0 = full attention. Default: 0."),
    time_pool: int = opt(MODEL, "hasa: average k frames into one after the linear layer; 1 = off."),
    head_hidden: int = opt(MODEL, "Hidden layer before the frame score and classifier; 0 = none. "
                           "Default: 0."),
    pooling: str = opt(MODEL, "Pooling over frames: mean | attn."),
    head: str = opt(MODEL, "reg | cls (classifier over score bins). Default: reg."),
    norm_output: bool = opt(MODEL, "Sigmoid output mapped to 1–5, or linear. Default: sigmoid.",
                            "--norm-output/--no-norm-output"),
    step: float = opt(MODEL, "cls: bin width over 1–5. Default: 0.2 (20 bins)."),
    predict: str = opt(MODEL, "cls: score = cls | avg+cls. Default: avg+cls."),
    hardsigmoid: bool = opt(MODEL, "hardsigmoid instead of sigmoid. Default: off.",
                            "--hardsigmoid/--no-hardsigmoid"),
    y_max: float = opt(LOSS, "Frame losses weigh clips by 10^(y - y_max). Default: 5."),
    edm_root: bool = opt(LOSS, "EDM with the square root (NIMA's form). Default: off.",
                         "--edm-root/--no-edm-root"),
    edm_target: str = opt(LOSS, "EDM target: onehot | gaussian. Default: onehot."),
    edm_sigma: float = opt(LOSS, "gaussian EDM target width in MOS. Default: 0.25."),
):
    """Train a non-intrusive quality (MOS) model, e.g.
    `mosqa train-qa -c recipes/conf/crn_cp_qn_C256.yaml --train T --valid V --C 128`."""
    options = {k: v for k, v in locals().items() if k not in ("config", "resume")}
    train_run("train", config, resume, options)
