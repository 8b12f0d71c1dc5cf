"""``genvae plugins new NAME --kind KIND``: a plugin package that installs, registers and passes
genvae's contract tests as written, for the author to change from there.

    genvae-NAME/
      pyproject.toml         the package and its ``genvae`` entry point
      genvae_NAME/__init__.py a working plugin of the kind and the hook that registers it
      tests/test_NAME.py     the kind's contract tests (genvae.testing)
      README.md              how to install, test and use it
"""

from __future__ import annotations

import re
from pathlib import Path

from genvae.errors import ConfigError

KINDS = ("objective", "architecture", "dataset", "metric")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "genvae-{name}"
version = "0.1.0"
description = "genvae plugin: the {kind} '{name}'"
requires-python = ">=3.10"
dependencies = ["genvae"]

[project.entry-points.genvae]
{name} = "{module}"

[tool.setuptools.packages.find]
include = ["{module}*"]
"""

OBJECTIVE = '''\
"""genvae plugin: the objective '{name}'.

It starts as the β-VAE (one phase training encoder and decoder on the negative ELBO); change
``phase_loss``, or add phases (e.g. an encoder phase and a decoder phase, as IntroVAE has).
Every field of ``Config`` is an option: ``--set objective.beta_kl=0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import genvae
from genvae import Batch, Models, Objective, Phase, PhaseOutput
from genvae.core.losses import kl_per_group, reconstruction_error, reparameterize


@dataclass
class {cls}Config:
    beta_rec: float = 1.0  # weight of the reconstruction term
    beta_kl: float = 1.0  # weight of the KL term
    recon_loss: str = "mse"  # mse | bce | gaussian, or a registered reconstruction loss


class {cls}(Objective):
    Config = {cls}Config
    phases = (Phase("elbo", trains=("encoder", "decoder")),)

    def begin_step(self, batch: Batch, models: Models, step: int) -> dict[str, Any]:
        """The work the phases of one step share; here only the batch."""
        return {{"batch": batch}}

    def phase_loss(self, phase: Phase, ctx: dict[str, Any], models: Models) -> PhaseOutput:
        c, batch = self.config, ctx["batch"]
        mu, logvar = models.encode(batch.x, batch.y)
        z = reparameterize(mu, logvar, models.randn_like)  # the noise comes from the run's seeded generator
        rec = reconstruction_error(batch.x, models.decode(z, batch.y), c.recon_loss).mean()
        kl = sum(kl_per_group(mu, logvar, models.latent_groups).values()).mean()
        return PhaseOutput(c.beta_rec * rec + c.beta_kl * kl, {{"rec": rec.detach(), "kl": kl.detach()}})


@genvae.hookimpl
def genvae_register_objectives(register) -> None:
    register("{name}", {cls})
'''

ARCHITECTURE = '''\
"""genvae plugin: the architecture '{name}'.

It starts as a fully-connected encoder / decoder for any input shape; change the layers.
The keyword arguments of ``__init__`` after ``num_classes`` are options
(``--set arch.hidden=512``); pass them all to ``super().__init__`` so that an exported network
can be rebuilt from its config.json.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

import genvae
from genvae import Architecture, Decoder, Encoder
from genvae.core.interfaces import append_label


def layers(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class {cls}Encoder(Encoder):
    def __init__(self, data_shape: tuple[int, ...] = (2,), num_classes: int = 0, z_dim: int = 2, hidden: int = 128) -> None:
        super().__init__(data_shape=list(data_shape), num_classes=num_classes, z_dim=z_dim, hidden=hidden)
        self.num_classes = num_classes
        self.latent_groups = {{"z": z_dim}}  # one latent group; a two-encoder model has several
        self.net = layers(math.prod(data_shape) + num_classes, hidden, 2 * z_dim)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(append_label(x.flatten(1), y, self.num_classes)).chunk(2, dim=1)
        return mu, logvar


class {cls}Decoder(Decoder):
    def __init__(self, data_shape: tuple[int, ...] = (2,), num_classes: int = 0, z_dim: int = 2, hidden: int = 128) -> None:
        super().__init__(data_shape=list(data_shape), num_classes=num_classes, z_dim=z_dim, hidden=hidden)
        self.num_classes, self.data_shape = num_classes, tuple(data_shape)
        self.net = layers(z_dim + num_classes, hidden, math.prod(data_shape))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.net(append_label(z, y, self.num_classes)).view(-1, *self.data_shape)


@genvae.hookimpl
def genvae_register_architectures(register) -> None:
    register("{name}", Architecture({cls}Encoder, {cls}Decoder, "fully-connected encoder and decoder"))
'''

DATASET = '''\
"""genvae plugin: the dataset '{name}'.

It starts as 2-D points on a noisy circle, drawn fresh for every batch; change ``sample``
(or read your files in ``__init__`` and draw rows of them). The factory's keyword arguments are
options (``--set data.noise=0.1``); ``recommended`` holds settings applied below the user's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

import genvae
from genvae import Batch, BatchStream, DataSource, Models
from genvae.errors import ConfigError


def sample(n: int, generator: torch.Generator, noise: float) -> Tensor:
    angle = torch.rand(n, generator=generator) * 2 * math.pi
    circle = torch.stack([angle.cos(), angle.sin()], dim=1)
    return circle + noise * torch.randn(n, 2, generator=generator)


