"""Train R members of a small model in one process, as one batched model (torch.func.vmap).

Members share the objective, architecture, dataset, batch size and optimizer settings; they may
differ in seed and in the objective's numeric hyperparameters (beta_rec, beta_kl, beta_neg, m,
gamma_r, ...). Member r computes exactly what a single run (genvae.core.trainer) with its config
computes:

- its networks are built after ``torch.manual_seed(seed)`` (encoder first, then decoder);
- its data come from ``data.train_stream(batch_size, seed, rank=0, world_size=1)``;
- its noise comes from ``torch.Generator().manual_seed(noise_seed(seed, 0))``: each step the noise
  the objective will ask for (``models.randn_like``) is drawn up front from each member's own
  generator, in the same order and shapes as the single run draws it (the shapes are recorded
  once per set of phases by a dry run), and handed to the vmapped step;
- per phase, ``torch.func.grad`` differentiates w.r.t. the stacked parameters of the parts the
  phase trains only; the other parts enter as constants (= ``requires_grad_(False)``: gradients
  flow through them, none accumulate in them). ``begin_step`` is recomputed inside each phase's
  differentiated function with the parameters of the start of the step, so gradients that flow
  through the shared context (e.g. the real ELBO of Soft-IntroVAE's encoder phase) are kept;
- one Adam per part over the stacked parameters (Adam is elementwise: R independent Adams), one
  MultiStepLR per part, stepped after all phases.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor
from torch.func import functional_call, grad, stack_module_state, vmap

from genvae.core.checkpoint import atomic_torch_save
from genvae.core.memory import TRIM_EVERY, release_free_memory
from genvae.core.interfaces import DataSource, Models, Objective, Phase
from genvae.core.run import ResolvedConfig, build_models, build_objective, resolve
from genvae.core.trainer import noise_seed
from genvae.errors import ConfigError

PARTS = ("encoder", "decoder")


# --------------------------------------------------------------------------------------------
# Models seen by the objective inside vmap
# --------------------------------------------------------------------------------------------


class _Fn:
    """A network called with explicit parameters (functional_call)."""

    def __init__(self, module: torch.nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor]) -> None:
        self.module, self.params, self.buffers = module, params, buffers

    def __call__(self, *args: Any) -> Any:
        return functional_call(self.module, (self.params, self.buffers), args)


class _QueuedNoiseModels(Models):
    """Models whose ``randn_like`` hands out pre-drawn noise in order."""

    def __init__(self, encoder: Any, decoder: Any, latent_groups: dict[str, int], data_dim: int, noise: Sequence[Tensor]) -> None:
        super().__init__(encoder, decoder, latent_groups, data_dim, None)
        self._noise = list(noise)
        self._next = 0

    def randn_like(self, t: Tensor) -> Tensor:
        if self._next >= len(self._noise):
            raise RuntimeError("the objective asked for more noise than recorded; its noise shapes must not depend on values")
        n = self._noise[self._next]
        self._next += 1
        if tuple(n.shape) != tuple(t.shape):
            raise RuntimeError(f"recorded noise shape {tuple(n.shape)} != requested {tuple(t.shape)}")
        return n.to(t.dtype)


class _RecordingModels(Models):
    def __init__(self, encoder: Any, decoder: Any, latent_groups: dict[str, int], data_dim: int) -> None:
        super().__init__(encoder, decoder, latent_groups, data_dim, torch.Generator().manual_seed(0))
        self.shapes: list[tuple[int, ...]] = []

    def randn_like(self, t: Tensor) -> Tensor:
        self.shapes.append(tuple(t.shape))
        return super().randn_like(t)


# --------------------------------------------------------------------------------------------
# The batched trainer
# --------------------------------------------------------------------------------------------


@dataclass
class BatchedHistory:
    """Per-step values of every member: ``losses[phase]`` and ``logs[key]`` are lists of (R,) tensors."""

    steps: list[int] = field(default_factory=list)
    losses: dict[str, list[Tensor]] = field(default_factory=dict)
    logs: dict[str, list[Tensor]] = field(default_factory=dict)

    def loss_matrix(self, phase: str) -> Tensor:
        """(steps, R) losses of ``phase`` (NaN where the phase did not run)."""
        return torch.stack(self.losses[phase]) if phase in self.losses else torch.empty(0)


_RECOMPILE_LIMIT = 64
_SHARED_TRAIN = ("batch_size", "steps", "precision", "conditional")
_SHARED_OPTIM = ("lr", "lr_encoder", "lr_decoder", "milestones", "gamma", "grad_clip")


def _hyperparameter_names(cfgs: Sequence[ResolvedConfig]) -> tuple[list[str], dict[str, Any]]:
    """Numeric objective fields that differ between members (batched) and the shared rest."""
    base = cfgs[0].objective
    varying: list[str] = []
    for key, value in base.items():
        values = [c.objective.get(key) for c in cfgs]
        if all(v == value for v in values):
            continue
        if key == "name" or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) or key in ("num_vae",):
            raise ConfigError(f"batched members must share objective.{key} (got {values}); only numeric hyperparameters may differ")
        varying.append(key)
    return varying, base


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"cpu"`` → CPU; ``"auto"`` → the GPU when one is visible; ``"cuda[:i]"`` → that GPU."""
    if device is None:
        return torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} but no CUDA GPU is visible; use --device cpu (or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"batched training runs on cpu or cuda, not {device!r}")
    return dev


