"""The style-based encoder / decoder of the paper's FFHQ and CelebA-HQ models (Section 6.3,
Figure 4(c), Appendix 9.2.2 "Style-based architecture"), grown progressively.

Decoder (StyleGAN's generator, as in ALAE): a mapping network z -> w (``mapping_layers`` fully
connected layers), a learned constant 4x4 input and one block per resolution 4, 8, ..., S. A
block is [upsample x2 (not at 4x4), 3x3 conv, noise, bias, LReLU, AdaIN(w)] twice; AdaIN is
instance normalisation followed by a per-channel scale (1 + a) and shift b computed from w.
Each resolution has a 1x1 to-RGB layer.

Encoder (ALAE's symmetric style encoder): a 1x1 from-RGB layer per resolution, then blocks from
the input resolution down to 4x4. Every instance normalisation in a block emits the mean and
standard deviation of each channel of its input, and the encoder's style vector is
w = sum_i C_i [mu(y_i), sigma(y_i)] with learned linear maps C_i. A mapping network w ->
(mu_q, logvar_q) (``encoder_mapping_layers`` layers) gives the posterior.

Both networks work on images in [-1, 1], as the authors' code (``x / 127.5 - 1``): the encoder
maps its [0, 1] input to [-1, 1] first and the decoder maps its output back, so that at
initialisation the to-RGB layers (zero bias) sit at mid-grey, not at black. Squared errors are
measured on genvae's [0, 1] images, a quarter of the authors', hence the face datasets'
beta_rec = 4 x the authors' value (genvae/plugins/datasets/images.py).

All linear and convolution layers use the equalized learning rate of ProGAN: weights are stored
as N(0, 1) and multiplied at run time by gain / sqrt(fan_in).

Progressive growing (ProGAN / ALAE): both networks hold every block from the start and run at
``level`` (0: 4x4, 1: 8x8, ...). While a new level fades in (``alpha`` from 0 to 1), the decoder's
output is lerp(upsample(to_rgb_{level-1}(h_{level-1})), to_rgb_level(block_level(h_{level-1})), alpha)
and the encoder's features at the previous resolution are
lerp(from_rgb_{level-1}(avgpool(x)), block_level(from_rgb_level(x)), alpha); the new block's
styles enter w multiplied by alpha. At alpha = 0 the networks compute exactly the previous
level's function (on upsampled / downsampled images); at alpha = 1 the old path is gone. The
trainer sets (level, alpha) each step from the ``[grow]`` schedule (genvae/core/progressive.py);
both are buffers, so an exported model samples at the level it was trained to.

Per-pixel noise inputs are drawn in training mode only (from the trainer's seeded noise source,
see Models.decode); in eval mode they take their mean, 0, so that samples, reconstructions and a
reloaded export are deterministic.

Differences from ALAE, for simplicity: no blur after up / down sampling, no fused transposed
convolutions, no style mixing during training (mixing and truncation are sampling options), and
the 4x4 encoder block's dense layer maps straight to w (ALAE: dense, LReLU, linear to w).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Architecture, Decoder, Encoder, append_label
from genvae.errors import ConfigError

Noise = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------------
# Equalized-learning-rate layers
# --------------------------------------------------------------------------------------------


class EqLinear(nn.Module):
    """Linear layer with weights N(0, 1) scaled by gain / sqrt(fan_in) · lr_mul at run time."""

    def __init__(self, fan_in: int, fan_out: int, gain: float = math.sqrt(2), lr_mul: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((fan_out,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul = gain / math.sqrt(fan_in) * lr_mul, lr_mul

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqConv2d(nn.Module):
    """Square convolution ('same' padding) with equalized learning rate; bias added separately."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, gain: float = math.sqrt(2), bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale, self.padding = gain / math.sqrt(in_channels * kernel * kernel), kernel // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


def mapping_network(in_dim: int, width: int, out_dim: int, layers: int, lr_mul: float = 0.1) -> nn.Sequential:
    """``layers`` equalized linear layers with LReLU(0.2) between them (none after the last)."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules.append(EqLinear(in_dim if i == 0 else width, out_dim if i == layers - 1 else width, lr_mul=lr_mul))
        if i < layers - 1:
            modules.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*modules)


def to_centred(x: Tensor) -> Tensor:
    """genvae's images in [0, 1] -> the [-1, 1] that the style networks work in."""
    return x * 2 - 1


