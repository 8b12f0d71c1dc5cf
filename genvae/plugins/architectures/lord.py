"""LORD's two-encoder architecture (Gabbay & Hoshen, ICLR 2020), as used by Soft-IntroVAE for
unsupervised image translation (paper Section 6.4, Appendix 9.3, Figure 4(b)).

Encoder: two independent convolutional encoders, one for the *class* code and one for the
*content* code. Each is a stack of 4x4 stride-2 convolutions with ``channels`` (paper:
64, 128, 256, 256; a 64x64 image becomes 4x4x256), then 3 fully-connected layers
(``fc_dim``, ``fc_dim``, 2·code size) producing (μ, log σ²). The two posteriors are laid side
by side along dim 1, class first: ``latent_groups = {"class": class_dim, "content": content_dim}``
(paper, Cars3D at 64x64: class 256, content 128), so the objectives compute one KL per group.

Decoder (LORD's generator): the content code goes through 3 fully-connected layers to an
``adain_dim`` x h0 x w0 tensor (h0 = H / 16; widths h0·w0·adain_dim/8, h0·w0·adain_dim/4,
h0·w0·adain_dim as in lord-pytorch), then 6 convolutions: the first 4 are each preceded by x2
nearest upsampling and followed by AdaIN whose per-channel scale and shift come from the class
code through one linear "modulation" layer; then a 5x5 convolution to ``channels[0]`` maps and a
7x7 convolution to the image channels. LeakyReLU (slope 0.2) follows every layer but the last.

Output: a **sigmoid**, so decoded images lie in [0, 1] (as LORD); data must be in [0, 1].

Deviation from LORD (stated): AdaIN scales by ``1 + γ(z_class)`` rather than ``γ(z_class)``,
so that a freshly initialised decoder starts near unit scale (LORD's raw γ starts near 0).
Set ``adain_residual_scale = false`` for LORD's exact form.

Unconditional (``num_classes`` must be 0): training is unsupervised, labels are never used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Architecture, Decoder, Encoder
from genvae.errors import ConfigError, require_positive

N_ADAIN = 4  # upsampling + AdaIN blocks of the decoder (the paper's "first 4" convolutions)
SLOPE = 0.2  # LeakyReLU negative slope


def _check(data_shape: tuple[int, ...], num_classes: int, channels: list[int]) -> tuple[int, int, int]:
    if len(data_shape) != 3:
        raise ConfigError(f"the lord architecture needs images (C, H, W), got data shape {tuple(data_shape)}")
    if num_classes:
        raise ConfigError("the lord architecture is unsupervised: train it with train.conditional=false")
    c, h, w = data_shape
    if h % 2**N_ADAIN or w % 2**N_ADAIN:
        raise ConfigError(f"the lord decoder upsamples {N_ADAIN} times: image size must be a multiple of {2**N_ADAIN}, got {h}x{w}")
    if not channels or any(ch <= 0 for ch in channels):
        raise ConfigError(f"arch.channels must be a non-empty list of positive widths, got {channels}")
    if h % 2 ** len(channels) or w % 2 ** len(channels):
        raise ConfigError(f"{len(channels)} stride-2 convolutions need an image size divisible by {2 ** len(channels)}, got {h}x{w}")
    return c, h, w


class ConvGaussianEncoder(nn.Module):
    """Conv stack (4x4, stride 2, LeakyReLU) -> 3 FC layers -> (μ, log σ²) of size ``code_dim``."""

    def __init__(self, in_channels: int, size: tuple[int, int], channels: list[int], fc_dim: int, code_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for ch in channels:
            layers += [nn.Conv2d(width, ch, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(SLOPE)]
            width = ch
        self.conv = nn.Sequential(*layers)
        flat = width * (size[0] // 2 ** len(channels)) * (size[1] // 2 ** len(channels))
        self.fc = nn.Sequential(
            nn.Linear(flat, fc_dim), nn.LeakyReLU(SLOPE),
            nn.Linear(fc_dim, fc_dim), nn.LeakyReLU(SLOPE),
            nn.Linear(fc_dim, 2 * code_dim),
        )  # fmt: skip

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.fc(self.conv(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar


class LORDEncoder(Encoder):
    """x -> (μ, log σ²) of [class code | content code]."""

    def __init__(
        self,
        data_shape: tuple[int, ...] = (3, 64, 64),
        num_classes: int = 0,
        class_dim: int = 256,
        content_dim: int = 128,
        channels: list[int] = (64, 128, 256, 256),  # type: ignore[assignment]
        fc_dim: int = 256,
        adain_dim: int = 256,
        adain_residual_scale: bool = True,
    ) -> None:
        channels = list(channels)
        super().__init__(
            data_shape=list(data_shape), num_classes=num_classes, class_dim=class_dim, content_dim=content_dim,
            channels=channels, fc_dim=fc_dim, adain_dim=adain_dim, adain_residual_scale=adain_residual_scale,
        )  # fmt: skip
        c, h, w = _check(tuple(data_shape), num_classes, channels)
        require_positive("arch", class_dim=class_dim, content_dim=content_dim, fc_dim=fc_dim, adain_dim=adain_dim)
        self.latent_groups = {"class": class_dim, "content": content_dim}
        self.class_encoder = ConvGaussianEncoder(c, (h, w), channels, fc_dim, class_dim)
        self.content_encoder = ConvGaussianEncoder(c, (h, w), channels, fc_dim, content_dim)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu_class, logvar_class = self.class_encoder(x)
        mu_content, logvar_content = self.content_encoder(x)
        return torch.cat([mu_class, mu_content], dim=1), torch.cat([logvar_class, logvar_content], dim=1)


def adain(x: Tensor, scale: Tensor, shift: Tensor, eps: float = 1e-5) -> Tensor:
    """Adaptive instance normalisation: each (sample, channel) map normalised to zero mean and
    unit variance over its pixels, then ``scale * x + shift`` (scale, shift: (batch, channels))."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    normalized = (x - mean) * torch.rsqrt(var + eps)
    return normalized * scale[:, :, None, None] + shift[:, :, None, None]


