"""Non-intrusive quality models: a registry of backbones behind one `QualityModel` wrapper.

A backbone maps (B, T, F) features and their valid lengths to (B, T', D) frame embeddings and the
valid lengths after any time down-sampling; `mosqa.heads` turns those into MOS scores. Adding an
architecture = one class + one line in MODELS.

Padding must never change a sequence's score, so every backbone zeroes padded frames before each
convolution, runs each LSTM direction so that padding comes after the valid frames (a plain
BLSTM's backward pass would start in the padding), masks attention keys, and computes BatchNorm
statistics on valid frames only.
"""

from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from mosqa.errors import MosqaError
from mosqa.heads import HEADS, POOLINGS, PREDICTS, ScoreHead, num_bins, sequence_mask

# ---------------------------------------------------------------- options


# Options that must be positive integers when given.
SIZES = (
    "C",
    "lstm_hidden",
    "trans",
    "conv_layers",
    "conv_kernel",
    "prepare_kernel",
    "prepare_dilation",
    "attn_heads",
    "time_pool",
)


@dataclass(frozen=True)
class ModelOptions:
    """Every architecture knob of the experiment log. None = the architecture's own default."""

    C: int | None = None  # channels of the last conv layers (crn, can2d, lstmcan, cnn, cnnA)
    lstm_hidden: int | None = None  # LSTM hidden size (per direction for BLSTMs)
    trans: int | None = None  # units of CRN's linear layer after the LSTM
    conv_layers: int | None = None
    conv_kernel: int | None = None
    prepare_layers: int | None = None  # CnnMAttn's 1-D conv front end over frequency-as-channels
    prepare_kernel: int | None = None
    prepare_dilation: int | None = None
    prepare_bn: bool | None = None
    attn_heads: int | None = None
    attn_dropout: float | None = None
    layer_norm: bool | None = None  # LayerNorm after each attention (residual) block
    local_mask: int = 0  # W: each frame attends to frames within ±W; 0 = full attention
    time_pool: int | None = None  # average k frames into one after HASA's linear layer (1 = off)
    dropout: float | None = None
    head_hidden: int = 0  # units of a hidden layer before the frame score and the classifier (0 = none)
    pooling: str | None = None  # mean | attn
    head: str = "reg"  # reg | cls
    norm_output: bool = True  # sigmoid -> 1 + 4σ; False: linear output on the 1–5 scale
    step: float = 0.2  # cls bin width over 1–5
    predict: str = "avg+cls"  # cls head's score: cls | avg+cls
    hardsigmoid: bool = False  # hardsigmoid instead of sigmoid for the normalised output

    def __post_init__(self):
        if self.head not in HEADS:
            raise MosqaError(f"model: head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.predict not in PREDICTS:
            raise MosqaError(f"model: predict must be one of {', '.join(PREDICTS)}, got {self.predict!r}")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise MosqaError(f"model: pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.hardsigmoid and not self.norm_output:
            raise MosqaError(
                "model: hardsigmoid replaces the normalised output's sigmoid; it needs norm_output"
            )
        num_bins(self.step)
        for name in SIZES:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise MosqaError(f"model: {name} must be a positive integer, got {value!r}")
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise MosqaError(f"model: {name} must be in [0, 1), got {value!r}")
        for name in ("local_mask", "head_hidden", "prepare_layers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise MosqaError(f"model: {name} must be an integer >= 0, got {value!r}")

    def resolved(self, defaults: dict) -> "ModelOptions":
        """These options with every None filled from `defaults`."""
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})


OPTION_NAMES = tuple(f.name for f in fields(ModelOptions))
DEFAULTS = {f.name: f.default for f in fields(ModelOptions)}
# Options of the wrapper (heads, pooling), meaningful for every architecture.
COMMON = ("pooling", "head", "head_hidden", "norm_output", "step", "predict", "hardsigmoid")
CLS_ONLY = ("step", "predict")
ATTENTION = ("attn_heads", "attn_dropout", "local_mask", "layer_norm")
PREPARE = ("prepare_layers", "prepare_kernel", "prepare_dilation", "prepare_bn")

# ---------------------------------------------------------------- building blocks


def reverse_index(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, T) index that reverses each sequence's valid part and leaves its padding in place."""
    t = torch.arange(frames, device=lengths.device)[None, :]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


class LSTM(nn.Module):
    """(B)LSTM whose valid outputs never depend on padding; packing would be ~5x slower on CPU.

    The forward direction reads padding only after the valid frames; the backward direction runs
    on each sequence reversed within its own length, so its padding also comes last.
    """

    def __init__(self, n_in: int, hidden: int, bidirectional: bool = True):
        super().__init__()
        self.fwd = nn.LSTM(n_in, hidden, batch_first=True)
        self.bwd = nn.LSTM(n_in, hidden, batch_first=True) if bidirectional else None
        self.dim = hidden * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y, _ = self.fwd(x)
        if self.bwd is None:
            return y
        idx = reverse_index(lengths, x.shape[1]).unsqueeze(-1)
        back, _ = self.bwd(x.gather(1, idx.expand_as(x)))
        return torch.cat([y, back.gather(1, idx.expand_as(back))], dim=-1)


def time_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero padded frames of x (B, C, T, ...) so a convolution sees the same zeros as at a clip's end."""
    return x * mask.view(mask.shape[0], 1, mask.shape[1], *([1] * (x.dim() - 3))).to(x.dtype)


def _valid_sum(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per-channel sum of x (B, C, T, ...) over valid frames (m (B, T) float), as one batched
    matrix-vector product: no masked copy of x, and no slow reduction over a few trailing bins."""
    b, c, t = x.shape[:3]
    rest = x[0, 0, 0].numel()
    weights = m[:, :, None].expand(b, t, rest).reshape(b, t * rest, 1)
    return torch.bmm(x.reshape(b, c, t * rest), weights).sum((0, 2))


def _frames(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The (B, T) frame weights m shaped to broadcast over x (B, C, T, ...)."""
    return m.view(m.shape[0], 1, m.shape[1], *([1] * (x.dim() - 3)))


def _affine(x: torch.Tensor, m: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x * scale + shift per channel on valid frames, exactly 0 on padded ones, in one pass."""
    shape = (1, -1, 1) + (1,) * (x.dim() - 3)
    frame = _frames(m, x)
    return torch.addcmul(shift.view(shape) * frame, x, scale.view(shape) * frame)


class _MaskedBatchNormFn(torch.autograd.Function):
    """Training-mode masked BatchNorm with the gradient written out: a handful of passes over the
    tensor instead of the dozen that autograd records for masking, squaring, summing and scaling.

    The mask is folded into per-frame scale and shift, so padded outputs are exactly zero and
    padded inputs get no gradient.
    """

    @staticmethod
    def forward(ctx, x, mask, weight, bias, eps):
        dtype, x = x.dtype, x.float()  # float32 sums: half precision would overflow x*x
        m = mask.to(x.dtype)
        n = m.sum() * x[0, 0, 0].numel()
        mean = _valid_sum(x, m) / n
        var = (_valid_sum(x.square(), m) / n - mean**2).clamp_min(0)
        invstd = torch.rsqrt(var + eps)
        scale = weight * invstd
        ctx.save_for_backward(x, m, mean, invstd, weight)
        ctx.n, ctx.dtype = n, dtype
        ctx.mark_non_differentiable(mean, var)
        return _affine(x, m, scale, bias - mean * scale), mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        x, m, mean, invstd, weight = ctx.saved_tensors
        n = ctx.n
        grad = grad.float()
        g_sum = _valid_sum(grad, m)
        gx_sum = _valid_sum(grad * x, m)
        grad_bias = g_sum
        grad_weight = invstd * (gx_sum - mean * g_sum)  # sum of grad * x_hat
        # dx = scale * (g - mean(g) - x_hat * mean(g * x_hat)) on valid frames: a*g + b*x + c.
        a = weight * invstd
        b = -a * invstd * grad_weight / n
        c = -a * g_sum / n - b * mean
        shape = (1, -1) + (1,) * (x.dim() - 2)
        dx = _affine(grad, m, a, c).addcmul_(x, b.view(shape) * _frames(m, x))
        return dx.to(ctx.dtype), None, grad_weight, grad_bias, None


class MaskedBatchNorm(nn.BatchNorm1d):
    """BatchNorm over x (B, C, T, ...) whose training statistics come from valid frames only.

    Plain sums over the valid frames replace gathering them and scattering them back. Padded
    frames of the output are zero in both modes, so an activation with act(0) = 0 keeps them zero.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.training:
            scale = self.weight * torch.rsqrt(self.running_var + self.eps)
            return _affine(x, mask.to(x.dtype), scale, self.bias - self.running_mean * scale)
        y, mean, var = _MaskedBatchNormFn.apply(x, mask, self.weight, self.bias, self.eps)
        with torch.no_grad():
            n = mask.sum() * x[0, 0, 0].numel()
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * n / (n - 1).clamp_min(1), self.momentum)
            self.num_batches_tracked += 1
        return y


def attention_mask(mask: torch.Tensor, window: int) -> torch.Tensor:
    """(B, 1, T, T) bool, True where query t may attend key s: valid keys, within ±window if set.

    Each query also keeps itself, so a padded query far from every valid key still has one key
    and yields no NaN; valid queries are unaffected since they are valid keys themselves.
    """
    frames = mask.shape[1]
    allow = mask[:, None, None, :]
    idx = torch.arange(frames, device=mask.device)
    if window:
        allow = allow & ((idx[:, None] - idx[None, :]).abs() <= window)
    return allow | (idx[:, None] == idx[None, :])


class SelfAttention(nn.Module):
    """Multi-head self-attention over time with key padding and optional time-restricted mask."""

    def __init__(self, dim: int, heads: int, dropout: float, window: int):
        super().__init__()
        if dim % heads:
            raise MosqaError(f"model: attn_heads={heads} must divide the attention width {dim}")
        self.heads, self.dropout, self.window = heads, dropout, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attention_mask(mask, self.window),
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class AttentionBlock(nn.Module):
    """Post-norm transformer layer; the feed-forward part only when ff > 0."""

    def __init__(self, dim: int, opts: "ModelOptions", ff: int = 0):
        super().__init__()
        self.attn = SelfAttention(dim, opts.attn_heads, opts.attn_dropout, opts.local_mask)
        self.norm1 = nn.LayerNorm(dim) if opts.layer_norm else nn.Identity()
        self.drop = nn.Dropout(opts.dropout)
        self.ff = (
            nn.Sequential(nn.Linear(dim, ff), nn.ReLU(), nn.Dropout(opts.dropout), nn.Linear(ff, dim))
            if ff
            else None
        )
        self.norm2 = nn.LayerNorm(dim) if ff and opts.layer_norm else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, mask)))
        if self.ff is not None:
            x = self.norm2(x + self.drop(self.ff(x)))
        return x


