"""The interface a plugin's networks and objective must keep, checked on their first use in a
run: an encoder returning the wrong shape would broadcast through the losses, train, and fail
much later in a figure with a long traceback; a non-scalar loss fails inside autograd. Each is
one line naming the plugin's part, what it returned and what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from genvae.core.interfaces import Models, PhaseOutput
from genvae.errors import PluginError


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


@dataclass
class CheckedModels(Models):
    """Models whose encoder and decoder outputs are checked on their first call."""

    architecture: str = "?"
    sample_shape: tuple[int, ...] = ()
    grows: bool = False  # a progressively grown decoder's images are smaller than the data's until grown
    _encoder_checked: bool = False
    _decoder_checked: bool = False

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        out = super().encode(x, y)
        if not self._encoder_checked:
            self._check_encoded(out, x.shape[0])
            self._encoder_checked = True
        return out

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        out = super().decode(z, y)
        if not self._decoder_checked:
            self._check_decoded(out, z.shape[0])
            self._decoder_checked = True
        return out

    def _check_encoded(self, out: Any, batch: int) -> None:
        width = sum(self.latent_groups.values())
        where = f"architecture {self.architecture!r}: its encoder returned"
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
            got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
            raise PluginError(f"{where} {got}; it must return (mu, logvar), two tensors of shape (batch, {width})")
        if any(tuple(t.shape) != (batch, width) for t in out):
            raise PluginError(f"{where} mu {_shape(out[0])} and logvar {_shape(out[1])} for a batch of {batch}; expected ({batch}, {width}) "
                              f"each, the batch by the sum of its latent_groups {self.latent_groups}")  # fmt: skip

    def _check_decoded(self, out: Any, batch: int) -> None:
        expected = (batch, *self.sample_shape)
        where = f"architecture {self.architecture!r}: its decoder returned"
        if not isinstance(out, Tensor):
            raise PluginError(f"{where} {type(out).__name__}; it must return one tensor of shape {expected}")
        fits = tuple(out.shape) == expected
        if self.grows:  # smaller images while growing: the batch, the channels and square images
            fits = out.dim() == len(expected) and tuple(out.shape[:2]) == expected[:2] and out.shape[-1] == out.shape[-2]
        if not fits:
            raise PluginError(f"{where} {_shape(out)} for {batch} codes; expected {expected}, the batch by the data's sample shape")


def check_phase(trains: tuple[str, ...], parts: Any, objective: str, phase: str) -> None:
    """A phase trains parts the trainer has (``encoder``, ``decoder``)."""
    unknown = [p for p in trains if p not in parts]
    if unknown or not trains:
        raise PluginError(f"objective {objective!r}, phase {phase!r} trains {', '.join(map(repr, unknown)) or 'nothing'}; "
                          f"a phase trains one or more of the parts {', '.join(parts)}")  # fmt: skip


def check_phase_output(out: Any, objective: str, phase: str) -> None:
    """An objective's ``phase_loss`` returns PhaseOutput(loss: a scalar tensor, logs: name -> tensor)."""
    where = f"objective {objective!r}, phase {phase!r}: phase_loss returned"
    if not isinstance(out, PhaseOutput):
        raise PluginError(f"{where} {type(out).__name__}; return genvae.PhaseOutput(loss, logs)")
    if not isinstance(out.loss, Tensor) or out.loss.numel() != 1:
        raise PluginError(f"{where} a loss of {_shape(out.loss)}; the loss must be a scalar tensor (average over the batch: .mean())")
    bad = [k for k, v in out.logs.items() if not (isinstance(v, Tensor) and v.numel() == 1)] if isinstance(out.logs, dict) else ["logs"]
    if bad:
        raise PluginError(f"{where} logs that are not scalar tensors ({', '.join(map(str, bad))}); log name -> tensor of one value (.detach())")