def from_centred(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1]: the decoder's output as genvae's image."""
    return (x + 1) / 2


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def channel_statistics(x: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor, Tensor]:
    """(instance-normalised x, per-channel mean, per-channel standard deviation)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    centred = x - mean
    std = torch.sqrt(centred.pow(2).mean(dim=(2, 3), keepdim=True) + eps)
    return centred / std, mean.flatten(1), std.flatten(1)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def level_channels(resolution: int, start_channels: int, max_channels: int) -> list[int]:
    """Channels of each level, 4x4 first: ``start_channels`` at full resolution, doubling at
    every halving of the resolution, capped at ``max_channels``."""
    levels = int(math.log2(resolution)) - 1
    return [min(max_channels, start_channels * 2 ** (levels - 1 - i)) for i in range(levels)]


def _check_geometry(data_shape, start_channels: int, max_channels: int, z_dim: int, w_dim: int) -> tuple[int, int]:
    if len(data_shape) != 3:
        raise ConfigError(f"the style architecture needs images shaped (C, H, W), got data shape {tuple(data_shape)}")
    image_channels, height, width = (int(d) for d in data_shape)
    if height != width or height < 4 or height & (height - 1):
        raise ConfigError(f"the style architecture needs square images with a power-of-two side >= 4, got {height}x{width}; set data.resolution")
    if min(start_channels, max_channels, z_dim, w_dim) <= 0:
        raise ConfigError("arch.start_channels, arch.max_channels, arch.z_dim and arch.w_dim must be positive")
    return image_channels, height


class _StyleNetwork:
    """What the style encoder and decoder share: their options (one constructor, so both accept
    the same ``[arch]`` table), the channels per level and the (level, alpha) buffers."""

    num_levels: int

    def __init__(
        self,
        data_shape: tuple[int, ...] = (3, 256, 256),
        num_classes: int = 0,
        z_dim: int = 512,
        w_dim: int = 512,
        start_channels: int = 64,
        max_channels: int = 512,
        mapping_layers: int = 8,
        encoder_mapping_layers: int = 3,
        noise: bool = True,
    ) -> None:
        super().__init__(  # type: ignore[call-arg]  # Component.__init__, next in the MRO
            data_shape=[int(d) for d in data_shape], num_classes=int(num_classes), z_dim=int(z_dim), w_dim=int(w_dim),
            start_channels=int(start_channels), max_channels=int(max_channels), mapping_layers=int(mapping_layers),
            encoder_mapping_layers=int(encoder_mapping_layers), noise=bool(noise),
        )
        image_channels, size = _check_geometry(data_shape, start_channels, max_channels, z_dim, w_dim)
        self.num_classes, self.use_noise = int(num_classes), bool(noise)
        channels = level_channels(size, int(start_channels), int(max_channels))
        self.num_levels = len(channels)
        self.register_buffer("level", torch.tensor(self.num_levels - 1, dtype=torch.long))  # type: ignore[attr-defined]
        self.register_buffer("alpha", torch.tensor(1.0))  # type: ignore[attr-defined]
        self.build(image_channels, channels)

    def build(self, image_channels: int, channels: list[int]) -> None:
        """Create the layers; ``channels`` lists each level's width, 4x4 first."""
        raise NotImplementedError

    def set_growth(self, level: int, alpha: float) -> None:
        """Run at ``level`` (0: 4x4) with the newest block blended in by ``alpha`` in [0, 1]."""
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level {level} is outside 0..{self.num_levels - 1}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha {alpha} is outside [0, 1]")
        self.level.fill_(int(level))  # type: ignore[attr-defined]
        self.alpha.fill_(float(alpha))  # type: ignore[attr-defined]

    def growth(self) -> tuple[int, float]:
        return int(self.level), float(self.alpha)  # type: ignore[attr-defined]

    def resolution(self, level: int | None = None) -> int:
        return 4 * 2 ** (int(self.level) if level is None else level)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------