class SqueezeExcite(nn.Module):
    """Channel attention: gates from the mean over valid frames and all frequencies."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        per_frame = x.mean(-1)  # (B, C, T); padded frames are zero
        squeezed = per_frame.sum(-1) / mask.sum(1, keepdim=True).to(x.dtype)
        return x * self.gate(squeezed)[:, :, None, None]


class ConvBlock2d(nn.Module):
    """Conv2d over (time, frequency), stride only in frequency, masked BatchNorm, activation.

    Its input must have zero padding frames; its output has them too, so blocks chain.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: tuple[int, int],
        freq_stride: int,
        freq_pad: int | None = None,
        act: type = nn.ReLU,
        bn: bool = True,
    ):
        super().__init__()
        pad = (kernel[0] // 2, kernel[1] // 2 if freq_pad is None else freq_pad)
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=(1, freq_stride), padding=pad)
        self.bn = MaskedBatchNorm(c_out) if bn else None
        self.act = act(inplace=True)  # saves allocating one more map; nothing else reads its input

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is None:
            return time_mask(self.act(x), mask)
        return self.act(self.bn(x, mask))  # the norm zeroes padding and act(0) = 0 (ReLU, ELU)

    def out_bins(self, bins: int) -> int:
        k, s, p = self.conv.kernel_size[1], self.conv.stride[1], self.conv.padding[1]
        return (bins + 2 * p - k) // s + 1


