"""The training loop: an objective's phases, run through Accelerate.

Per step: one batch, ``objective.begin_step``, then each phase: freeze the parts it does not
train (``requires_grad_(False)``; gradients still flow *through* them), compute its loss, check
it is finite, backward, average gradients across processes, clip, and step the optimizers of the
parts it trains. Each part ("encoder", "decoder") has its own Adam and MultiStepLR.

Why no DistributedDataParallel: an introspective objective calls each network several times per
phase, sometimes frozen, sometimes trained. DDP's reducer expects one forward per backward and
every parameter to receive a gradient, which this game breaks. We average the gradients of the
trained part explicitly after each backward instead (one all-reduce per parameter), which is what
DDP computes, without its assumptions.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import shutil
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor

from genvae.core.checkpoint import (
    CHECKPOINT_DIR,
    atomic_write_text,
    checkpoint_step,
    export_component,
    find_checkpoint,
    fsync_tree,
    load_state,
    load_weights,
    read_component_config,
    swap_in_directory,
    trained_without_checkpoint,
)
from genvae.core.config import read_json, write_json
from genvae.core.denormals import denormals_flushed
from genvae.core.evaluation import EVALS_FIGURE, EVALS_FILE, evaluate_now, evaluation_failed, planned_metrics, plot_evaluations
from genvae.core.interfaces import Batch, BatchStream, DataSource, Objective, Phase
from genvae.core.memory import TRIM_EVERY, release_free_memory
from genvae.core.plugins import Plugins, get_plugins
from genvae.core.progress import TrainProgress, progress_mode
from genvae.core.progressive import GrowthSchedule, LevelStream, level_images, level_of
from genvae.core.network_checks import CheckedModels, check_phase, check_phase_output
from genvae.core.run import GIVEN_DATA, LoadedRun, ResolvedConfig, build_models, build_objective, models_view
from genvae.core.run_lock import LOCK_FILE, RunLock
from genvae.core.tracking import TRACKER_DIR, log_figures, start_trackers
from genvae.errors import DataError, EvaluationError, GenvaeError, NonFiniteLossError, RunDirError, shell_quote, worded

PARTS = ("encoder", "decoder")
LOG_FILE = "log.jsonl"


def noise_seed(seed: int, rank: int = 0) -> int:
    """Seed of the generator that draws every ε and prior z (the trainer shares one, rank 0's,
    between processes; see Models.randn_like)."""
    return seed * 1_000_003 + 7919 + rank


class _GeneratorState:
    """Makes a torch.Generator checkpointable by Accelerate."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, Tensor]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["state"])


