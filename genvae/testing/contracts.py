"""Contract tests a plugin inherits by naming itself (diffusers' tester-mixin idea).

Subclass one contract in a class whose name starts with ``Test``, set the class attributes, and
pytest runs every check below against your plugin::

    from genvae.testing import ObjectiveContract

    class TestMyObjective(ObjectiveContract):
        objective_name = "my-vae"
        objective_options = {"beta_kl": 0.5}

All checks are small (tiny networks, a few steps on 2-D data) and run on the CPU.
"""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from genvae.core.checkpoint import export_component
from genvae.core.config import merge_user, to_jsonable
from genvae.core.interfaces import Batch, DataSource
from genvae.core.losses import reconstruction_error
from genvae.core.plugins import get_plugins
from genvae.core.run import LoadedRun, ResolvedConfig, load_component, load_run, resolve
from genvae.core.trainer import Trainer, train
from genvae.errors import ConfigError


def _user(settings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    user = merge_user(None, [], {})
    for section, values in settings.items():
        user[section].update(values)
    return user


class _NamedContract:
    """A contract's test class must name the plugin it checks (``objective_name``, ``arch_name``,
    ``dataset_name`` or ``metric_name``): said once when the class is defined, not as an
    AttributeError in every test."""

    name_attribute: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("Test") and not isinstance(getattr(cls, cls.name_attribute, None), str):
            raise TypeError(f"{cls.__name__}: set the class attribute {cls.name_attribute} = \"...\" to the name your plugin "
                            "registers (see docs/plugins.md)")  # fmt: skip


class ObjectiveContract(_NamedContract):
    """Checks for an objective plugin, trained on a tiny MLP and 2-D data (override the tables)."""

    name_attribute = "objective_name"

    objective_name: ClassVar[str]
    objective_options: ClassVar[dict[str, Any]] = {}
    arch: ClassVar[dict[str, Any]] = {"name": "mlp", "hidden": 32}
    data: ClassVar[dict[str, Any]] = {"name": "checkerboard"}
    train_settings: ClassVar[dict[str, Any]] = {"batch_size": 64, "log_every": 1, "checkpoint_every": 0}
    optim_settings: ClassVar[dict[str, Any]] = {"lr": 1e-3, "milestones": []}
    training_steps: ClassVar[int] = 60

    def config(self, **train_settings: Any) -> tuple[ResolvedConfig, DataSource]:
        return resolve(
            _user(
                {
                    "objective": {"name": self.objective_name, **self.objective_options},
                    "arch": dict(self.arch),
                    "data": dict(self.data),
                    "train": {**self.train_settings, **train_settings},
                    "optim": dict(self.optim_settings),
                }
            )
        )

    def trainer(self, tmp_path: Path, **train_settings: Any) -> Trainer:
        cfg, data = self.config(**train_settings)
        return Trainer(cfg, data, tmp_path / "run", progress=False)

    def test_is_registered(self) -> None:
        assert self.objective_name in get_plugins().objectives

    def test_every_phase_gives_a_finite_loss_and_gradients_only_to_its_parts(self, tmp_path: Path) -> None:
        trainer = self.trainer(tmp_path)
        batch = trainer.to_device(next(iter(trainer.stream)))
        step = 10**9  # past any warm-up
        objective, models = trainer.objective, trainer.models
        trainer._set_trainable(("encoder", "decoder"))
        ctx = objective.begin_step(batch, models, step)
        for phase in objective.phases_at(step):
            trainer._set_trainable(phase.trains)
            for module in trainer.parts.values():
                module.zero_grad(set_to_none=True)
            out = objective.phase_loss(phase, ctx, models)
            assert out.loss.ndim == 0 and torch.isfinite(out.loss), phase
            assert all(torch.isfinite(v) for v in out.logs.values()), out.logs
            out.loss.backward(retain_graph=True)
            for name, module in trainer.parts.items():
                grads = [p.grad for p in module.parameters()]
                if name in phase.trains:
                    assert all(g is not None and torch.isfinite(g).all() for g in grads), (phase, name)
                    assert any(g.abs().sum() > 0 for g in grads), (phase, name)
                else:
                    assert all(g is None for g in grads), f"phase {phase.name!r} gave {name} a gradient"

    def test_a_few_steps_improve_reconstructions(self, tmp_path: Path) -> None:
        """Held-out reconstruction error D(μ(x)) falls over a few steps (adversarial losses may not)."""
        trainer = self.trainer(tmp_path)
        x = trainer.to_device(trainer.data.test_batch(2048)).x

        def heldout_error() -> float:
            with torch.no_grad():
                mu, _ = trainer.parts["encoder"](x)
                return reconstruction_error(x, trainer.parts["decoder"](mu)).mean().item()

        before = heldout_error()
        batches = iter(trainer.stream)
        for _ in range(self.training_steps):
            trainer.train_step(next(batches))
        after = heldout_error()
        assert after < before, f"held-out reconstruction error went from {before:.4g} to {after:.4g}"

    def test_same_seed_same_losses(self, tmp_path: Path) -> None:
        runs = []
        for name in ("a", "b"):
            trainer = Trainer(*self.config(steps=3), tmp_path / name, progress=False)
            batches = iter(trainer.stream)
            runs.append([{k: v.item() for k, v in trainer.train_step(next(batches)).items()} for _ in range(3)])
        assert runs[0] == runs[1]

    def test_unknown_option_is_a_clear_error(self) -> None:
        with pytest.raises(ConfigError, match="unknown option objective.no_such_option"):
            resolve(_user({"objective": {"name": self.objective_name, "no_such_option": 1}, "arch": dict(self.arch), "data": dict(self.data)}))


class ArchitectureContract(_NamedContract):
    """Checks for an architecture plugin: shapes, export round trip, determinism, errors."""

    name_attribute = "arch_name"

    arch_name: ClassVar[str]
    arch_options: ClassVar[dict[str, Any]] = {}
    data_shape: ClassVar[tuple[int, ...]] = (2,)
    num_classes: ClassVar[int] = 0  # set > 0 to also check the class-conditional model
    batch_size: ClassVar[int] = 3
    # fnmatch patterns of parameters that may get no gradient (e.g. a growing architecture's
    # layers for lower resolutions, unused at full resolution)
    unused_parameters: ClassVar[tuple[str, ...]] = ()

    def build(self, num_classes: int = 0, seed: int = 0) -> tuple[Any, Any]:
        arch = get_plugins().architectures.get(self.arch_name)
        torch.manual_seed(seed)
        encoder = arch.encoder(data_shape=self.data_shape, num_classes=num_classes, **self.arch_options)
        decoder = arch.decoder(data_shape=self.data_shape, num_classes=num_classes, **self.arch_options)
        return encoder.eval(), decoder.eval()

    def inputs(self, num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = torch.rand(self.batch_size, *self.data_shape, generator=torch.Generator().manual_seed(0))
        y = torch.arange(self.batch_size) % num_classes if num_classes else None
        return x, y

    def test_is_registered(self) -> None:
        assert self.arch_name in get_plugins().architectures

    @pytest.mark.parametrize("conditional", [False, True])
    def test_shapes(self, conditional: bool) -> None:
        if conditional and not self.num_classes:
            pytest.skip("unconditional architecture test")
        k = self.num_classes if conditional else 0
        encoder, decoder = self.build(k)
        x, y = self.inputs(k)
        mu, logvar = encoder(x, y)
        z_total = sum(encoder.latent_groups.values())
        assert mu.shape == logvar.shape == (self.batch_size, z_total)
        assert decoder(mu, y).shape == x.shape

    def test_config_is_json_and_export_reload_is_identical(self, tmp_path: Path) -> None:
        encoder, decoder = self.build()
        x, _ = self.inputs(0)
        for role, module in (("encoder", encoder), ("decoder", decoder)):
            json.dumps(module.config)
            assert to_jsonable(module.config) == module.config, "config values must be JSON types (lists, not tuples)"
            export_component(module, tmp_path / role, role, self.arch_name)
        enc2, dec2 = load_component(tmp_path / "encoder"), load_component(tmp_path / "decoder")
        with torch.no_grad():
            assert torch.equal(encoder(x)[0], enc2(x)[0])
            z = torch.randn(self.batch_size, sum(encoder.latent_groups.values()))
            assert torch.equal(decoder(z), dec2(z))

    def test_same_seed_same_weights(self) -> None:
        a, b = self.build(seed=1), self.build(seed=1)
        for m1, m2 in zip(a, b):
            assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))

    def test_gradients_are_finite(self) -> None:
        encoder, decoder = self.build()
        encoder.train()
        decoder.train()
        x, _ = self.inputs(0)
        mu, logvar = encoder(x)
        (decoder(mu) - x).pow(2).mean().add(logvar.pow(2).mean()).backward()
        for module in (encoder, decoder):
            for name, p in module.named_parameters():
                if p.grad is None:
                    assert any(fnmatch.fnmatch(name, pattern) for pattern in self.unused_parameters), f"{name} got no gradient"
                else:
                    assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