class Prepare(nn.Module):
    """CnnMAttn's "prepare" block: 1-D convs over time, frequency bins as channels. (B, C, T) in and out."""

    def __init__(self, n_in: int, channels: int, opts: "ModelOptions"):
        super().__init__()
        o = opts
        sizes = [n_in] + [channels] * o.prepare_layers
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c, o.prepare_kernel, dilation=o.prepare_dilation, padding="same")
            for c_in, c in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.bns = nn.ModuleList(MaskedBatchNorm(c) for c in sizes[1:]) if o.prepare_bn else None
        self.dim = sizes[-1]

    def forward(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            y = conv(time_mask(y, mask))
            if self.bns is not None:
                y = self.bns[i](y, mask)
            y = F.relu(y)
        return time_mask(y, mask)


def pool_time(h: torch.Tensor, lengths: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average every k frames of (B, T, D) into one, over valid frames only; lengths become ceil(L/k)."""
    if k == 1:
        return h, lengths
    b, t, d = h.shape
    h = F.pad(h, (0, 0, 0, (-t) % k))
    valid = sequence_mask(lengths, h.shape[1]).to(h.dtype).view(b, -1, k)
    total = (h.view(b, -1, k, d) * valid.unsqueeze(-1)).sum(2)
    return total / valid.sum(2, keepdim=True).clamp_min(1), (lengths + k - 1) // k


# ---------------------------------------------------------------- backbones


class Backbone(nn.Module):
    """Base: resolves options against the class defaults; subclasses set `self.dim`."""

    frontend: dict = {}  # front-end settings the architecture expects by default
    uses: tuple[str, ...] = ()  # ModelOptions fields that change this architecture
    defaults: dict = {}

    def __init__(self, n_bins: int, opts: ModelOptions):
        super().__init__()
        self.opts = opts.resolved(self.defaults)
        self.dim = 0


class QualityNet(Backbone):
    """Quality-Net (Fu et al. 2018): BLSTM -> per-frame Dense 50 + ELU; frame scores averaged."""

    frontend = {"window": "hamming"}
    uses = ("lstm_hidden", "dropout")
    defaults = {"lstm_hidden": 100, "dropout": 0.3}

    def __init__(self, n_bins: int, opts: ModelOptions):
        super().__init__(n_bins, opts)
        o = self.opts
        self.lstm = LSTM(n_bins, o.lstm_hidden)
        self.dense = nn.Sequential(nn.Linear(self.lstm.dim, 50), nn.ELU(), nn.Dropout(o.dropout))
        self.dim = 50

    def forward(self, x, lengths):
        return self.dense(self.lstm(x, lengths)), lengths


class HASANet(Backbone):
    """HASA-Net (Chiang et al. 2021): BLSTM -> Linear 128 + ReLU -> multi-head attention.

    The log's variants: a conv1d "prepare" front (prepare_layers, 0 = none) and average pooling
    over time after the linear layer (time_pool).
    """

    uses = ("lstm_hidden", "dropout", "time_pool") + ATTENTION + PREPARE
    defaults = {
        "lstm_hidden": 100,
        "dropout": 0.3,
        "attn_heads": 8,
        "attn_dropout": 0.0,
        "layer_norm": True,
        "time_pool": 1,
        "prepare_layers": 0,
        "prepare_kernel": 5,
        "prepare_dilation": 1,
        "prepare_bn": False,
    }

    def __init__(self, n_bins: int, opts: ModelOptions):
        super().__init__(n_bins, opts)
        o = self.opts
        self.prepare = Prepare(n_bins, n_bins, o)
        self.lstm = LSTM(n_bins, o.lstm_hidden)
        self.linear = nn.Sequential(nn.Linear(self.lstm.dim, 128), nn.ReLU(), nn.Dropout(o.dropout))
        self.attn = AttentionBlock(128, o)
        self.dim = 128

    def forward(self, x, lengths):
        x = self.prepare(x.transpose(1, 2), sequence_mask(lengths, x.shape[1])).transpose(1, 2)
        h, lengths = pool_time(self.linear(self.lstm(x, lengths)), lengths, self.opts.time_pool)
        return self.attn(h, sequence_mask(lengths, h.shape[1])), lengths


class MOSNet(Backbone):
    """MOSNet (Lo et al. 2019): 4 blocks of three 3x3 convs (the third strides frequency by 3) -> BLSTM."""

    uses = ("lstm_hidden", "dropout")
    defaults = {"lstm_hidden": 128, "dropout": 0.3}

    def __init__(self, n_bins: int, opts: ModelOptions):
        super().__init__(n_bins, opts)
        o = self.opts
        blocks, c_in, bins = [], 1, n_bins
        for c in (16, 32, 64, 128):
            for stride in (1, 1, 3):
                blocks.append(ConvBlock2d(c_in, c, (3, 3), stride, bn=False))
                bins, c_in = blocks[-1].out_bins(bins), c
        self.convs = nn.ModuleList(blocks)
        self.lstm = LSTM(128 * bins, o.lstm_hidden)
        self.dense = nn.Sequential(nn.Linear(self.lstm.dim, 128), nn.ReLU(), nn.Dropout(o.dropout))
        self.dim = 128

    def forward(self, x, lengths):
        mask = sequence_mask(lengths, x.shape[1])
        y = time_mask(x.unsqueeze(1), mask)
        for conv in self.convs:
            y = conv(y, mask)
        y = y.permute(0, 2, 1, 3).flatten(2)
        return self.dense(self.lstm(y, lengths)), lengths


class Cnn(Backbone):
    """The log's Cnn: a 1-D conv "prepare" block over frequency-as-channels, then conv layers over time."""

    uses = ("C", "conv_layers", "conv_kernel", "dropout") + PREPARE
    defaults = {
        "C": 128,
        "prepare_layers": 3,
        "prepare_kernel": 5,
        "prepare_dilation": 1,
        "prepare_bn": False,
        "conv_layers": 3,
        "conv_kernel": 3,
        "dropout": 0.1,
    }
    attention = False

    def __init__(self, n_bins: int, opts: ModelOptions):
        super().__init__(n_bins, opts)
        o = self.opts
        self.prepare = Prepare(n_bins, o.C, o)
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, o.C, o.conv_kernel, padding="same")
            for c_in in [self.prepare.dim] + [o.C] * (o.conv_layers - 1)
        )
        self.drop = nn.Dropout(o.dropout)
        if self.attention:
            self.attn = AttentionBlock(o.C, o)
        self.dim = o.C

    def forward(self, x, lengths):
        mask = sequence_mask(lengths, x.shape[1])
        y = self.prepare(x.transpose(1, 2), mask)
        for conv in self.convs:
            y = self.drop(F.relu(conv(time_mask(y, mask))))
        y = time_mask(y, mask).transpose(1, 2)
        return (self.attn(y, mask) if self.attention else y), lengths