def check_new_run_dir(run_dir: str | Path) -> None:
    """Refuse a --run-dir that a new run cannot use: a file, a finished or stopped run, or a
    directory of other files (outputs would land among them)."""
    path = Path(run_dir)
    ancestor = next((p for p in (path, *path.parents) if p.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        where = "is a file" if ancestor == path else f"is inside {ancestor}, which is a file"
        raise RunDirError(f"--run-dir {path} {where}; choose a directory path")
    if (path / "config.json").exists():
        raise RunDirError(f"run directory {path} already exists; pass --resume to continue it, or choose another --run-dir")
    if path.is_dir() and any(p.name not in (LOCK_FILE, GIVEN_DATA) for p in path.iterdir()):  # a lock file alone: an aborted start
        raise RunDirError(f"--run-dir {path} is a non-empty directory that is not a genvae run (no config.json); choose a new or empty directory")


STOP_NOTE = "stopped.json"  # why the last training call stopped early (Ctrl-C, non-finite loss)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM arriving inside the block act when it ends, as they would have then."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    arrived: list[int] = []
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in handlers:
        signal.signal(s, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for s, handler in handlers.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if arrived:
            signal.raise_signal(arrived[0])


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped training after a completed step; ``step`` is saved in
    the run's checkpoint. ``signum`` is the signal's number."""

    def __init__(self, run_dir: Path, step: int, signum: int = signal.SIGINT) -> None:
        how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        super().__init__(worded(f"{how} at step {step}; checkpoint saved; continue with: genvae train --run-dir {shell_quote(run_dir)} --resume"))
        self.run_dir, self.step, self.signum = run_dir, step, int(signum)


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    steps_run: int  # steps trained by this call (fewer than step after a resume)
    last_logs: dict[str, float]
    figures: list[Path]
    seconds: float


class LogWindow:
    """The sums of the logged values since the last log record, and when that window began.
    Checkpoints keep the sums, so a run resumed in the middle of a window writes the same
    records as a straight run."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sums: dict[str, Tensor] = {}
        self.count = 0
        self.start(0)

    def start(self, step: int) -> None:
        self.start_step, self.start_time = step, time.perf_counter()

    def add(self, logs: dict[str, Tensor]) -> None:
        for key, value in logs.items():
            total = self.sums.get(key)
            self.sums[key] = value.float() if total is None else total + value.float()
        self.count += 1

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (evaluations, figures) does not count in the window's speed."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.start_time += time.perf_counter() - start

    def close(self, step: int) -> dict[str, float]:
        """The window's means and its speed (training steps/s since the window began, without the
        time :meth:`paused`); starts the next."""
        keys = list(self.sums)
        values = torch.stack([self.sums[k] for k in keys]).div(self.count).tolist() if keys else []
        speed = (step - self.start_step) / max(time.perf_counter() - self.start_time, 1e-9)
        self.sums, self.count = {}, 0
        self.start(step)
        return {**dict(zip(keys, values)), "steps_per_s": speed}

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sums": {k: v.item() for k, v in self.sums.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state.get("count", 0))
        self.sums = {k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in state.get("sums", {}).items()}


def accelerator_for(precision: str, **options: Any) -> Accelerator:
    """An Accelerator of ``precision``. Accelerate keeps one process-wide precision and refuses
    another (a notebook that trained in fp32 could not train in bf16 without a restart); a single
    process forgets the old one first, a distributed launch keeps it (all processes agree)."""
    from accelerate.state import AcceleratorState, PartialState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", precision) != precision and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=precision, **options)


class Trainer:
    """Trains ``cfg`` into ``run_dir``; ``resume`` continues from the run's checkpoint (or, for a
    run stopped before its first checkpoint, starts it again from step 0).

    ``progress``: True shows a progress bar on a terminal and one line per logged step otherwise,
    "lines" always the lines, False nothing. Ctrl-C (or SIGTERM, as sent by ``timeout``, job
    schedulers and ``docker stop``) stops after the current step, saves a checkpoint and raises
    :class:`TrainingInterrupted`; a second one interrupts at once. One process at a time trains a
    run directory (:class:`RunLock`).
    """

    def __init__(
        self,
        cfg: ResolvedConfig,
        data: DataSource,
        run_dir: str | Path,
        *,
        resume: bool = False,
        plugins: Plugins | None = None,
        progress: bool | str = True,
        on_log: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        self.cfg, self.data, self.run_dir = cfg, data, Path(run_dir)
        self.resume, self.show_progress, self.on_log = resume, progress, on_log
        self.plugins = plugins or get_plugins()
        trackers = {"log_with": list(cfg.train.log_with), "project_dir": str(self.run_dir / TRACKER_DIR)} if cfg.train.log_with else {}
        self.accelerator = accelerator_for(cfg.train.precision, **trackers)
        self.objective: Objective = build_objective(cfg, self.plugins)
        self.step = 0
        self.last_checkpoint_step: int | None = None
        self._stop_signal: int | None = None  # set by Ctrl-C / SIGTERM, checked after each step
        self.lock = RunLock(self.run_dir)
        self._made_run_dir = False  # set when a new run creates its directory
        self.log_window = LogWindow(self.accelerator.device)
        self.progress = TrainProgress(cfg.train.steps, 0, None)  # silent until fit() shows one

        set_seed(cfg.train.seed)
        encoder, decoder = build_models(cfg, data, self.plugins)
        device = self.accelerator.device
        self.parts: dict[str, torch.nn.Module] = {"encoder": encoder.to(device), "decoder": decoder.to(device)}
        self._broadcast_parameters()
        o = cfg.optim
        self.base_lrs = {"encoder": o.lr_encoder or o.lr, "decoder": o.lr_decoder or o.lr}
        optimizers = [torch.optim.Adam(self.parts[p].parameters(), lr=self.base_lrs[p], betas=tuple(o.betas)) for p in PARTS]
        self.optimizers = dict(zip(PARTS, self.accelerator.prepare(*optimizers)))
        # Schedulers stay unprepared: Accelerate would step them once per process.
        self.schedulers = {
            p: torch.optim.lr_scheduler.MultiStepLR(optimizers[i], milestones=list(o.milestones), gamma=o.gamma)
            for i, p in enumerate(PARTS)
        }
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        self.growth: GrowthSchedule | None = None
        self.level: int | None = None  # the growth level whose settings are applied
        if cfg.grow.start_resolution:
            self.growth = GrowthSchedule(cfg.grow, level_of(data.shape[-1]), cfg.train.batch_size, o.lr, world)
            self.stream: BatchStream = LevelStream(data, self.growth, self.growth.level_at(0), cfg.train.seed, rank, world)
        else:
            self.stream = data.train_stream(cfg.train.batch_size, cfg.train.seed, rank, world)
            count = data.split_size("train") // world if hasattr(data, "split_size") else None  # finite sets of images or rows
            unit = "image" if data.kind == "images" else "row"
            if count is not None and count < cfg.train.batch_size and self.accelerator.is_main_process:
                warnings.warn(worded(f"{data.name}: {count} training {unit}(s) per process, fewer than a batch ({cfg.train.batch_size}): "
                                     f"every batch repeats {unit}s; lower --batch-size or add {unit}s"), stacklevel=2)  # fmt: skip
        # one noise stream for all processes; each keeps its rows of the global batch (Models.randn_like)
        self.noise = torch.Generator(device=device).manual_seed(noise_seed(cfg.train.seed, 0))
        # saved by accelerate as custom_checkpoint_<i>.pkl in this order
        self.checkpointed: list[Any] = [*self.schedulers.values(), self.stream, _GeneratorState(self.noise)]
        # compiled forwards share the parameters of self.parts, which checkpoints and figures use
        run_encoder, run_decoder = (torch.compile(encoder), torch.compile(decoder)) if cfg.train.compile else (encoder, decoder)
        self.models = CheckedModels(run_encoder, run_decoder, dict(encoder.latent_groups), data.dim, self.noise, rank, world,
                                    architecture=cfg.arch["name"], sample_shape=tuple(data.shape), grows=self.growth is not None)  # fmt: skip
        self.objective.setup(self.models)
        if hasattr(self.objective, "state_dict"):  # objectives with state of their own are resumable too
            self.checkpointed.append(self.objective)
        self.accelerator.register_for_checkpointing(*self.checkpointed)

    # ----------------------------------------------------------------------------------------
    # Checkpoints
    # ----------------------------------------------------------------------------------------

    def _broadcast_parameters(self) -> None:
        if self.accelerator.num_processes > 1:
            for module in self.parts.values():
                for tensor in [*module.parameters(), *module.buffers()]:
                    torch.distributed.broadcast(tensor.data, src=0)

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.tmp`` completely, then swap it in; also refresh the export. A stop
        signal that arrives meanwhile acts once the checkpoint is written (a double Ctrl-C, the
        second during the save that the first asked for, lost it)."""
        with signals_deferred():
            try:
                self._write_checkpoint()
            except (OSError, RuntimeError) as exc:
                raise self._checkpoint_failed(exc) from exc

    def _checkpoint_failed(self, exc: BaseException) -> BaseException:
        """A checkpoint that could not be written (a full disk, say): its partial copy is removed
        and the error names the complete one that is kept; a failure of another kind is re-raised."""
        tmp = self.run_dir / (CHECKPOINT_DIR + ".tmp")
        full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or "unexpected pos" in str(exc) or "No space" in str(exc)
        if not (full or isinstance(exc, OSError)):
            return exc
        if self.accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        reason = "no space left on device" if full else (getattr(exc, "strerror", None) or str(exc).splitlines()[0])
        kept = (f"the checkpoint after step {self.last_checkpoint_step} is kept; {'free some disk space' if full else 'fix that'}, then continue "
                f"with genvae train --run-dir {shell_quote(self.run_dir)} --resume") if self.last_checkpoint_step is not None else "no earlier checkpoint exists"  # fmt: skip
        return RunDirError(f"writing the checkpoint of step {self.step} into {self.run_dir} failed ({reason}); {kept}")

    def _write_checkpoint(self) -> None:
        acc = self.accelerator
        tmp = self.run_dir / (CHECKPOINT_DIR + ".tmp")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp / "accelerate"))
        acc.wait_for_everyone()  # every process's random state is written before the main process moves tmp
        self._recalibrate_batchnorm()
        if acc.is_main_process:
            arch = self.cfg.arch["name"]
            for name, module in self.parts.items():
                export_component(module, tmp / name, name, arch, step=self.step)
            state = {"step": self.step, **self._growth_state(), "log_window": self.log_window.state_dict()}
            fsync_tree(tmp)  # every file on disk before trainer.json marks the checkpoint complete
            atomic_write_text(tmp / "trainer.json", json.dumps(state) + "\n")
            swap_in_directory(tmp, self.run_dir / CHECKPOINT_DIR)
            for name, module in self.parts.items():
                export_component(module, self.run_dir / name, name, arch, step=self.step)
        acc.wait_for_everyone()
        self.last_checkpoint_step = self.step

    def _recalibrate_batchnorm(self) -> None:
        """Running BatchNorm statistics from real data before exporting or drawing (precise BN)."""
        from genvae.core.batchnorm import recalibrate_batchnorm

        recalibrate_batchnorm(self.models, self.data, self.cfg.train.batch_size, seed=self.cfg.train.seed)

    def load_checkpoint(self) -> None:
        checkpoint = find_checkpoint(self.run_dir)
        if checkpoint is None:
            if not (self.run_dir / "config.json").is_file():
                raise RunDirError(f"{self.run_dir} has no checkpoint to resume from; start a new run without --resume")
            trained = trained_without_checkpoint(self.run_dir, self.cfg.train.checkpoint_every)
            if trained is not None:  # a checkpoint existed and is gone or damaged: starting again would overwrite the work
                raise RunDirError(f"{self.run_dir} trained to step {trained} (its exports or log say so) but holds no complete checkpoint "
                                  f"({self.run_dir / CHECKPOINT_DIR} is missing or damaged): resuming would start again from step 0 "
                                  "and overwrite its log and exports; restore the checkpoint folder from a backup, or train a new run "
                                  "in another --run-dir (the exports still sample and evaluate)")  # fmt: skip
            if self.accelerator.is_main_process:  # stopped before its first checkpoint: train it again from step 0
                self._drop_log_records_after(0)
            return
        self._check_same_data(read_component_config(checkpoint / "encoder").get("config", {}))
        for name, module in self.parts.items():
            load_weights(module, checkpoint / name)
        load_state(self.accelerator, checkpoint / "accelerate", custom_objects=len(self.checkpointed))
        self.step = checkpoint_step(checkpoint)
        self.last_checkpoint_step = self.step
        self.log_window.load_state_dict(read_json(checkpoint / "trainer.json").get("log_window", {}))
        self._take_new_learning_rates()
        if self.accelerator.is_main_process:
            self._drop_log_records_after(self.step)

    def _check_same_data(self, saved: dict[str, Any]) -> None:
        """A resume on data of another sample shape, or with other classes for a conditional model,
        cannot load the networks: say so (loading failed with a size mismatch)."""
        shape, classes = tuple(saved.get("data_shape", self.data.shape)), int(saved.get("num_classes", 0))
        now = self.data.num_classes if classes else 0
        if shape != tuple(self.data.shape) or classes != now:
            what = f"samples of shape {tuple(self.data.shape)}" if shape != tuple(self.data.shape) else f"{now} classes"
            was = f"shape {shape}" if shape != tuple(self.data.shape) else f"{classes} classes"
            raise DataError(f"--resume: {self.data.name} now holds {what}, where the run was trained on {was}; continue it on its own "
                            "data (give its data.path), or train a new run on this data")  # fmt: skip

    def _take_new_learning_rates(self) -> None:
        """A resume that changes optim.lr (after a non-finite loss, say) continues from the checkpoint
        with the new rate, decayed by the milestones passed; an unchanged rate is left exactly as saved."""
        decay = self._milestone_decay()
        for name, scheduler in self.schedulers.items():
            if scheduler.base_lrs and scheduler.base_lrs[0] != self.base_lrs[name]:
                scheduler.base_lrs = [self.base_lrs[name]] * len(scheduler.base_lrs)
                for group in self.optimizers[name].param_groups:
                    group["initial_lr"], group["lr"] = self.base_lrs[name], self.base_lrs[name] * decay

    def _milestone_decay(self) -> float:
        """The factor MultiStepLR has applied to the learning rate by this step: γ per milestone passed."""
        o = self.cfg.optim
        return o.gamma ** sum(1 for m in o.milestones if self.step >= m)

    def _drop_log_records_after(self, step: int) -> None:
        """Forget what a crashed run logged and evaluated after its checkpoint: those steps are
        trained again (a record a kill cut in half goes too)."""
        for log in (self.run_dir / LOG_FILE, self.run_dir / EVALS_FILE):
            if not log.is_file():
                continue
            lines = log.read_text().splitlines(keepends=True)
            kept = [line for line in lines if _log_step(line) <= step]
            if kept and not kept[-1].endswith("\n"):
                kept[-1] += "\n"
            if kept != lines:
                atomic_write_text(log, "".join(kept))

    # ----------------------------------------------------------------------------------------
    # Progressive growing
    # ----------------------------------------------------------------------------------------

    def _growth_state(self) -> dict[str, float]:
        if self.growth is None:
            return {}
        level, alpha = self.parts["decoder"].growth()  # type: ignore[operator]
        return {"resolution": 4 * 2**level, "alpha": alpha}

    def _apply_growth(self) -> tuple[int, float]:
        """Set this step's (level, alpha) on both networks; on entering a level (or resuming in
        one) switch to its data stream, learning rate and beta_neg.
        Returns this step's (level, alpha)."""
        assert self.growth is not None
        level, alpha = self.growth.at(self.step)
        if self.level is not None and level != self.level:
            self.write_figures(self.run_dir / "levels" / f"{4 * 2**self.level}px")  # the finished level's pictures
        for module in self.parts.values():
            module.set_growth(level, alpha)  # type: ignore[operator]
        if level == self.level:
            return level, alpha
        self.level = level
        self.stream.set_level(level)  # type: ignore[attr-defined]
        decay = self._milestone_decay()
        for name in PARTS:
            lr = self.growth.lr(level) if self.cfg.grow.lrs else self.base_lrs[name]
            for group in self.optimizers[name].param_groups:
                group["lr"] = lr * decay
        beta_neg = self.growth.beta_neg(level)
        if beta_neg is not None:
            self.objective.config.beta_neg = beta_neg
        # s stays 1 / (C·H·W) of the final resolution at every level, as the authors' MODEL.SCALE:
        # their per-level beta_neg (2048 at 4x4) is tuned for it (docs/style.md)
        return level, alpha

    # ----------------------------------------------------------------------------------------
    # One step
    # ----------------------------------------------------------------------------------------

    def _set_trainable(self, trains: tuple[str, ...]) -> None:
        for name, module in self.parts.items():
            module.requires_grad_(name in trains)

    def _average_gradients(self, trains: tuple[str, ...]) -> None:
        world = self.accelerator.num_processes
        if world == 1:
            return
        for name in trains:
            for p in self.parts[name].parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad.div_(world)

    def to_device(self, batch: Batch) -> Batch:
        """The batch on the trainer's device (unchanged when it is there already)."""
        device = self.accelerator.device
        return Batch(batch.x.to(device, non_blocking=True), None if batch.y is None else batch.y.to(device))

    def train_step(self, batch: Batch) -> dict[str, Tensor]:
        """One step of every phase on ``batch`` (moved to the trainer's device if it is elsewhere);
        returns the detached logged values."""
        acc, step = self.accelerator, self.step
        batch = self.to_device(batch)
        logs: dict[str, Tensor] = {}
        self._set_trainable(PARTS)
        with acc.autocast():
            ctx = self.objective.begin_step(batch, self.models, step)
        for phase in self.objective.phases_at(step):
            check_phase(phase.trains, PARTS, self.cfg.objective["name"], phase.name)
            self._set_trainable(phase.trains)
            for name in phase.trains:
                self.optimizers[name].zero_grad(set_to_none=True)
            with acc.autocast():
                out = self.objective.phase_loss(phase, ctx, self.models)
            check_phase_output(out, self.cfg.objective["name"], phase.name)
            self._check_finite(phase, out.loss, out.logs)
            acc.backward(out.loss)
            self._average_gradients(phase.trains)
            if self.cfg.optim.grad_clip > 0:
                params = [p for name in phase.trains for p in self.parts[name].parameters()]
                acc.clip_grad_norm_(params, self.cfg.optim.grad_clip)
            for name in phase.trains:
                self.optimizers[name].step()
            logs[f"loss_{phase.name}"] = out.loss.detach()
            logs.update(out.logs)
        for scheduler in self.schedulers.values():
            scheduler.step()
        self._set_trainable(PARTS)
        return logs

    def _check_finite(self, phase: Phase, loss: Tensor, logs: dict[str, Tensor]) -> None:
        if bool(torch.isfinite(loss)):
            return
        bad = [f"{k}={v.item():.4g}" for k, v in logs.items() if not bool(torch.isfinite(v))]
        where = f"loss of phase '{phase.name}' is {loss.item()}" + (f" ({', '.join(bad)})" if bad else "")
        lower = f"{self.optimizers['encoder'].param_groups[0]['lr'] / 10:g}"
        if self.last_checkpoint_step is not None:
            kept = (f"the checkpoint after step {self.last_checkpoint_step} is kept ({self.run_dir / CHECKPOINT_DIR}): continue it with a lower "
                    f"learning rate, genvae train --run-dir {shell_quote(self.run_dir)} --resume --set optim.lr={lower}")  # fmt: skip
        elif self.step == 0 and not self.resume:  # nothing trained: the run is forgotten, its command can run again
            kept = f"nothing was trained: run it again with a lower learning rate, --set optim.lr={lower}"
        else:
            kept = (f"no checkpoint was written yet: train it again from step 0 with a lower learning rate, genvae train --run-dir "
                    f"{shell_quote(self.run_dir)} --resume --set optim.lr={lower}")  # fmt: skip
        game = "beta_neg" in self.cfg.objective and phase.name != "vae"  # the warm-up's loss has no β_neg term
        other = " or a lower objective.beta_neg in a new run" if game else ""
        precision = ", or --precision=no" if self.cfg.train.precision != "no" else ""
        raise NonFiniteLossError(f"non-finite loss in step {self.step + 1}: {where}; training stopped; {kept}{other}{precision}")

    # ----------------------------------------------------------------------------------------
    # The loop
    # ----------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        try:
            with denormals_flushed():
                return self._fit()
        except GenvaeError as exc:
            if not isinstance(exc, EvaluationError):  # that one says to fix the options and --resume
                self._forget_unstarted_run()
            raise
        finally:
            self.lock.release()

    def _forget_unstarted_run(self) -> None:
        """A new run that stopped with a user error before its first step (data of the wrong
        shape) leaves no run behind, so that the corrected command can use the same --run-dir (a
        directory it made is removed). Nothing was trained, so nothing is lost."""
        if self.resume or self.step > 0 or not self.accelerator.is_main_process or not self.lock.held:
            return
        (self.run_dir / "config.json").unlink(missing_ok=True)
        self.lock.path.unlink(missing_ok=True)  # the lock is still held: no other process can be starting here
        if self._made_run_dir:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # only when empty

    def _lock_run(self) -> None:
        """The main process takes the run's lock; every process stops alike when another holds it."""
        error = None
        if self.accelerator.is_main_process and self.run_dir.is_dir():
            try:
                self.lock.acquire()
            except RunDirError as exc:
                error = exc
        if self._on_any_process(error is not None):
            raise error or RunDirError(f"{self.run_dir} is being trained by another process; choose another --run-dir")

    def _start_run_dir(self) -> None:
        """A new run: check that --run-dir can hold it, create it, lock it and write its config.json."""
        acc = self.accelerator
        check_new_run_dir(self.run_dir)
        acc.wait_for_everyone()  # every process looks before the main process writes
        if acc.is_main_process:
            self._made_run_dir = not self.run_dir.exists()
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RunDirError(f"cannot create --run-dir {self.run_dir}: {exc.strerror}; choose another --run-dir") from None
        acc.wait_for_everyone()
        self._lock_run()
        if acc.is_main_process:
            check_new_run_dir(self.run_dir)  # another process may have started it meanwhile
            write_json(self.run_dir / "config.json", self.cfg.to_dict())
        acc.wait_for_everyone()

    def _fit(self) -> TrainResult:
        acc, t = self.accelerator, self.cfg.train
        if self.resume:
            self._lock_run()  # before reading the checkpoint another trainer may be writing
            self.load_checkpoint()
            if self.step >= t.steps:  # nothing to train; only what a kill after the last checkpoint left undone
                if (evaluations := planned_metrics(t, self.data.kind)) and self._not_yet_evaluated():
                    self.evaluate(evaluations)  # the final evaluation
                figures = [] if (self.run_dir / "losses.png").is_file() else self.write_figures()  # losses.png is written last
                return TrainResult(self.run_dir, self.step, 0, {}, figures, 0.0)
            if acc.is_main_process:
                write_json(self.run_dir / "config.json", self.cfg.to_dict())  # the new train.steps / intervals
            acc.wait_for_everyone()
        else:
            self._start_run_dir()
        if acc.is_main_process:
            (self.run_dir / STOP_NOTE).unlink(missing_ok=True)  # training again: an earlier stop is history
        if t.log_with:
            start_trackers(acc, self.cfg.to_dict(), self.run_dir, self.step)
        start_step, start_time = self.step, time.perf_counter()
        batches: Iterator[Batch] = iter(self.stream)
        window, last_logs = self.log_window, {}
        window.start(self.step)
        previous_handlers = self._catch_stop_signals()
        evaluations = planned_metrics(t, self.data.kind)
        self.progress = progress = TrainProgress(t.steps, start_step, progress_mode(self.show_progress, self.accelerator.is_main_process))
        try:
            if evaluations and self.step % t.eval_every == 0 and self._not_yet_evaluated():
                with window.paused():
                    self.evaluate(evaluations)  # where the curves start (a bad option shows at once), or one a failure missed
            with progress:
                while self.step < t.steps:
                    growth = self._apply_growth() if self.growth is not None else None
                    batch = self.to_device(next(batches))
                    if growth is not None:
                        batch = Batch(level_images(batch.x, *growth), batch.y)
                    window.add(self.train_step(batch))
                    self.step += 1
                    if self.step % TRIM_EVERY == 0:
                        release_free_memory()
                    if window.count and ((t.log_every and self.step % t.log_every == 0) or self.step == t.steps):
                        last_logs = self._write_log(window.close(self.step))
                    progress.update(self.step, last_logs, last_logs.get("steps_per_s", (self.step - start_step) / max(time.perf_counter() - start_time, 1e-9)))
                    if t.checkpoint_every and self.step % t.checkpoint_every == 0 and self.step < t.steps:
                        self.save_checkpoint()
                    if t.figures_every and self.step % t.figures_every == 0 and self.step < t.steps:
                        with window.paused():
                            self.write_figures()
                    if evaluations and self.step % t.eval_every == 0 and self.step < t.steps:
                        with window.paused():
                            self.evaluate(evaluations)
                    if self.step < t.steps and self._stop_requested():
                        if self.last_checkpoint_step != self.step:
                            self.save_checkpoint()
                        raise TrainingInterrupted(self.run_dir, self.step, self._stop_signal or signal.SIGINT)
            self.save_checkpoint()
            if evaluations:
                self.evaluate(evaluations)
            figures = self.write_figures()
            figures += [p for p in [self.run_dir / EVALS_FIGURE] if evaluations and p.is_file()]
            if self.growth is not None and self.level is not None:
                self.write_figures(self.run_dir / "levels" / f"{4 * 2**self.level}px")
            if self._stop_requested():  # arrived after the last step (final checkpoint, evaluation, figures)
                raise TrainingInterrupted(self.run_dir, self.step, self._stop_signal or signal.SIGINT)
        except (NonFiniteLossError, EvaluationError, KeyboardInterrupt) as exc:
            self._note_stop(exc)
            raise
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            if t.log_with:
                acc.end_training()
        return TrainResult(self.run_dir, self.step, self.step - start_step, last_logs, figures, time.perf_counter() - start_time)

    def _note_stop(self, exc: BaseException) -> None:
        """Leave ``stopped.json`` in the run: why and at which step training stopped, for
        ``genvae info`` (a killed process leaves none)."""
        if not self.accelerator.is_main_process:
            return
        saved = "no checkpoint yet: resuming starts from step 0" if self.last_checkpoint_step is None else f"last checkpoint: step {self.last_checkpoint_step}"
        reason = str(exc) or f"interrupted at step {self.step}; {saved}"
        write_json(self.run_dir / STOP_NOTE, {"step": self.step, "checkpoint_step": self.last_checkpoint_step, "reason": reason, "time": time.strftime("%Y-%m-%d %H:%M:%S")})

    def _catch_stop_signals(self) -> dict[int, Any]:
        """Make Ctrl-C (SIGINT) and SIGTERM set a flag that the loop checks after each step; the
        first signal puts the previous handlers back, so a second one acts at once. Returns the
        previous handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}  # signal handlers can only be set from the main thread
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        previous = {s: signal.SIG_DFL if h is None else h for s, h in previous.items()}

        def on_signal(signum: int, frame: Any) -> None:
            self._stop_signal = signum
            for s, handler in previous.items():
                signal.signal(s, handler)

        for s in previous:
            signal.signal(s, on_signal)
        return previous

    def _stop_requested(self) -> bool:
        """Whether Ctrl-C or SIGTERM arrived, on any process: all stop after the same step."""
        return self._on_any_process(self._stop_signal is not None)

    def _on_any_process(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any process (so that all of them act alike)."""
        if self.accelerator.num_processes == 1:
            return flag
        value = torch.tensor(float(flag), device=self.accelerator.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def _write_log(self, means: dict[str, float]) -> dict[str, float]:
        speed = means.pop("steps_per_s")
        record: dict[str, float] = {"step": self.step, **means}
        record["lr"] = self.optimizers["encoder"].param_groups[0]["lr"]
        record.update(self._growth_state())
        record["steps_per_s"] = speed  # since the previous record
        if self.accelerator.is_main_process:
            with open(self.run_dir / LOG_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.cfg.train.log_with:
            self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=self.step)
        if self.on_log:
            self.on_log(record)
        return record

    def write_figures(self, out_dir: Path | None = None) -> list[Path]:
        """The data's own pictures (samples, density / reconstructions) and, in the run
        directory, the loss curves. A growing model's images are enlarged to the data's size."""
        if not self.accelerator.is_main_process:
            return []
        from genvae.viz.curves import plot_losses

        with self._networks_as_exported(), torch.no_grad():
            eval_models = models_view(self.parts["encoder"], self.parts["decoder"], self.data)  # type: ignore[arg-type]
            paths = list(self.data.write_figures(eval_models, out_dir or self.run_dir, seed=self.cfg.train.seed))
        if out_dir is not None:
            return paths
        curve = plot_losses(self.run_dir / LOG_FILE, self.run_dir / "losses.png")
        paths += [curve] if curve else []
        if self.cfg.train.log_with:
            log_figures(self.accelerator, paths, self.step)
        return paths

    @contextlib.contextmanager
    def _networks_as_exported(self) -> Iterator[None]:
        """The networks as a checkpoint exports them (recalibrated BatchNorm, eval mode) for figures
        and evaluations; the random state is restored afterwards, so that training goes on exactly
        as it would have without them."""
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self._recalibrate_batchnorm()
            for module in self.parts.values():
                module.eval()
            try:
                yield
            finally:
                for module in self.parts.values():
                    module.train()

    def evaluate(self, metrics: dict[str, dict[str, Any]]) -> dict[str, float]:
        """Score the networks now with each of ``metrics`` (name -> options); append the record to
        ``RUN/evals.jsonl``, redraw ``RUN/evals.png`` and pass it to the trackers. A failing
        evaluation stops training at a checkpoint (:class:`EvaluationError`)."""
        acc = self.accelerator
        run = LoadedRun(self.run_dir, self.cfg, self.data, self.parts["encoder"], self.parts["decoder"], self.step)  # type: ignore[arg-type]
        values: dict[str, float] = {}
        error: Exception | None = None
        try:
            with self._networks_as_exported():
                values = evaluate_now(run, metrics, self.plugins, acc.is_main_process)
        except (GenvaeError, TypeError) as exc:
            error = exc
        if self._on_any_process(error is not None):  # every process stops, at the same checkpoint
            if self.step and self.last_checkpoint_step != self.step:
                self.save_checkpoint()
            raise evaluation_failed(error or RuntimeError("it failed on another process"), self.step, self.last_checkpoint_step) from error
        if acc.is_main_process:
            with open(self.run_dir / EVALS_FILE, "a") as f:
                f.write(json.dumps({"step": self.step, **values}) + "\n")
            plot_evaluations(self.run_dir)
            self.progress.note(f"eval step {self.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        if self.cfg.train.log_with:
            acc.log(values, step=self.step)
        return values

    def _not_yet_evaluated(self) -> bool:
        """Whether evals.jsonl lacks this step, as the main process (which writes it) sees it."""
        path = self.run_dir / EVALS_FILE
        missing = not (path.is_file() and self.step in {_log_step(line) for line in path.read_text().splitlines()})
        return self._on_any_process(self.accelerator.is_main_process and missing)


def _log_step(line: str) -> float:
    """The step of a log.jsonl record; infinity for a blank or torn one (never kept)."""
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:
        return math.inf


def train(cfg: ResolvedConfig, data: DataSource, run_dir: str | Path, **kwargs: Any) -> TrainResult:
    """Train (or with ``resume=True`` continue) a run; see :class:`Trainer`."""
    return Trainer(cfg, data, run_dir, **kwargs).fit()


def leave_process_group() -> None:
    """End a multi-process run cleanly: wait for every process, then destroy the process group.

    Without this a process that finishes first exits while gloo still has threads talking to the
    others, and the C++ runtime aborts it ("terminate called without an active exception", SIGABRT)
    after its work is done. Does nothing in a single process.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