class DatasetContract(_NamedContract):
    """Checks for a dataset plugin: batch shapes, determinism, exact resume, sharding."""

    name_attribute = "dataset_name"

    dataset_name: ClassVar[str]
    dataset_options: ClassVar[dict[str, Any]] = {}
    batch_size: ClassVar[int] = 8

    def source(self) -> DataSource:
        return get_plugins().datasets.get(self.dataset_name)(**self.dataset_options)

    def test_is_registered(self) -> None:
        assert self.dataset_name in get_plugins().datasets

    def test_batches_have_the_declared_shape(self) -> None:
        data = self.source()
        batch = next(iter(data.train_stream(self.batch_size, seed=0)))
        assert isinstance(batch, Batch)
        assert batch.x.shape == (self.batch_size, *data.shape) and batch.x.dtype == torch.float32
        assert torch.isfinite(batch.x).all()
        if data.num_classes:
            assert batch.y is not None and 0 <= int(batch.y.min()) and int(batch.y.max()) < data.num_classes

    def test_same_seed_same_batches_and_exact_resume(self) -> None:
        data = self.source()
        stream = data.train_stream(self.batch_size, seed=3)
        it = iter(stream)
        first = [next(it).x for _ in range(3)]
        state = stream.state_dict()
        expected = next(it).x
        again = data.train_stream(self.batch_size, seed=3)
        it2 = iter(again)
        assert all(torch.equal(a, next(it2).x) for a in first)
        resumed = data.train_stream(self.batch_size, seed=3)
        resumed.load_state_dict(state)
        assert torch.equal(next(iter(resumed)).x, expected)

    def test_processes_see_different_data(self) -> None:
        data = self.source()
        a = next(iter(data.train_stream(self.batch_size, seed=0, rank=0, world_size=2))).x
        b = next(iter(data.train_stream(self.batch_size, seed=0, rank=1, world_size=2))).x
        assert not torch.equal(a, b)

    def test_recommended_settings_resolve(self) -> None:
        """The recommended hyperparameters (and the architecture, when one is named) are valid."""
        data = self.source()
        resolve(_user({"data": {"name": self.dataset_name, **self.dataset_options}}))
        for objective in [k for k in data.recommended if k not in ("train", "arch")]:
            if objective in get_plugins().objectives:
                resolve(_user({"data": {"name": self.dataset_name, **self.dataset_options}, "objective": {"name": objective}}))