class StyleLayer(nn.Module):
    """conv (optional), per-pixel noise, bias, LReLU(0.2), AdaIN(w)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv: bool = True) -> None:
        super().__init__()
        self.conv = EqConv2d(in_channels, out_channels, 3, bias=False) if conv else None
        self.noise_weight = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.style = EqLinear(w_dim, 2 * out_channels, gain=1.0)

    def forward(self, x: Tensor, w: Tensor, noise: Noise | None) -> Tensor:
        if self.conv is not None:
            x = self.conv(x)
        if noise is not None:
            x = x + self.noise_weight * noise(x[:, :1])
        x = F.leaky_relu(x + self.bias, 0.2)
        x, _, _ = channel_statistics(x)
        scale, shift = self.style(w)[:, :, None, None].chunk(2, dim=1)
        return x * (scale + 1) + shift


class DecoderBlock(nn.Module):
    """One resolution of the synthesis network: two style layers (x2 upsampling first, except
    at 4x4 where the first layer modulates the learned constant)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, first: bool) -> None:
        super().__init__()
        self.first = first
        self.layer1 = StyleLayer(in_channels, out_channels, w_dim, conv=not first)
        self.layer2 = StyleLayer(out_channels, out_channels, w_dim)

    def forward(self, x: Tensor, w1: Tensor, w2: Tensor, noise: Noise | None) -> Tensor:
        if not self.first:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.layer2(self.layer1(x, w1, noise), w2, noise)


