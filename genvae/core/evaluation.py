"""Evaluation during training: every ``train.eval_every`` steps (and at the first and last step)
the metrics named in ``train.eval`` score the networks as they are, with ``train.eval_options``.

Each evaluation appends one record to ``RUN/evals.jsonl`` — the step and each metric's measured
numbers as ``<metric>.<value>`` (e.g. ``toy2d.kl``) — and redraws ``RUN/evals.png``. The metrics
also write what they write when run by ``genvae eval`` (figures, ``RUN/metrics/*.jsonl``), so the
latest figures are always those of the latest evaluation.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, Mapping

from genvae.errors import ConfigError, EvaluationError, PluginError

EVALS_FILE = "evals.jsonl"
EVALS_FIGURE = "evals.png"
EVAL_SEED = 0  # the seed `genvae eval` uses by default, so that the last evaluation matches it
NOT_MEASURED = ("seconds", "seed")


def measured_values(result: Mapping[str, Any]) -> dict[str, float]:
    """The numbers a metric measured: its float results, without timings and loss weights."""
    return {k: v for k, v in result.items() if isinstance(v, float) and k not in NOT_MEASURED and not k.startswith("beta")}


def planned_metrics(train: Any, data_kind: str) -> dict[str, dict[str, Any]]:
    """Metric name -> options of the evaluations ``train`` asks for (2-D data: ``toy2d`` unless named)."""
    if not train.eval_every:
        return {}
    names = list(train.eval) or (["toy2d"] if data_kind == "points" else [])
    return {name: dict(train.eval_options.get(name, {})) for name in names}


def check_evaluations(train: Any, data_kind: str, plugins: Any) -> None:
    """Refuse evaluation settings that could only fail later, when the first evaluation is due."""
    if train.eval_every < 0:
        raise ConfigError(f"train.eval_every must be >= 0, got {train.eval_every}")
    if train.eval and not train.eval_every:
        raise ConfigError(f"train.eval names {', '.join(train.eval)} but train.eval_every is 0; set train.eval_every=N (steps between evaluations)")
    if train.eval_every and not train.eval and data_kind != "points":
        raise ConfigError("train.eval_every is set but train.eval names no metric; name them, e.g. --set train.eval=[ood] "
                          "--set 'train.eval_options={ood={out=\"mnist\", n=2000}}' (metrics: genvae plugins list)")  # fmt: skip
    for name in train.eval:
        try:
            plugins.metrics.get(name)
        except PluginError as exc:  # "unknown metric ...; did you mean ...? available: ..."
            raise ConfigError(f"train.eval: {exc}") from None
    for name in train.eval_options:  # their types are checked with the other settings
        if name not in train.eval and not (name == "toy2d" and not train.eval and data_kind == "points"):
            raise ConfigError(f"train.eval_options.{name} is set but {name!r} is not in train.eval; add it: --set train.eval=[{name}]")


def call_metric(name: str, metric: Any, run: Any, seed: int, options: Mapping[str, Any]) -> dict[str, Any]:
    """``metric.evaluate(run, seed=seed, **options)``; an option the metric does not take becomes a
    one-line error listing the ones it does."""
    try:
        return metric.evaluate(run, seed=seed, **checked_options(name, metric.evaluate, options))
    except TypeError as exc:
        match = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
        if not match or match.group(1) not in options:
            raise
        valid = ", ".join(metric_options(metric.evaluate, exc)) or "none"
        raise ConfigError(f"metric {name!r} has no option {match.group(1)!r}; its options: {valid}") from None


def checked_options(name: str, evaluate: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` checked against the types of the parameters they reach: those of ``evaluate``
    and of the functions of its module that it calls, so that a wrong type stops with one line
    instead of an error deep inside the metric. Options no signature names pass unchanged."""
    from genvae.core.config import check_option, signature_options

    module, code = inspect.getmodule(evaluate), getattr(evaluate, "__code__", None)
    called = [f for n in (code.co_names if code else ()) if inspect.isfunction(f := getattr(module, n, None))]
    params = signature_options(evaluate, *called, skip=("self", "run", "seed"))
    return {k: check_option(f"metric {name!r} option {k}", v, params[k]) if k in params else v for k, v in options.items()}


def metric_options(evaluate: Any, exc: TypeError) -> list[str]:
    """The keyword options of a metric's ``evaluate`` and of the function it passed them on to
    (named in the TypeError, looked up in the metric's module)."""
    from genvae.core.config import signature_options

    functions = [evaluate]
    inner = re.match(r"(\w+)\(\) got an unexpected keyword argument", str(exc))
    passed_to = getattr(inspect.getmodule(evaluate), inner.group(1), None) if inner else None
    if callable(passed_to):
        functions.append(passed_to)
    return sorted(signature_options(*functions, skip=("self", "run", "seed")))


def evaluate_now(run: Any, metrics: Mapping[str, Mapping[str, Any]], plugins: Any, is_main: bool) -> dict[str, float]:
    """Run each planned metric on ``run`` (a :class:`~genvae.core.run.LoadedRun` of the training
    networks); ``<metric>.<value>`` of each measured number. A metric registered with
    ``distributed=True`` is called on every process (it gathers its own work); the others only on
    the main process."""
    values: dict[str, float] = {}
    for name, options in metrics.items():
        metric = plugins.metrics.get(name)
        if not (is_main or getattr(metric, "distributed", False)):
            continue
        result = call_metric(name, metric, run, EVAL_SEED, options)
        values.update({f"{name}.{key}": value for key, value in measured_values(result).items()})
    return values


def evaluation_failed(error: Exception, step: int, checkpoint_step: int | None) -> EvaluationError:
    kept = f"the checkpoint of step {checkpoint_step} is kept" if checkpoint_step is not None else "nothing was trained yet"
    return EvaluationError(f"evaluation during training failed at step {step}: {error}; training stopped, {kept}; "
                           "fix train.eval / train.eval_options and continue with --resume")  # fmt: skip


def records_to_draw(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``RUN/evals.jsonl`` worth drawing: without the untrained networks' (step 0)
    once there are later ones, whose values would squash the curves' scale."""
    from genvae.viz.curves import read_records

    records = read_records(Path(run_dir) / EVALS_FILE)
    return [r for r in records if r.get("step")] if len(records) > 1 else records


def plot_evaluations(run_dir: Path) -> Path | None:
    """``RUN/evals.png``: one panel per evaluated number, in the order the metrics report them."""
    from genvae.viz.curves import plot_curves

    records = records_to_draw(run_dir)
    keys = list(dict.fromkeys(k for record in records for k in record if k != "step"))
    return plot_curves({"": records}, Path(run_dir) / EVALS_FIGURE, keys) if keys else None