class CnnMAttn(Cnn):
    """The log's CnnMAttn: Cnn + multi-head self-attention over time."""

    uses = Cnn.uses + ATTENTION
    defaults = {**Cnn.defaults, "attn_heads": 4, "attn_dropout": 0.1, "layer_norm": True}
    attention = True


class CAN2d(Backbone):
    """The log's CAN2d: 2-D conv blocks (frequency stride 2), each with squeeze-excitation attention."""

    uses = ("C", "conv_layers", "dropout")
    defaults = {"C": 64, "conv_layers": 4, "dropout": 0.1}

    def __init__(self, n_bins: int, opts: ModelOptions):
        super().__init__(n_bins, opts)
        o = self.opts
        channels = [max(o.C >> (o.conv_layers - 1 - i), 4) for i in range(o.conv_layers)]
        self.blocks = nn.ModuleList()
        self.excite = nn.ModuleList()
        c_in, bins = 1, n_bins
        for c in channels:
            self.blocks.append(ConvBlock2d(c_in, c, (3, 3), 2))
            self.excite.append(SqueezeExcite(c))
            bins, c_in = self.blocks[-1].out_bins(bins), c
        self.proj = nn.Sequential(nn.Linear(c_in * bins, 128), nn.ReLU(), nn.Dropout(o.dropout))
        self.dim = 128

    def forward(self, x, lengths):
        mask = sequence_mask(lengths, x.shape[1])
        y = time_mask(x.unsqueeze(1), mask)  # lstmcan passes LSTM outputs, non-zero in the padding
        for block, excite in zip(self.blocks, self.excite, strict=True):
            y = excite(block(y, mask), mask)
        return self.proj(y.permute(0, 2, 1, 3).flatten(2)), lengths


