"""Log-likelihood of held-out data (``genvae eval likelihood``): the ELBO and the importance-
weighted bound log (1/M) Σ_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2016), both
from the same M draws per image; the decoder density is the one the objective trains (see
``genvae.plugins.metrics.ood``). The IWAE bound is the tighter one and approaches log p(x) as M
grows, so the default M is 100 (the paper's OOD scores use 5).

Reported per image in nats (mean over the images, and the standard error of that mean) and as
bits per dimension, −IWAE / (D·ln 2), of the density of pixels in [0, 1] (add 8 for the
convention of continuous densities on [0, 256)).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from genvae.core.checkpoint import append_metrics_record
from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import DataSource, Metric
from genvae.errors import ConfigError
from genvae.plugins.metrics.ood import open_eval_data, require_split, run_scores, split_label

DEFAULT_SAMPLES = 100
RESULTS_FILE = "likelihood.jsonl"


def evaluate_likelihood(
    run: Any,
    data: str | DataSource | None = None,
    split: str = "test",
    n: int | None = None,
    samples: int = DEFAULT_SAMPLES,
    batch_size: int = 500,
    seed: int = 0,
    write: bool = True,
) -> dict[str, Any]:
    """Mean ELBO and IWAE bound of ``n`` images (default: the whole split) of ``data`` (default:
    the run's dataset); appended to ``RUN/metrics/likelihood.jsonl``."""
    require_split(split)
    for flag, value in (("--num-images", n), ("--samples", samples), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    start = time.perf_counter()
    source, label = open_eval_data(data, run.data, split)
    scores = run_scores(run, source, split, n, samples, batch_size, seed)
    dims = math.prod(run.data.shape)

    def mean_and_error(values: np.ndarray) -> tuple[float, float]:
        return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0

    elbo, elbo_error = mean_and_error(scores["elbo"])
    iwae, iwae_error = mean_and_error(scores["iwae"])
    objective = run.config.objective
    result: dict[str, Any] = {
        "elbo": elbo,
        "elbo_std_error": elbo_error,
        "iwae": iwae,
        "iwae_std_error": iwae_error,
        "nll": -iwae,
        "bits_per_dim": -iwae / (dims * math.log(2.0)),
        "samples": samples,
        "images": len(scores["iwae"]),
        "data": run.config.data["name"] if data is None else label,
        "split": split_label(source, split, run.data),
        "objective": objective["name"],
        "recon_loss": objective.get("recon_loss", "mse"),
        "beta_rec": float(objective.get("beta_rec", 1.0)),
        "run": str(run.path),
        "step": getattr(run, "step", None),
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 2),
    }
    if write:
        append_metrics_record(run.path, RESULTS_FILE, result)
    return result


def evaluate(run: Any, seed: int = 0, **options: Any) -> dict[str, Any]:
    """The registered metric: ``genvae eval metric likelihood RUN [--option samples=1000]``."""
    return evaluate_likelihood(run, seed=seed, **options)


@hookimpl
def genvae_register_metrics(register) -> None:  # type: ignore[no-untyped-def]
    register("likelihood", Metric(evaluate=evaluate, description="held-out log-likelihood: ELBO and IWAE bound, nats and bits per dimension"))