class {cls}Stream(BatchStream):
    """Endless batches from a seeded generator; its state is what a resumed run continues from.
    With several processes, all draw the global batch and each keeps its own rows."""

    def __init__(self, data: "{cls}", batch_size: int, seed: int, rank: int, world_size: int) -> None:
        self.data, self.batch_size, self.rank, self.world_size = data, batch_size, rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            x = sample(self.batch_size * self.world_size, self.generator, self.data.noise)
            yield Batch(x[self.rank :: self.world_size])

    def state_dict(self) -> dict[str, Any]:
        return {{"generator": self.generator.get_state()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class {cls}(DataSource):
    name = "{name}"
    shape = (2,)
    kind = "points"
    plot_scale = 1.0  # figures and genvae eval toy2d look at [-2, 2]²

    def __init__(self, noise: float = 0.05) -> None:
        if noise < 0:
            raise ConfigError(f"data.noise must be >= 0, got {{noise}}")
        self.noise = noise
        self.recommended = {{"train": {{"steps": 5000, "batch_size": 256}}, "arch": {{"z_dim": 2}}}}

    def train_stream(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> {cls}Stream:
        return {cls}Stream(self, batch_size, seed, rank, world_size)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        """Held-out draws (genvae eval toy2d compares them with the model's samples)."""
        return sample(n, torch.Generator().manual_seed(seed), self.noise)

    def write_figures(self, models: Models, out_dir: Path, seed: int = 0) -> list[Path]:
        """samples.png (real vs generated) and density.png (exp(ELBO) on a grid), as for 8gaussians."""
        from genvae.viz.points import write_toy2d_figures

        return write_toy2d_figures(models, self, out_dir, seed)


@genvae.hookimpl
def genvae_register_datasets(register) -> None:
    register("{name}", {cls})
'''

METRIC = '''\
"""genvae plugin: the metric '{name}'.

It starts as the mean squared reconstruction error of held-out samples through the posterior
mean; change ``evaluate``. It runs with ``genvae eval metric {name} RUN --option n=500`` and
during training with ``--set train.eval_every=1000 --set train.eval=[{name}]``. Its float
results are what training records and ``genvae info`` shows.
"""

from __future__ import annotations

from typing import Any

import torch

import genvae
from genvae import Metric
from genvae.errors import ConfigError


def evaluate(run: Any, seed: int = 0, n: int = 1000) -> dict[str, Any]:
    """``run.models`` holds the networks in eval mode, ``run.data`` the run's dataset."""
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {{n}}")
    x = run.data.test_batch(n, seed=seed).x
    with torch.no_grad():
        mu, _ = run.models.encode(x)
        error = (run.models.decode(mu) - x).flatten(1).pow(2).sum(1)
    return {{"rec_error": float(error.mean()), "n": n}}


@genvae.hookimpl
def genvae_register_metrics(register) -> None:
    register("{name}", Metric(evaluate=evaluate, description="mean squared reconstruction error of held-out samples"))
'''

TEMPLATES = {"objective": OBJECTIVE, "architecture": ARCHITECTURE, "dataset": DATASET, "metric": METRIC}

TESTS = {
    "objective": ("ObjectiveContract", 'objective_name = "{name}"'),
    "architecture": ("ArchitectureContract", 'arch_name = "{name}"\n    num_classes = 3  # also checks the class-conditional model'),
    "dataset": ("DatasetContract", 'dataset_name = "{name}"'),
    "metric": ("MetricContract", 'metric_name = "{name}"'),
}

TEST = '''\
"""genvae's contract tests for the {kind} '{name}': add tests of your own below."""

from genvae.testing import {contract}


class Test{cls}({contract}):
    {attributes}
'''

USE = {
    "objective": "genvae train --objective {name} --steps 2000",
    "architecture": "genvae train --arch {name} --steps 2000",
    "dataset": "genvae train --data {name} --steps 2000",
    "metric": "genvae eval metric {name} runs/my-run",
}

README = """\
# genvae-{name}

A genvae plugin: the {kind} `{name}`.

```bash
pip install -e .            # genvae finds it through the `genvae` entry point
genvae plugins list         # shows {name}
pytest tests                # genvae's contract tests for {article} {kind}
{use}
```

Without installing, from this folder: `GENVAE_PLUGINS={module} PYTHONPATH=. genvae plugins list`.
"""


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


def plugin_files(name: str, kind: str) -> dict[str, str]:
    """Relative path -> text of every file of the plugin package."""
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"plugin name {name!r}: use lowercase letters, digits and single hyphens, starting with a letter (e.g. my-vae)")
    module = "genvae_" + name.replace("-", "_")
    fields = {"name": name, "kind": kind, "module": module, "cls": class_name(name), "use": USE[kind].format(name=name),
              "article": "an" if kind[0] in "aeiou" else "a"}  # fmt: skip
    contract, attributes = TESTS[kind]
    return {
        "pyproject.toml": PYPROJECT.format(**fields),
        f"{module}/__init__.py": TEMPLATES[kind].format(**fields),
        f"tests/test_{module.removeprefix('genvae_')}.py": TEST.format(contract=contract, attributes=attributes.format(**fields), **fields),
        "README.md": README.format(**fields),
    }


def write_plugin(name: str, kind: str, parent: str | Path = ".") -> Path:
    """Write the package ``genvae-NAME`` under ``parent``; refuses to overwrite anything."""
    files = plugin_files(name, kind)
    from genvae.core.plugins import REGISTRATION_HOOKS, get_plugins

    registry = get_plugins().registries[REGISTRATION_HOOKS[f"genvae_register_{kind}s"]]
    if name in registry:
        raise ConfigError(f"{kind} {name!r} is already registered by {registry.entry(name).plugin!r}; a plugin of that name would clash "
                          f"with it: choose another name (e.g. my-{name})")  # fmt: skip
    root = Path(parent) / f"genvae-{name}"
    if root.exists():
        raise ConfigError(f"{root} already exists; choose another name or --dir")
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