class LORDDecoder(Decoder):
    """[class code | content code] -> image in [0, 1] (content through the convolutions,
    class through AdaIN)."""

    def __init__(
        self,
        data_shape: tuple[int, ...] = (3, 64, 64),
        num_classes: int = 0,
        class_dim: int = 256,
        content_dim: int = 128,
        channels: list[int] = (64, 128, 256, 256),  # type: ignore[assignment]
        fc_dim: int = 256,
        adain_dim: int = 256,
        adain_residual_scale: bool = True,
    ) -> None:
        channels = list(channels)
        super().__init__(
            data_shape=list(data_shape), num_classes=num_classes, class_dim=class_dim, content_dim=content_dim,
            channels=channels, fc_dim=fc_dim, adain_dim=adain_dim, adain_residual_scale=adain_residual_scale,
        )  # fmt: skip
        c, h, w = _check(tuple(data_shape), num_classes, channels)
        if adain_dim < 8:
            raise ConfigError(f"arch.adain_dim must be at least 8, got {adain_dim}")
        self.class_dim, self.content_dim, self.adain_dim = class_dim, content_dim, adain_dim
        self.residual_scale = adain_residual_scale
        self.h0, self.w0 = h // 2**N_ADAIN, w // 2**N_ADAIN
        cells = self.h0 * self.w0
        self.fc = nn.Sequential(
            nn.Linear(content_dim, cells * (adain_dim // 8)), nn.LeakyReLU(SLOPE),
            nn.Linear(cells * (adain_dim // 8), cells * (adain_dim // 4)), nn.LeakyReLU(SLOPE),
            nn.Linear(cells * (adain_dim // 4), cells * adain_dim), nn.LeakyReLU(SLOPE),
        )  # fmt: skip
        # one linear map from the class code to (scale, shift) of every AdaIN layer
        self.modulation = nn.Linear(class_dim, N_ADAIN * adain_dim * 2)
        self.adain_convs = nn.ModuleList(nn.Conv2d(adain_dim, adain_dim, kernel_size=3, padding=1) for _ in range(N_ADAIN))
        self.conv5 = nn.Conv2d(adain_dim, channels[0], kernel_size=5, padding=2)
        self.conv6 = nn.Conv2d(channels[0], c, kernel_size=7, padding=3)

    def adain_params(self, z_class: Tensor) -> tuple[Tensor, Tensor]:
        """(scale, shift), each (batch, N_ADAIN, adain_dim), from the class code."""
        params = self.modulation(z_class).view(-1, N_ADAIN, self.adain_dim, 2)
        scale, shift = params[..., 0], params[..., 1]
        return (1.0 + scale if self.residual_scale else scale), shift

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(class code, content code) of a latent laid out as ``latent_groups``."""
        if z.shape[1] != self.class_dim + self.content_dim:
            raise ValueError(f"expected latents of size {self.class_dim} + {self.content_dim}, got {z.shape[1]}")
        return z[:, : self.class_dim], z[:, self.class_dim :]

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        z_class, z_content = self.split(z)
        scale, shift = self.adain_params(z_class)
        h = self.fc(z_content).view(-1, self.adain_dim, self.h0, self.w0)
        for i, conv in enumerate(self.adain_convs):
            h = F.leaky_relu(conv(F.interpolate(h, scale_factor=2, mode="nearest")), SLOPE)
            h = adain(h, scale[:, i], shift[:, i])
        h = F.leaky_relu(self.conv5(h), SLOPE)
        return torch.sigmoid(self.conv6(h))


@hookimpl
def genvae_register_architectures(register) -> None:  # type: ignore[no-untyped-def]
    register(
        "lord",
        Architecture(
            LORDEncoder,
            LORDDecoder,
            "LORD two-encoder (class + content) network with an AdaIN decoder, sigmoid output (image translation, Appendix 9.3)",
        ),
    )
