"""The latent space as an evaluation (``genvae eval latents RUN``, or ``train.eval=[latents]``):
how many latent dimensions are active and the KL per image (per latent group too), recorded in
``RUN/metrics/latents.jsonl`` with the picture ``RUN/metrics/latents.png``. During training its
curves show a posterior collapsing (Appendix 9.5: active units and KL fall to 0).
``genvae encode`` computes the same and also saves every image's code."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from genvae.core.checkpoint import append_metrics_record
from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import DataSource, Metric

RESULTS_FILE = "latents.jsonl"
DEFAULT_IMAGES = 2000


def evaluate_latents(run: Any, data: str | DataSource | None = None, split: str = "test", n: int | None = DEFAULT_IMAGES,
                     seed: int = 0, figure: bool = True, write: bool = True) -> dict[str, Any]:  # fmt: skip
    """Active units and KL per image of ``n`` images (None: the whole split) of ``data``."""
    from genvae.latents import encode_data, plot_latents, summary

    start = time.perf_counter()
    encoded = encode_data(run, data, split, n, seed=seed)
    stats = summary(encoded)
    result: dict[str, Any] = {
        **{k: float(v) for k, v in stats.items() if k not in ("n", "z_dim")},  # measured numbers: curves during training
        "z_dim": stats["z_dim"],
        encoded["items"]: stats["n"],
        "data": encoded["data"],
        "split": encoded["split"],
        "objective": run.config.objective["name"],
        "run": str(run.path),
        "step": getattr(run, "step", None),
        "seed": seed,
    }
    if figure:
        path = Path(run.path) / "metrics" / "latents.png"
        result["figure"] = str(plot_latents(encoded, path, title=f"{run.config.objective['name']}: {run.path} (step {result['step']})"))
    result["seconds"] = round(time.perf_counter() - start, 2)
    if write:
        append_metrics_record(run.path, RESULTS_FILE, result)
    return result


def evaluate(run: Any, seed: int = 0, **options: Any) -> dict[str, Any]:
    """The registered metric: ``genvae eval metric latents RUN [--option n=5000]``."""
    return evaluate_latents(run, seed=seed, **options)


@hookimpl
def genvae_register_metrics(register) -> None:  # type: ignore[no-untyped-def]
    register("latents", Metric(evaluate=evaluate, description="active latent units and KL per image (per latent group); a collapse shows as 0"))