class LstmCAN(CAN2d):
    """The log's LSTM-CAN: a BLSTM over the features, its outputs read by CAN2d as an image."""

    uses = CAN2d.uses + ("lstm_hidden",)
    defaults = {**CAN2d.defaults, "lstm_hidden": 64}

    def __init__(self, n_bins: int, opts: ModelOptions):
        opts = opts.resolved(self.defaults)
        super().__init__(2 * opts.lstm_hidden, opts)
        self.lstm = LSTM(n_bins, opts.lstm_hidden)

    def forward(self, x, lengths):
        return super().forward(self.lstm(x, lengths), lengths)


class CRN(Backbone):
    """The log's CRN: 2-D conv encoder -> LSTM -> linear "trans" -> frame embeddings.

    The encoder divides frequency by 4 per layer with few channels, and only the last layer,
    which collapses the remaining bins, has C channels: cheap enough for CPU training.
    """

    uses = ("C", "lstm_hidden", "trans", "dropout")
    defaults = {"C": 256, "lstm_hidden": 128, "trans": 256, "dropout": 0.1}

    def __init__(self, n_bins: int, opts: ModelOptions):
        super().__init__(n_bins, opts)
        o = self.opts
        self.encoder = nn.ModuleList()
        c_in, bins = 1, n_bins
        for c, k_freq in ((16, 5), (32, 3), (64, 3)):
            self.encoder.append(ConvBlock2d(c_in, c, (3, k_freq), 4, act=nn.ELU))
            bins, c_in = self.encoder[-1].out_bins(bins), c
        self.encoder.append(ConvBlock2d(c_in, o.C, (1, bins), 1, freq_pad=0, act=nn.ELU))
        self.lstm = LSTM(o.C, o.lstm_hidden, bidirectional=False)
        self.trans = nn.Sequential(nn.Linear(o.lstm_hidden, o.trans), nn.ReLU(), nn.Dropout(o.dropout))
        self.dim = o.trans

    def forward(self, x, lengths):
        mask = sequence_mask(lengths, x.shape[1])
        y = time_mask(x.unsqueeze(1), mask)
        for layer in self.encoder:
            y = layer(y, mask)
        y = y.squeeze(-1).transpose(1, 2)  # (B, T, C)
        return self.trans(self.lstm(y, lengths)), lengths