class StyleDecoder(_StyleNetwork, Decoder):
    """z -> w (mapping network) -> image, StyleGAN-style, at the current growth level."""

    draws_noise = True  # Models.decode passes its seeded noise source (per-pixel noise inputs)

    def build(self, image_channels: int, channels: list[int]) -> None:
        c = self.config
        self.mapping = mapping_network(c["z_dim"] + self.num_classes, c["w_dim"], c["w_dim"], c["mapping_layers"])
        self.const = nn.Parameter(torch.ones(1, channels[0], 4, 4))
        self.blocks = nn.ModuleList(
            DecoderBlock(channels[max(i - 1, 0)], ch, c["w_dim"], first=i == 0) for i, ch in enumerate(channels)
        )
        # gain 0.03 as ALAE's ToRGB: images start near mid-grey, and the to-RGB weights move slowly
        self.to_rgb = nn.ModuleList(EqConv2d(ch, image_channels, 1, gain=0.03) for ch in channels)

    @property
    def num_style_layers(self) -> int:
        return 2 * self.num_levels

    def map(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z -> w (the input is pixel-normalised first, as StyleGAN's and ALAE's mapping)."""
        return self.mapping(pixel_norm(append_label(z, y, self.num_classes)))

    def synthesize(self, ws: Tensor, noise: Noise | None = None) -> Tensor:
        """Images from per-layer styles ``ws`` (batch, num_style_layers, w_dim)."""
        level, alpha = self.growth()
        if not (self.use_noise and self.training):
            noise = None  # eval mode is deterministic: every noise input takes its mean, 0
        elif noise is None:
            noise = torch.randn_like
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        previous = x
        for i in range(level + 1):
            previous = x
            x = self.blocks[i](x, ws[:, 2 * i], ws[:, 2 * i + 1], noise)
        out = self.to_rgb[level](x)
        if level > 0 and alpha < 1.0:
            old = F.interpolate(self.to_rgb[level - 1](previous), scale_factor=2, mode="nearest")
            out = torch.lerp(old, out, alpha)
        return from_centred(out)

    def forward(self, z: Tensor, y: Tensor | None = None, noise: Noise | None = None) -> Tensor:
        w = self.map(z, y)
        return self.synthesize(w.unsqueeze(1).expand(-1, self.num_style_layers, -1), noise)

    @torch.no_grad()
    def mean_w(self, y: Tensor | None = None, n: int = 4096, seed: int = 0) -> Tensor:
        """The average style (StyleGAN's w_avg), estimated from ``n`` prior samples."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.config["z_dim"], generator=g).to(self.const.device)
        labels = None
        if self.num_classes:
            labels = (y[:1].expand(n) if y is not None else torch.randint(self.num_classes, (n,), generator=g).to(z.device))
        return self.map(z, labels).mean(dim=0)

    @torch.no_grad()
    def sample(
        self, z: Tensor, y: Tensor | None = None, truncation: float = 1.0, truncation_layers: int | None = None,
        mix_z: Tensor | None = None, crossover: int | None = None, noise: Noise | None = None,
    ) -> Tensor:
        """Images with StyleGAN's sampling tricks. ``truncation`` psi < 1 pulls w towards the
        average style in the first ``truncation_layers`` style layers (default: all); with
        ``mix_z`` the style layers from ``crossover`` on take their w from ``mix_z`` (style mixing)."""
        w = self.map(z, y)
        ws = w.unsqueeze(1).repeat(1, self.num_style_layers, 1)
        if mix_z is not None:
            if crossover is None or not 0 <= crossover <= self.num_style_layers:
                raise ValueError(f"crossover must be in 0..{self.num_style_layers}, got {crossover}")
            ws[:, crossover:] = self.map(mix_z, y).unsqueeze(1)
        if truncation != 1.0:
            cut = self.num_style_layers if truncation_layers is None else truncation_layers
            ws[:, :cut] = torch.lerp(self.mean_w(y).to(ws.dtype), ws[:, :cut], truncation)
        return self.synthesize(ws, noise)


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


class EncoderBlock(nn.Module):
    """One resolution of the style encoder: conv, LReLU, IN (styles 1); conv, x2 average pooling,
    LReLU, IN (styles 2). Returns the features at half resolution and this block's share of w.
    The 4x4 block ends in a linear layer over the flattened features instead (as ALAE)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, last: bool) -> None:
        super().__init__()
        self.last = last
        self.conv1 = EqConv2d(in_channels, in_channels, 3)
        self.style1 = EqLinear(2 * in_channels, w_dim, gain=1.0)
        if last:
            self.dense = EqLinear(in_channels * 16, w_dim, gain=1.0)
        else:
            self.conv2 = EqConv2d(in_channels, out_channels, 3)
            self.style2 = EqLinear(2 * out_channels, w_dim, gain=1.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, mean, std = channel_statistics(F.leaky_relu(self.conv1(x), 0.2))
        w = self.style1(torch.cat([mean, std], dim=1))
        if self.last:
            return x, w + self.dense(x.flatten(1))
        x = F.leaky_relu(F.avg_pool2d(self.conv2(x), 2), 0.2)
        x, mean, std = channel_statistics(x)
        return x, w + self.style2(torch.cat([mean, std], dim=1))


class StyleEncoder(_StyleNetwork, Encoder):
    """image -> w = sum of the blocks' instance-norm styles -> (mu, logvar), at the current level.
    Images larger than the current resolution are average-pooled down to it first."""

    def build(self, image_channels: int, channels: list[int]) -> None:
        c = self.config
        self.latent_groups = {"z": c["z_dim"]}
        self.from_rgb = nn.ModuleList(EqConv2d(image_channels, ch, 1) for ch in channels)
        self.blocks = nn.ModuleList(
            EncoderBlock(ch, channels[max(i - 1, 0)], c["w_dim"], last=i == 0) for i, ch in enumerate(channels)
        )
        self.mapping = mapping_network(c["w_dim"] + self.num_classes, c["w_dim"], 2 * c["z_dim"], c["encoder_mapping_layers"])

    def _from_rgb(self, level: int, x: Tensor) -> Tensor:
        return F.leaky_relu(self.from_rgb[level](x), 0.2)

    def styles(self, x: Tensor) -> Tensor:
        """w: the sum over blocks of C_i [mu(y_i), sigma(y_i)] (the newest block's share times alpha)."""
        level, alpha = self.growth()
        size = self.resolution(level)
        if x.shape[-1] != size:
            if x.shape[-1] % size:
                raise ValueError(f"the encoder at {size}x{size} cannot take {x.shape[-1]}x{x.shape[-1]} images")
            x = F.avg_pool2d(x, x.shape[-1] // size)
        x = to_centred(x)
        h, w = self.blocks[level](self._from_rgb(level, x))
        if level > 0 and alpha < 1.0:
            h = torch.lerp(self._from_rgb(level - 1, F.avg_pool2d(x, 2)), h, alpha)
            w = w * alpha
        for i in range(level - 1, -1, -1):
            h, w_i = self.blocks[i](h)
            w = w + w_i
        return w

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu, logvar = self.mapping(append_label(self.styles(x), y, self.num_classes)).chunk(2, dim=1)
        return mu, logvar


@hookimpl
def genvae_register_architectures(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "style",
        Architecture(
            StyleEncoder,
            StyleDecoder,
            "style-based encoder (ALAE) / decoder (StyleGAN), progressive growing (paper Sec. 6.3; options z_dim, w_dim, start_channels, max_channels)",
        ),
    )