class BatchedTrainer:
    """R members trained in lockstep; ``member_configs[r]`` is a complete ResolvedConfig.

    ``compile=True`` runs each phase's vmapped gradient through torch.compile: losses equal the
    eager step's to float rounding (tests/test_batched.py), after a compilation of tens of seconds
    per phase. On a CPU the step was 1.23x faster (benchmarks/batched_compile.py); on a GPU it is
    replayed as CUDA graphs, which a launch-bound step of a small model needs most.
    """

    def __init__(
        self, member_configs: Sequence[ResolvedConfig], data: DataSource, device: str | torch.device | None = None, compile: bool = False
    ) -> None:
        if not member_configs:
            raise ConfigError("BatchedTrainer needs at least one member")
        self.cfgs = list(member_configs)
        self.data = data
        c0 = self.cfgs[0]
        for c in self.cfgs[1:]:
            for sec, keys in (("train", _SHARED_TRAIN), ("optim", _SHARED_OPTIM)):
                for k in keys:
                    if getattr(getattr(c, sec), k) != getattr(getattr(c0, sec), k):
                        raise ConfigError(f"batched members must share {sec}.{k}")
            if c.arch != c0.arch or c.data != c0.data:
                raise ConfigError("batched members must share the architecture and the dataset")
        if c0.train.precision != "no":
            raise ConfigError("batched training runs in float32 (train.precision = 'no')")
        if c0.train.conditional:
            raise ConfigError("batched training supports unconditional models only")
        self.R = len(self.cfgs)
        self.device = resolve_device(device)
        self.varying, _ = _hyperparameter_names(self.cfgs)
        self.objective: Objective = build_objective(c0)
        self.hparams = {k: torch.tensor([float(c.objective[k]) for c in self.cfgs], device=self.device) for k in self.varying}

        encoders, decoders = [], []
        for c in self.cfgs:
            torch.manual_seed(c.train.seed)
            enc, dec = build_models(c, data)
            encoders.append(enc)
            decoders.append(dec)
        self.templates = {"encoder": copy.deepcopy(encoders[0]).to(self.device), "decoder": copy.deepcopy(decoders[0]).to(self.device)}
        self.latent_groups = dict(encoders[0].latent_groups)
        self.params: dict[str, dict[str, Tensor]] = {}
        self.buffers: dict[str, dict[str, Tensor]] = {}
        for part, mods in (("encoder", encoders), ("decoder", decoders)):
            p, b = stack_module_state(mods)
            self.params[part] = {k: v.detach().to(self.device, copy=True).requires_grad_(True) for k, v in p.items()}
            self.buffers[part] = {k: v.detach().to(self.device, copy=True) for k, v in b.items()}
        o = c0.optim
        lrs = {"encoder": o.lr_encoder or o.lr, "decoder": o.lr_decoder or o.lr}
        self.optimizers = {p: torch.optim.Adam(list(self.params[p].values()), lr=lrs[p], betas=tuple(o.betas)) for p in PARTS}
        self.schedulers = {
            p: torch.optim.lr_scheduler.MultiStepLR(self.optimizers[p], milestones=list(o.milestones), gamma=o.gamma) for p in PARTS
        }
        self.grad_clip = o.grad_clip
        self.streams = [data.train_stream(c.train.batch_size, c.train.seed, 0, 1) for c in self.cfgs]
        self.iters = [iter(s) for s in self.streams]
        self.generators = [torch.Generator().manual_seed(noise_seed(c.train.seed, 0)) for c in self.cfgs]
        self.step = 0
        self.seconds = 0.0  # training time over all calls of fit, continued runs included
        self.history = BatchedHistory()
        self._noise_plan: dict[tuple[str, ...], dict[str, list[tuple[int, ...]]]] = {}
        self._grad_fns: dict[tuple[str, frozenset[str]], Any] = {}
        self.compile = compile
        if compile:
            # every phase's function is the same vmap wrapper to Dynamo (one code object), and the
            # step becomes a dynamic int after its first change: a few compiled variants per phase
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _RECOMPILE_LIMIT)

    # ----------------------------------------------------------------------------------------

    def _objective_for(self, hp: dict[str, Tensor]) -> Objective:
        if not hp:
            return self.objective
        obj = copy.copy(self.objective)
        obj.config = dataclasses.replace(self.objective.config, **hp)
        return obj

    def _models(self, params: dict[str, dict[str, Tensor]], buffers: dict[str, dict[str, Tensor]], noise: Sequence[Tensor]) -> Models:
        enc = _Fn(self.templates["encoder"], params["encoder"], buffers["encoder"])
        dec = _Fn(self.templates["decoder"], params["decoder"], buffers["decoder"])
        return _QueuedNoiseModels(enc, dec, self.latent_groups, self.data.dim, noise)

    def member_params(self, r: int) -> dict[str, dict[str, Tensor]]:
        return {p: {k: v[r].detach() for k, v in self.params[p].items()} for p in PARTS}

    def member_modules(self, r: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        """Member r's encoder and decoder as ordinary modules (copies, eval mode)."""
        out = []
        for part in PARTS:
            m = copy.deepcopy(self.templates[part]).cpu()
            state = {**{k: v[r].detach().cpu().clone() for k, v in self.params[part].items()}, **{k: v[r].cpu().clone() for k, v in self.buffers[part].items()}}
            m.load_state_dict(state)
            out.append(m.eval())
        return out[0], out[1]

    def _plan(self, phases: tuple[Phase, ...], x0: Tensor) -> dict[str, list[tuple[int, ...]]]:
        """Noise shapes requested by begin_step and each phase (one dry run of member 0)."""
        key = tuple(p.name for p in phases)
        if key in self._noise_plan:
            return self._noise_plan[key]
        p0 = self.member_params(0)
        b0 = {p: {k: v[0] for k, v in self.buffers[p].items()} for p in PARTS}
        enc = _Fn(self.templates["encoder"], p0["encoder"], b0["encoder"])
        dec = _Fn(self.templates["decoder"], p0["decoder"], b0["decoder"])
        rec = _RecordingModels(enc, dec, self.latent_groups, self.data.dim)
        from genvae.core.interfaces import Batch

        plan: dict[str, list[tuple[int, ...]]] = {}
        obj = self._objective_for({k: v[0] for k, v in self.hparams.items()})
        with torch.no_grad():
            ctx = obj.begin_step(Batch(x0), rec, self.step)
            plan["__begin__"] = list(rec.shapes)
            for phase in phases:
                rec.shapes = []
                obj.phase_loss(phase, ctx, rec)
                plan[phase.name] = list(rec.shapes)
        self._noise_plan[key] = plan
        return plan

    def _draw(self, shapes: list[tuple[int, ...]]) -> list[Tensor]:
        # drawn on the CPU from each member's own generator (as its single run), then moved
        return [torch.stack([torch.randn(s, generator=g) for g in self.generators]).to(self.device) for s in shapes]

    def _grad_fn(self, phase: Phase, updated: frozenset[str]) -> Any:
        key = (phase.name, updated)
        if key in self._grad_fns:
            return self._grad_fns[key]
        from genvae.core.interfaces import Batch

        step_holder = self

        def loss_fn(train_p, const_p, start_p, buffers, x, noise_begin, noise_phase, hp, step):
            ctx_params = {}
            cur_params = {}
            for part in PARTS:
                if part in train_p:
                    cur_params[part] = train_p[part]
                    ctx_params[part] = start_p[part] if part in updated else train_p[part]
                else:
                    cur_params[part] = const_p[part]
                    ctx_params[part] = start_p[part]
            obj = step_holder._objective_for(hp)
            batch = Batch(x)
            ctx = obj.begin_step(batch, step_holder._models(ctx_params, buffers, noise_begin), step)
            out = obj.phase_loss(phase, ctx, step_holder._models(cur_params, buffers, noise_phase))
            logs = {k: v.detach() for k, v in out.logs.items()}
            return out.loss, (out.loss.detach(), logs)

        fn = vmap(grad(loss_fn, argnums=0, has_aux=True), in_dims=(0,) * 8 + (None,), randomness="error")
        if self.compile:
            # on a GPU "reduce-overhead" replays the step as CUDA graphs (a small model's step is
            # launch-bound); train_step clones what it keeps, as graph outputs are reused buffers
            fn = torch.compile(fn, mode="reduce-overhead" if self.device.type == "cuda" else None)
        self._grad_fns[key] = fn
        return fn

    def train_step(self) -> dict[str, Tensor]:
        """One step of every member; returns (R,) tensors of the phase losses and logs."""
        step = self.step
        x = torch.stack([next(it).x for it in self.iters]).to(self.device)
        phases = self.objective.phases_at(step)
        plan = self._plan(phases, x[0])
        noise_begin = self._draw(plan["__begin__"])
        noise_phase = {ph.name: self._draw(plan[ph.name]) for ph in phases}
        start_p = {p: {k: v.detach() for k, v in self.params[p].items()} for p in PARTS}
        needs_snapshot = len(phases) > 1
        if needs_snapshot:
            start_p = {p: {k: v.clone() for k, v in d.items()} for p, d in start_p.items()}
        updated: set[str] = set()
        out_logs: dict[str, Tensor] = {}
        for phase in phases:
            trains = tuple(phase.trains)
            train_p = {p: {k: v.detach() for k, v in self.params[p].items()} for p in trains}
            const_p = {p: {k: v.detach() for k, v in self.params[p].items()} for p in PARTS if p not in trains}
            fn = self._grad_fn(phase, frozenset(updated))
            grads, (loss, logs) = fn(train_p, const_p, start_p, self.buffers, x, noise_begin, noise_phase[phase.name], self.hparams, step)
            if self.compile:
                loss, logs = loss.clone(), {k: v.clone() for k, v in logs.items()}
            if self.grad_clip > 0:
                self._clip(grads)
            for part in trains:
                for k, prm in self.params[part].items():
                    prm.grad = grads[part][k]
                self.optimizers[part].step()
                updated.add(part)
            out_logs[f"loss_{phase.name}"] = loss
            out_logs.update(logs)
            self.history.losses.setdefault(phase.name, []).append(loss)
        for s in self.schedulers.values():
            s.step()
        for k, v in out_logs.items():
            if not k.startswith("loss_"):
                self.history.logs.setdefault(k, []).append(v)
        self.history.steps.append(step)
        self.step += 1
        return out_logs

    def _clip(self, grads: dict[str, dict[str, Tensor]]) -> None:
        """Per-member clip_grad_norm_ over the trained parts (as torch.nn.utils.clip_grad_norm_)."""
        flat = [g.reshape(self.R, -1) for d in grads.values() for g in d.values()]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(f, dim=1) for f in flat], dim=1), dim=1)
        coef = (self.grad_clip / (norm + 1e-6)).clamp(max=1.0)
        for d in grads.values():
            for k, g in d.items():
                d[k] = g * coef.view(-1, *([1] * (g.dim() - 1)))

    # ----------------------------------------------------------------------------------------
    # Resumable state: a continued run equals an uninterrupted one
    # ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        history = self.history
        return {
            "step": self.step,
            "seconds": self.seconds,
            "params": {p: {k: v.detach().cpu() for k, v in d.items()} for p, d in self.params.items()},
            "buffers": {p: {k: v.cpu() for k, v in d.items()} for p, d in self.buffers.items()},
            "optimizers": {p: o.state_dict() for p, o in self.optimizers.items()},
            "schedulers": {p: s.state_dict() for p, s in self.schedulers.items()},
            "streams": [s.state_dict() for s in self.streams],
            "generators": [g.get_state() for g in self.generators],
            "history": {
                "steps": torch.tensor(history.steps, dtype=torch.long),
                "losses": {k: torch.stack(v).cpu() for k, v in history.losses.items()},
                "logs": {k: torch.stack(v).cpu() for k, v in history.logs.items()},
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if len(state["generators"]) != self.R:
            raise ConfigError(f"the saved batched state has {len(state['generators'])} members, this trainer {self.R}")
        with torch.no_grad():
            for p, d in state["params"].items():
                for k, v in d.items():
                    self.params[p][k].copy_(v)  # in place: the optimizers hold these tensors
            for p, d in state["buffers"].items():
                for k, v in d.items():
                    self.buffers[p][k].copy_(v)
        for p in PARTS:
            self.optimizers[p].load_state_dict(state["optimizers"][p])
            self.schedulers[p].load_state_dict(state["schedulers"][p])
        for stream, s in zip(self.streams, state["streams"]):
            stream.load_state_dict(s)
        self.iters = [iter(s) for s in self.streams]
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(s)
        h = state["history"]
        self.history = BatchedHistory(
            steps=h["steps"].tolist(),
            losses={k: list(v.to(self.device).unbind(0)) for k, v in h["losses"].items()},
            logs={k: list(v.to(self.device).unbind(0)) for k, v in h["logs"].items()},
        )
        self.step = int(state["step"])
        self.seconds = float(state.get("seconds", 0.0))

    def save(self, path: Path) -> None:
        """Write the state atomically (temporary file flushed to disk, then rename): a crash or a
        power cut mid-write keeps the previous checkpoint."""
        atomic_torch_save(self.state_dict(), Path(path))

    def load(self, path: Path) -> None:
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))

    def fit(
        self,
        steps: int | None = None,
        log_every: int = 0,
        progress: Any = None,
        checkpoint: Path | None = None,
        checkpoint_every: int = 1000,
    ) -> BatchedHistory:
        """Train to ``steps``; with ``checkpoint``, save the state there every ``checkpoint_every``
        steps (and at the end) so that :meth:`load` + ``fit`` continues after a crash."""
        total = self.cfgs[0].train.steps if steps is None else steps
        t0, first, before = time.perf_counter(), self.step, self.seconds
        while self.step < total:
            logs = self.train_step()
            self.seconds = before + time.perf_counter() - t0
            if self.step % TRIM_EVERY == 0:
                release_free_memory()  # keeps resident memory flat over long runs (genvae/core/memory.py)
            if checkpoint is not None and (self.step % checkpoint_every == 0 or self.step == total):
                self.save(checkpoint)
            if log_every and (self.step % log_every == 0 or self.step == total):
                rate = (self.step - first) / max(time.perf_counter() - t0, 1e-9)
                msg = " ".join(f"{k}={v.mean().item():.4g}" for k, v in logs.items() if k.startswith("loss_"))
                line = f"step {self.step}/{total} {msg} ({rate:.1f} steps/s, {rate * self.R:.1f} member-steps/s)"
                (progress or print)(line)
        return self.history