class NISQA(Backbone):
    """NISQA CNN-SA-AP (Mittag et al. 2021): a CNN per mel segment (15 frames, hop 4), two
    self-attention layers (d=64) over segments, attention pooling. Frames of the output are segments.
    """

    frontend = {"feature": "logmel", "n_mels": 48, "hop": 160, "win": 320}  # 10 ms hop, 20 ms window
    uses = ("dropout",) + ATTENTION
    defaults = {"attn_heads": 1, "attn_dropout": 0.1, "layer_norm": True, "dropout": 0.1, "pooling": "attn"}
    seg_frames, seg_hop, d_model = 15, 4, 64

    def __init__(self, n_bins: int, opts: ModelOptions):
        super().__init__(n_bins, opts)
        o = self.opts

        def conv(c_in, c_out, pad=(1, 1)):
            return [nn.Conv2d(c_in, c_out, 3, padding=pad), nn.BatchNorm2d(c_out), nn.ReLU()]

        drop = nn.Dropout(o.dropout)
        # Adaptive pooling fixes the map sizes whatever the band count: (24, 7) -> (12, 5) -> (6, 3).
        self.cnn = nn.Sequential(
            *conv(1, 16),
            nn.AdaptiveMaxPool2d((24, 7)),
            *conv(16, 32),
            nn.AdaptiveMaxPool2d((12, 5)),
            drop,
            *conv(32, 64),
            drop,
            *conv(64, 64),
            nn.AdaptiveMaxPool2d((6, 3)),
            drop,
            *conv(64, 64),
            drop,
            *conv(64, 64, pad=(1, 0)),
            nn.Flatten(),
        )  # the last conv spans the 3 remaining time steps
        self.proj = nn.Linear(64 * 6, self.d_model)
        self.layers = nn.ModuleList(AttentionBlock(self.d_model, o, ff=self.d_model) for _ in range(2))
        self.dim = self.d_model

    def segments(self, lengths: torch.Tensor) -> torch.Tensor:
        """Segments per clip: enough to cover every valid frame (the last one zero-padded)."""
        extra = (lengths - self.seg_frames).clamp_min(0)
        return (extra + self.seg_hop - 1) // self.seg_hop + 1

    def forward(self, x, lengths):
        n_seg = self.segments(lengths)
        # From the shape, not from n_seg's values, so that an exported graph has no data-dependent size;
        # segments past a clip's own count are masked like any padding.
        count = (max(x.shape[1] - self.seg_frames, 0) + self.seg_hop - 1) // self.seg_hop + 1
        need = (count - 1) * self.seg_hop + self.seg_frames
        x = F.pad(x, (0, 0, 0, need - x.shape[1]))
        segs = x.unfold(1, self.seg_frames, self.seg_hop)  # (B, N, F, 15)
        mask = sequence_mask(n_seg, segs.shape[1])
        if self.training:  # only valid segments go through the CNN, so BatchNorm never sees padding
            valid = self.proj(self.cnn(segs[mask].unsqueeze(1)))
            emb = valid.new_zeros(x.shape[0], segs.shape[1], self.d_model)
            emb[mask] = valid
        else:  # BatchNorm's statistics are fixed: every segment in one pass, the padded ones zeroed after
            emb = self.proj(self.cnn(segs.flatten(0, 1).unsqueeze(1))).view(*segs.shape[:2], self.d_model)
            emb = emb * mask.unsqueeze(-1).to(emb.dtype)
        for layer in self.layers:
            emb = layer(emb, mask)
        return emb, n_seg


