"""`mosqa train-se`: parse options, hand them to mosqa.train_se. Every option is also a YAML key."""

from pathlib import Path

import typer

from cli.options import CONFIG_HELP, RESUME_HELP, deprecated, opt
from cli.options import train as train_run
from mosqa.names import QA_MODES, SE_ARCHS, SE_LOSSES, SE_METRICS, SE_SCHEDULERS, choices

MODEL, DATA, LOSS = "Model", "Data", "Loss and quality guidance"
TRAIN, RUN = "Training", "Run"


def command(
    config: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    resume: Path = typer.Option(None, help=RESUME_HELP),
    arch: str = opt(MODEL, f"Enhancement model: {choices(SE_ARCHS)}. Default: dpcrn (with a warning)."),
    sample_rate: int = opt(MODEL, "Rate the enhancer works at, in Hz. Default: 16000."),
    n_fft: int = opt(MODEL, "STFT size (DPCRN paper 400, the log 512). Default: 400."),
    hop: int = opt(MODEL, "STFT hop (paper 200, log 256). Default: 200."),
    window: str = opt(MODEL, "STFT window: sine (paper) | hann | hamming. Default: sine."),
    mask_act: str = opt(MODEL, "lstm: mask activation, softplus | sigmoid. Default: softplus."),
    target: str = opt(MODEL, "mag (loss on the masked spectrum) | iam (mask vs |S|/|Y|). Default: mag."),
    conv_channels: int = opt(MODEL, "lstm: Conv1d output channels. Default: 512."),
    hidden: int = opt(MODEL, "lstm: BLSTM hidden units per direction. Default: 256."),
    layers: int = opt(MODEL, "lstm: BLSTM layers. Default: 2."),
    compress: float = opt(MODEL, "lstm: input magnitude compression exponent. Default: 0.3."),
    blocks: int = opt(MODEL, "dpcrn: DPRNN blocks. Default: 2."),
    intra_hidden: int = opt(MODEL, "dpcrn: intra-chunk BLSTM units per direction. Default: 64."),
    inter_hidden: int = opt(MODEL, "dpcrn: inter-chunk LSTM units. Default: 128."),
    identity_init: bool = opt(MODEL, "Start from mask = 1 (output = input). Default: random init.",
                              "--identity-init/--random-init"),
    init: Path = opt(MODEL, "Start from this train-se run's enhancer (its best.pt weights and network "
                     "options; fresh optimiser): fine-tuning. Default: none."),
    train: Path = opt(DATA, "noisy,clean[,score] training list. Default: none (or --clean and --noise)."),
    valid: Path = opt(DATA, "noisy,clean[,score] validation list. Default: none (or --valid-clean and "
                      "--valid-noise)."),
    clean: Path = opt(DATA, "Clean speech folder or list, mixed with --noise on the fly. Default: none."),
    noise: Path = opt(DATA, "Noise folder or list for on-the-fly mixing. Default: none."),
    rir: Path = opt(DATA, "Room impulse responses (folder or list) for mixing. Default: none."),
    valid_clean: Path = opt(DATA, "Validation clean speech, mixed with a fixed seed. Default: none."),
    valid_noise: Path = opt(DATA, "Validation noise. Default: none."),
    snr_min: float = opt(DATA, "Lowest mixing SNR in dB. Default: 0."),
    snr_max: float = opt(DATA, "Highest mixing SNR in dB. Default: 15."),
    crop_seconds: float = opt(DATA, "Training crop length in seconds. Default: 2."),
    valid_crop_seconds: float = opt(DATA, "Validation crop in seconds; 0 = whole files. Default: 0."),
    epoch_items: int = opt(DATA, "Mixtures per epoch (on-the-fly mixing). Default: one per clean file."),
    valid_items: int = opt(DATA, "Validation mixtures. Default: one per clean file."),
    valid_seed: int = opt(DATA, "Seed of the validation mixtures (the same for every run). Default: 1234."),
    loss: str = opt(LOSS, f"Spectral loss terms joined by '+' from {choices(SE_LOSSES)} "
                    "(e.g. mag+0.5*complex). Default: mag+complex."),
    loss_weights: str = opt(LOSS, "Comma-separated weights, one per loss term. Default: 1 each."),
    spec_compress: float = opt(LOSS, "Magnitude compression exponent inside the spectral losses. "
                               "Default: 0.3."),
    spec_weight: float = opt(LOSS, "Weight of the spectral loss. Default: 1."),
    qa: str = opt(LOSS, f"Quality guidance: {choices(QA_MODES)}. Default: none."),
    qa_model: str = opt(LOSS, "frozen/grl/joint/learn: the critic, a train-qa run directory, a shipped "
                        "model (pesq-wb), dnsmos (fixed: frozen, or joint --no-qa-update) or intrusive "
                        "(learn: an untrained critic that also reads the clean reference). Default: none."),
    qa_weight: float = opt(LOSS, "frozen/grl/joint/learn: weight of the quality term. Default: 1."),
    qa_every: int = opt(LOSS, "joint: add the quality term every k steps. Default: 1."),
    qa_update: bool = opt(LOSS, "joint: the critic also learns the true PESQ of the enhanced batch "
                          "(MetricGAN-style), or stays fixed. Default: on.", "--qa-update/--no-qa-update"),
    grl_lambda: float = opt(LOSS, "grl: gradient-reversal scale. Default: 1."),
    qa_lr: float = opt(LOSS, "grl, learn, joint --qa-update: learning rate of the quality model. "
                       "Default: 1e-4."),
    critic_init: str = opt(LOSS, "learn: start the critic from --qa-model's weights (pretrained), from its "
                           "architecture freshly initialised (scratch), or warm from the critic_warm.pt of "
                           "a run with --critic-warmup (its own warm-up is then skipped). Default: "
                           "pretrained."),
    replay_size: int = opt(LOSS, "learn: earlier enhanced items (with their true PESQ) the critic keeps "
                           "relearning; 0 = none. Default: 512."),
    pesq_workers: int = opt(LOSS, "learn: processes computing true PESQ-WB; 0 = in the training process. "
                            "Default: 2."),
    critic_warmup: int = opt(LOSS, "learn: first train the critic at most this many steps on the true "
                             "PESQ-WB of a ladder of enhancers' outputs (--critic-warmup-from) and keep it "
                             "as critic_warm.pt in the run; 0 = none. Default: 0."),
    critic_warmup_lcc: float = opt(LOSS, "learn: end the warm-up once the critic's LCC on the ladder's "
                                   "outputs for the validation mixtures reaches this. Default: 0.8."),
    critic_warmup_from: str = opt(LOSS, "learn: the warm-up's enhancers, train-se checkpoints or folders "
                                  "of them (every *.pt, e.g. --keep-every's snapshots), comma-separated, "
                                  "from early poor ones to the best. Default: --init's best.pt."),
    dnsmos_target: str = opt(LOSS, "--qa-model dnsmos: the score it gives, sig | bak | ovrl | p808 or a "
                             "weighted sum, e.g. 0.5*sig+0.5*bak. Default: ovrl."),
    epochs: int = opt(TRAIN, "Epochs to train (at least 1). Default: 20."),
    batch_size: int = opt(TRAIN, "Items per batch. Default: 8."),
    lr: float = opt(TRAIN, "Learning rate (Adam). Default: 1e-3."),
    weight_decay: float = opt(TRAIN, "Adam weight decay. Default: 0."),
    scheduler: str = opt(TRAIN, "Learning-rate schedule over the whole run, per step: "
                         f"{choices(SE_SCHEDULERS)} (cosine ends at 0 at the last epoch). Default: none."),
    steps_per_epoch: int = opt(TRAIN, "Cap on training steps per epoch. Default: the whole epoch."),
    grad_clip: float = opt(TRAIN, "Clip the gradient norm to this; 0 = off. Default: 5."),
    early_stop_metric: str = opt(TRAIN, f"Validation metric for best.pt and early stopping: "
                                 f"{choices(SE_METRICS)}. Default: pesq."),
    patience: int = opt(TRAIN, "Epochs without improvement before stopping; 0 = never. Default: 5."),
    seed: int = opt(TRAIN, "Seed of initialisation, crops, mixing and batch order. Default: 0."),
    dnsmos: bool = opt(RUN, "DNSMOS SIG/BAK/OVRL in validation. Default: on.", "--dnsmos/--no-dnsmos"),
    exp_dir: Path = opt(RUN, "Runs go to <exp-dir>/<name><YYYYmmdd_HHMMSS>/. Default: exp."),
    name: str = opt(RUN, "Run name prefix. Default: from arch and --qa, e.g. dpcrn_grl."),
    device: str = opt(RUN, "auto | cpu | cuda[:N]; auto takes CUDA when present. Default: auto."),
    amp: bool = opt(RUN, "Mixed precision (CUDA only; bfloat16 where supported). Default: off.",
                    "--amp/--no-amp"),
    num_workers: int = opt(RUN, "DataLoader worker processes. Default: 0."),
    tensorboard: bool = opt(RUN, "Also write metrics.csv's scalars and a few enhanced validation clips "
                            "as TensorBoard events under <run>/tensorboard (pip install "
                            "'mosqa[tensorboard]'). Default: off.",
                            "--tensorboard/--no-tensorboard"),
    threads: int = opt(RUN, "torch CPU threads; 0 = torch's choice, split between DDP processes. "
                       "Default: 0."),
    keep_every: int = opt(RUN, "Also keep the enhancer every N epochs as epoch_NNN.pt (weights only: a "
                          "ladder for --critic-warmup-from); 0 = never. Default: 0."),
    train_list: Path = deprecated("--train"),
    valid_list: Path = deprecated("--valid"),
    clip_grad: float = deprecated("--grad-clip"),
    monitor: str = deprecated("--early-stop-metric"),
):
    """Train a speech-enhancement model (lstm | dpcrn), optionally guided by a quality model, e.g.
    `mosqa train-se -c recipes/conf/se_dpcrn.yaml --train T --valid V --qa frozen --qa-model QA_RUN`."""
    options = {k: v for k, v in locals().items() if k not in ("config", "resume")}
    train_run("train_se", config, resume, options)