def member_configs(
    objective: str,
    data: str,
    seeds: Sequence[int],
    overrides: Sequence[Mapping[str, Any]] | None = None,
    train: Mapping[str, Any] | None = None,
    optim: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | None = None,
) -> tuple[list[ResolvedConfig], DataSource]:
    """ResolvedConfigs (dataset recommendations applied) for each (seed, objective override)."""
    overrides = list(overrides) if overrides else [{}]
    cfgs: list[ResolvedConfig] = []
    ds = None
    for ov in overrides:
        for seed in seeds:
            user = {
                "data": {"name": data},
                "objective": {"name": objective, **ov},
                "train": {**(train or {}), "seed": int(seed)},
                "optim": dict(optim or {}),
                "arch": dict(arch or {}),
            }
            cfg, ds = resolve(user)
            cfgs.append(cfg)
    assert ds is not None
    return cfgs, ds


def reference_single_run(cfg: ResolvedConfig, data: DataSource, steps: int) -> list[dict[str, float]]:
    """A plain, unbatched single run following the trainer's semantics (for tests and benchmarks);
    returns the per-step phase losses."""
    torch.manual_seed(cfg.train.seed)
    enc, dec = build_models(cfg, data)
    parts = {"encoder": enc, "decoder": dec}
    gen = torch.Generator().manual_seed(noise_seed(cfg.train.seed, 0))
    models = Models(enc, dec, dict(enc.latent_groups), data.dim, gen)
    objective = build_objective(cfg)
    o = cfg.optim
    lrs = {"encoder": o.lr_encoder or o.lr, "decoder": o.lr_decoder or o.lr}
    opts = {p: torch.optim.Adam(m.parameters(), lr=lrs[p], betas=tuple(o.betas)) for p, m in parts.items()}
    scheds = {p: torch.optim.lr_scheduler.MultiStepLR(op, milestones=list(o.milestones), gamma=o.gamma) for p, op in opts.items()}
    stream = iter(data.train_stream(cfg.train.batch_size, cfg.train.seed, 0, 1))
    out: list[dict[str, float]] = []
    for step in range(steps):
        batch = next(stream)
        for m in parts.values():
            m.requires_grad_(True)
        ctx = objective.begin_step(batch, models, step)
        row: dict[str, float] = {}
        for phase in objective.phases_at(step):
            for name, m in parts.items():
                m.requires_grad_(name in phase.trains)
            for name in phase.trains:
                opts[name].zero_grad(set_to_none=True)
            res = objective.phase_loss(phase, ctx, models)
            res.loss.backward()
            for name in phase.trains:
                opts[name].step()
            row[phase.name] = res.loss.item()
        for sch in scheds.values():
            sch.step()
        out.append(row)
    return out


__all__ = ["BatchedTrainer", "BatchedHistory", "member_configs", "noise_seed", "reference_single_run"]