MODELS: dict[str, type[Backbone]] = {
    "qualitynet": QualityNet,
    "hasa": HASANet,
    "mosnet": MOSNet,
    "cnn": Cnn,
    "cnnA": CnnMAttn,
    "can2d": CAN2d,
    "lstmcan": LstmCAN,
    "crn": CRN,
    "nisqa": NISQA,
}

# ---------------------------------------------------------------- wrapper


class QualityModel(nn.Module):
    """Backbone + frame head + pooling (+ classifier). forward(x, lengths) -> dict, scores in MOS units:

    frame (B, T'), score (B,), mask (B, T') and, for head="cls", logits (B, K), frame_logits (B, T', K),
    reg (B,) regression branch, cls (B,) expected bin centre; score = cls or (reg + cls) / 2 per `predict`.
    """

    def __init__(self, arch: str, n_bins: int, opts: ModelOptions | None = None):
        super().__init__()
        if arch not in MODELS:
            raise MosqaError(f"model: unknown arch {arch!r}; choose one of: {', '.join(MODELS)}")
        backbone = MODELS[arch]
        self.arch, self.n_bins = arch, n_bins
        self.options = (opts or ModelOptions()).resolved({"pooling": "mean", **backbone.defaults})
        self.backbone = backbone(n_bins, self.options)
        self.head = ScoreHead(self.backbone.dim, self.options)

    @property
    def bin_centres(self) -> torch.Tensor | None:
        """(K,) scores of the classifier's bins; None for a regression head."""
        return getattr(self.head, "bin_centres", None)

    def config(self) -> dict:
        """arch + every resolved option: build_model(model.config(), n_bins) rebuilds this model."""
        return {"arch": self.arch, **asdict(self.options)}

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> dict:
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        x = x * sequence_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        h, lengths = self.backbone(x, lengths)
        return self.head(h, sequence_mask(lengths, h.shape[1]))


def build_model(cfg: dict, n_bins: int, explicit: set[str] = frozenset()) -> QualityModel:
    """A QualityModel from cfg (`arch` + ModelOptions fields; other keys ignored).

    `explicit` names the options the user set; one that does not apply to the architecture (or,
    for step/predict, to a regression head) is refused rather than silently ignored.
    """
    arch = cfg.get("arch")
    if arch not in MODELS:
        raise MosqaError(f"model: unknown arch {arch!r}; choose one of: {', '.join(MODELS)}")
    given = {k: v for k, v in cfg.items() if k in OPTION_NAMES and v is not None}
    backbone = MODELS[arch]
    # A value equal to the option's neutral default (e.g. local_mask 0) changes nothing: allowed.
    chosen = {name for name in set(explicit) & set(given) if given[name] != DEFAULTS[name]}
    for name in sorted(chosen):
        if name not in backbone.uses and name not in COMMON:
            raise MosqaError(
                f"model: option {name!r} has no effect on arch {arch!r} "
                f"(it uses: {', '.join(backbone.uses + COMMON)})"
            )
        if name in CLS_ONLY and given.get("head", "reg") != "cls":
            raise MosqaError(f"model: option {name!r} only applies to head 'cls'")
    return QualityModel(arch, n_bins, ModelOptions(**given))
