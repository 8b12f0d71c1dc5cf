"""Signs in a training log that the introspective game has stopped.

IntroVAE's and Soft-IntroVAE's encoder is trained to give generated samples a larger
KL(q(z|D(z)) ‖ p(z)) than real data (the adversarial terms of Eq. 4 and Algorithm 2). When it
gives them clearly *less* KL than real data over the end of a run, its side of the game has
stopped (the expELBO terms are then near zero) while the decoder still lowers the fakes' KL. The
authors' image script stops such runs (``exit_on_negative_diff``: the mean KL difference, fake
minus real, below zero after 50 epochs); genvae warns instead, since at the game's equilibrium
fakes and real data get equal KL (2-D runs end within a few per cent), and since what it means for
the samples varies (docs/user-guide.md and docs/results.md measure it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TAIL = 0.2  # the last fifth of the records logged after the warm-up
MIN_RECORDS = 5
MIN_GAME_STEPS = 500  # a shorter game (a smoke test) says nothing: its untrained encoder gives any KL
RATIO = 0.9  # fakes' KL below 90 % of real data's


class GameStoppedWarning(UserWarning):
    """Issued by ``genvae.train`` with :func:`repulsion_warning`'s message (``genvae train`` prints it)."""


def kl_pairs(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(real, fake) KL keys of a log record: ``kl``/``kl_fake``, or per latent group ``kl_G``/``kl_fake_G``."""
    real = [k for k in record if k == "kl" or (k.startswith("kl_") and not k.startswith("kl_fake"))]
    return [(k, "kl_fake" + k[2:]) for k in real if "kl_fake" + k[2:] in record]


def repulsion_warning(records: Sequence[Mapping[str, Any]], warmup_steps: int = 0) -> str | None:
    """A one-line warning when, over the last fifth of the introspective phase, the encoder gave
    generated samples less than 90 % of real data's KL; None otherwise (or with too few records,
    or a game shorter than ``MIN_GAME_STEPS``)."""
    game = [r for r in records if int(r.get("step", 0)) > warmup_steps and kl_pairs(r)]
    if len(game) < MIN_RECORDS or int(game[-1]["step"]) - warmup_steps < MIN_GAME_STEPS:
        return None
    tail = game[-max(MIN_RECORDS, round(TAIL * len(game))) :]
    real = sum(float(r[a]) for r in tail for a, _ in kl_pairs(r)) / len(tail)
    fake = sum(float(r[b]) for r in tail for _, b in kl_pairs(r)) / len(tail)
    if real <= 0 or fake >= RATIO * real:
        return None
    first, last = tail[0].get("step"), tail[-1].get("step")
    return (
        f"the encoder gave generated samples less KL than real data over steps {first}-{last} "
        f"({fake:.3g} vs {real:.3g} nats): it no longer pushes them away, while the decoder still lowers their KL "
        f"(the authors' code stops such runs); look at samples.png (docs/user-guide.md: when the introspective game stops)"
    )


def log_warning(records: Sequence[Mapping[str, Any]], objective: Mapping[str, Any]) -> str | None:
    """:func:`repulsion_warning` of a run's log records; ``objective`` (the run's settings) gives
    the warm-up (``num_vae``)."""
    return repulsion_warning(records, int(objective.get("num_vae") or 0))


def run_warning(run_dir: str | Path, objective: Mapping[str, Any]) -> str | None:
    """:func:`log_warning` of a run directory's training log."""
    from genvae.core.trainer import LOG_FILE
    from genvae.viz.curves import read_records  # matplotlib: not at import time

    return log_warning(read_records(Path(run_dir) / LOG_FILE), objective)