class MetricContract(_NamedContract):
    """Checks for a metric plugin: it evaluates a tiny trained run into finite numbers.

    Override ``run_settings`` to train on data your metric understands.
    """

    name_attribute = "metric_name"

    metric_name: ClassVar[str]
    metric_options: ClassVar[dict[str, Any]] = {}
    run_settings: ClassVar[dict[str, dict[str, Any]]] = {
        "objective": {"name": "vae"},
        "arch": {"name": "mlp", "hidden": 16},
        "data": {"name": "8gaussians"},
        "train": {"steps": 5, "batch_size": 32, "checkpoint_every": 0},
    }

    def tiny_run(self, tmp_path: Path) -> LoadedRun:
        cfg, data = resolve(_user({k: dict(v) for k, v in self.run_settings.items()}))
        train(cfg, data, tmp_path / "run", progress=False)
        return load_run(tmp_path / "run")

    def test_is_registered(self) -> None:
        assert self.metric_name in get_plugins().metrics

    def test_evaluates_a_run_into_finite_numbers(self, tmp_path: Path) -> None:
        results = get_plugins().metrics.get(self.metric_name).evaluate(self.tiny_run(tmp_path), seed=0, **self.metric_options)
        numbers = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert numbers, f"{self.metric_name} returned no numbers: {results}"
        assert all(math.isfinite(v) for v in numbers.values()), numbers


__all__ = ["ObjectiveContract", "ArchitectureContract", "DatasetContract", "MetricContract"]
