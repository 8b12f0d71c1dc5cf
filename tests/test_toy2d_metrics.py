"""The 2-D metrics (KL, JSD, gnELBO), their figures, and tiny runs of the 2-D benchmarks."""

from __future__ import annotations

import json
import math
from unittest import mock

import numpy as np
import pytest
import torch

from genvae.errors import ConfigError, RunDirError
from genvae.plugins.datasets.toy2d import TABLE5
from genvae.plugins.metrics import toy2d as M


def _points(seed: int, n: int = 5000, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 0.5, size=(n, 2))


def test_histogram_matches_numpy():
    p = _points(0)
    h = M.density_histogram(p, scale=1.0)
    ref, _, _ = np.histogram2d(p[:, 0], p[:, 1], bins=100, density=True, range=[[-2, 2], [-2, 2]])
    assert h.shape == (100, 100)
    np.testing.assert_array_equal(h, ref)


def test_kl_of_histogram_with_itself_is_zero():
    h = M.density_histogram(_points(0), 1.0)
    assert M.kl_authors(h, h) == pytest.approx(0.0, abs=1e-12)
    assert M.jsd_authors(h, h) == pytest.approx(0.0, abs=1e-12)
    assert M.jsd_textbook(h, h) == pytest.approx(0.0, abs=1e-12)


def test_kl_and_jsd_match_direct_numpy():
    real = M.density_histogram(_points(0), 2.0)
    fake = M.density_histogram(_points(1, shift=0.3), 2.0)
    eps = 1e-14
    # kl_div(input=log q, target=p) = Σ p (log p − log q), 0 where p = 0; 'batchmean' divides by rows
    def kl_div(log_q, p):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - log_q), 0.0)
        return terms.sum() / p.shape[0]

    assert M.kl_authors(real, fake) == pytest.approx(kl_div(np.log(fake + eps), real), rel=1e-10)
    mix = 0.5 * (real + fake)
    jsd = 0.5 * (kl_div(np.log(real + eps), mix) + kl_div(np.log(fake + eps), mix))
    assert M.jsd_authors(real, fake) == pytest.approx(jsd, rel=1e-10)
    p, q = real.ravel() / real.sum(), fake.ravel() / fake.sum()
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        tb = 0.5 * np.nansum(np.where(p > 0, p * np.log(p / m), 0)) + 0.5 * np.nansum(np.where(q > 0, q * np.log(q / m), 0))
    assert M.jsd_textbook(real, fake) == pytest.approx(tb, rel=1e-10)


def test_textbook_jsd_symmetric_and_bounded():
    a = M.density_histogram(_points(0), 1.0)
    b = M.density_histogram(_points(1, shift=1.5), 1.0)
    assert M.jsd_textbook(a, b) == pytest.approx(M.jsd_textbook(b, a), rel=1e-12)
    assert 0 < M.jsd_textbook(a, b) <= math.log(2) + 1e-12
    # disjoint supports reach log 2
    c = M.density_histogram(np.full((100, 2), -1.5), 1.0)
    d = M.density_histogram(np.full((100, 2), 1.5), 1.0)
    assert M.jsd_textbook(c, d) == pytest.approx(math.log(2), rel=1e-12)
    # the authors' "JSD" is not a bounded divergence (argument order of kl_div)
    assert M.jsd_authors(c, d) > math.log(2)


def test_sampling_floor_is_the_histograms_noise():
    """A perfect generator's KL / JSD (further draws of the data) is far above 0 at the paper's
    5,000 samples on a spread-out dataset, and falls as the sample count grows."""
    from genvae.plugins.datasets.toy2d import Toy2D

    board = Toy2D("checkerboard")
    floor = {n: M.sampling_floor(board, 2.0, num_samples=n, draws=3) for n in (1000, 5000, 20000)}
    assert 10 < floor[5000]["kl"][0] < 25 and floor[5000]["kl"][1] > 0
    assert floor[1000]["kl"][0] > 2 * floor[5000]["kl"][0] > 4 * floor[20000]["kl"][0]
    assert floor[1000]["jsd"][0] > floor[5000]["jsd"][0] > floor[20000]["jsd"][0]
    # its real draw is the evaluation's (seed 0): scoring that draw against itself gives 0
    same = M.sample_divergences(M.real_samples(board, 5000, 0), M.real_samples(board, 5000, 0), 2.0)
    assert same["kl"] == pytest.approx(0.0, abs=1e-12)


def test_gnelbo_by_hand():
    grid = torch.tensor([1.0, 2.0, 3.0, 4.0])
    real = torch.tensor([0.5, 1.5])
    # total = 10 + 2 = 12; mean(real / total) = (0.5 + 1.5) / 2 / 12 = 1/12, in 1e-7 units
    assert M.grid_normalized_elbo(grid, real) == pytest.approx((1 / 12) / 1e-7, rel=1e-6)


def test_energy_is_kl_plus_squared_error():
    enc = lambda x: (x * 0.5, torch.zeros_like(x))  # noqa: E731  mu = x/2, logvar = 0
    dec = lambda z: z * 2.0 + 0.1  # noqa: E731
    x = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    e = M.elbo_energy(enc, dec, x, chunk=1)
    kl = 0.5 * (x * 0.5).pow(2).sum(1)  # logvar 0: KL = ½ Σ μ²
    rec = torch.full((2,), 2 * 0.01)
    torch.testing.assert_close(e, kl + rec)


def test_grid_layout_matches_authors():
    g = M.setup_grid(1.0, 4)
    x = torch.linspace(-2, 2, 4)
    assert torch.equal(g[:4, 0], torch.full((4,), -2.0)) and torch.equal(g[:4, 1], x)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A briefly trained VAE exported as a run directory (load_run-compatible)."""
    from genvae.batched import BatchedTrainer, member_configs
    from genvae.core.checkpoint import export_component
    from genvae.core.config import write_json

    cfgs, data = member_configs("vae", "8gaussians", seeds=[0], train={"batch_size": 64}, arch={"hidden": 32})
    bt = BatchedTrainer(cfgs, data)
    bt.fit(30)
    enc, dec = bt.member_modules(0)
    d = tmp_path_factory.mktemp("run")
    write_json(d / "config.json", cfgs[0].to_dict())
    export_component(enc, d / "encoder", "encoder", "mlp")
    export_component(dec, d / "decoder", "decoder", "mlp")
    return d


def test_evaluate_writes_metrics_and_figures(tiny_run, tmp_path):
    from genvae.core.plugins import get_plugins
    from genvae.core.run import load_run

    metric = get_plugins().metrics.get("toy2d")
    res = metric.evaluate(load_run(tiny_run), seed=0, out_dir=tmp_path, grid_points=64, gnelbo_batches=4)
    for key in ("kl", "jsd", "jsd_textbook", "gnelbo"):
        assert math.isfinite(res[key])
    assert 0 <= res["jsd_textbook"] <= math.log(2) + 1e-9
    assert 0 < res["perfect_model"]["kl"] < res["kl"]  # 30 steps of a tiny VAE are far from the data
    assert res["gnelbo_reference"]["uniform"] == pytest.approx(1e7 / (64**2 + 4 * 128))  # equal energy everywhere: 1 / points
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["kl"] == pytest.approx(res["kl"])
    assert (tmp_path / "eval_samples.png").stat().st_size > 1000
    assert (tmp_path / "eval_density.png").stat().st_size > 1000
    # the same seed gives the same numbers
    again = metric.evaluate(load_run(tiny_run), seed=0, out_dir=tmp_path, grid_points=64, gnelbo_batches=4, figures=False)
    assert again["kl"] == res["kl"] and again["gnelbo"] == res["gnelbo"]


def test_write_toy2d_figures(tiny_run, tmp_path):
    from genvae.core.run import load_run
    from genvae.viz.points import write_toy2d_figures

    run = load_run(tiny_run)
    paths = write_toy2d_figures(run.models, run.data, tmp_path, seed=0, n_pts=64)
    assert [p.name for p in paths] == ["samples.png", "density.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_bench_functions_tiny(tmp_path):
    from genvae.bench2d import run_table2
    from genvae.bench_collapse import run_collapse
    from genvae.bench_stability import run_stability

    small = dict(train={"batch_size": 32}, arch={"hidden": 16}, log=None)
    t2 = run_table2(tmp_path, steps=12, seeds=1, datasets=["8gaussians"], objectives=["vae", "soft-intro"], grid_points=32,
                    objective_overrides={"soft-intro": {"num_vae": 5}}, **small)
    assert set(t2["summary"]["8gaussians"]) == {"vae", "soft-intro"}
    md = (tmp_path / "table2.md").read_text()
    assert "7.42 ± 0.07" in md and "Soft-IntroVAE" in md
    kl_floor = t2["floor"]["8gaussians"]["kl"]
    assert "| 8gaussians | kl |" in md and md.count(f"{kl_floor[0]:.2f} ± {kl_floor[1]:.2f} |") == 1
    reference = t2["floor"]["8gaussians"]["gnelbo"][0]  # the energy ‖x‖² on the bench's grid
    assert "| 8gaussians | gnelbo |" in md and md.split("| 8gaussians | gnelbo |")[1].split("\n")[0].endswith(f"| {reference:.2f} |")
    assert (tmp_path / "table2_grid.png").is_file() and (tmp_path / "table2.json").is_file()
    import genvae.bench2d as bench2d

    with mock.patch.object(bench2d, "train_batched", side_effect=AssertionError("a finished cell was trained again")):
        again = run_table2(tmp_path, steps=12, seeds=1, datasets=["8gaussians"], objectives=["vae", "soft-intro"], grid_points=32,
                           objective_overrides={"soft-intro": {"num_vae": 5}}, **small)
    without_time = lambda text: [line for line in text.splitlines() if "time:" not in line]  # noqa: E731
    assert again["summary"] == t2["summary"] and without_time((tmp_path / "table2.md").read_text()) == without_time(md)
    with pytest.raises(RunDirError, match=r"other settings \(steps: 12 saved, 13 now\); pass the saved ones"):
        run_table2(tmp_path, steps=13, seeds=1, datasets=["8gaussians"], objectives=["vae"], grid_points=32, **small)
    # a changed recommendation (a new genvae version, say) is a change of settings too
    with mock.patch.dict(TABLE5["8gaussians"]["vae"], {"beta_kl": 0.06}):
        with pytest.raises(RunDirError, match=r"other settings \(resolved.objective.beta_kl: [\d.]+ saved, 0.06 now\)"):
            run_table2(tmp_path, steps=12, seeds=1, datasets=["8gaussians"], objectives=["vae"], grid_points=32, **small)
    # an architecture setting passed explicitly with the value the cell was trained with is the same cell
    explicit = {**small, "arch": {"hidden": 16, "depth": 4}}
    with mock.patch.object(bench2d, "train_batched", side_effect=AssertionError("a finished cell was trained again")):
        run_table2(tmp_path, steps=12, seeds=1, datasets=["8gaussians"], objectives=["vae"], grid_points=32, **explicit)
    with pytest.raises(RunDirError, match=r"other settings \(resolved.arch.depth: 4 saved, 3 now\); pass the saved ones \(here: --set arch.depth=4\)"):
        run_table2(tmp_path, steps=12, seeds=1, datasets=["8gaussians"], objectives=["vae"], grid_points=32, **{**small, "arch": {"hidden": 16, "depth": 3}})

    st = run_stability(tmp_path, steps=8, seeds=1, ms=[1, 4], grid_points=32, soft_intro_overrides={"num_vae": 3}, **small)
    assert [row["m"] for row in st["intro"]] == [1.0, 4.0]
    assert st["cells"]["intro"]["train_seconds"] > 0 and st["cells"]["soft-intro"]["device"] == "cpu"
    assert (tmp_path / "stability.png").is_file()
    table = (tmp_path / "stability.md").read_text().splitlines()  # the figure's numbers, one seed: no ± std
    assert table[0] == "8gaussians, 8 steps, 1 seed; gnELBO in 1e-7" and table[2] == "| model | m | KL | JSD | gnELBO |"
    assert table[4] == f"| IntroVAE | 1 | {st['intro'][0]['kl'][0]:.2f} | {st['intro'][0]['jsd'][0]:.2f} | {st['intro'][0]['gnelbo'][0]:.2f} |"
    assert table[-1].startswith("| Soft-IntroVAE | — | ")
    import genvae.bench_stability as bench_stability

    with mock.patch.object(bench_stability, "train_batched", side_effect=AssertionError("trained again")):
        again = run_stability(tmp_path, steps=8, seeds=1, ms=[1, 4], grid_points=32, soft_intro_overrides={"num_vae": 3}, **small)
    assert again["intro"] == st["intro"] and again["soft_intro"] == st["soft_intro"] and again["cells"] == st["cells"]

    split = tmp_path / "split"  # the two models trained by separate calls (processes) give the same figure data
    kw = dict(steps=8, seeds=1, ms=[1, 4], grid_points=32, soft_intro_overrides={"num_vae": 3}, **small)
    assert run_stability(split, models=["soft-intro"], **kw) is None and not (split / "stability.png").exists()
    with mock.patch.object(bench_stability, "train_batched", side_effect=AssertionError("--report trained")):
        assert run_stability(split, report=True, **kw) is None  # IntroVAE is not finished: nothing trained, no figure
    with pytest.raises(ConfigError, match="holds neither stability model, finished or training .it does not exist.: there is nothing to report"):
        run_stability(tmp_path / "typo", report=True, **kw)
    assert not (tmp_path / "typo").exists()
    both = run_stability(split, models=["intro"], **kw)
    assert both["intro"] == st["intro"] and both["soft_intro"] == st["soft_intro"] and (split / "stability.png").is_file()
    with pytest.raises(ConfigError, match="stability models must be among intro, soft-intro, got vae"):
        run_stability(split, models=["vae"], **kw)

    co = run_collapse(tmp_path, steps=12, seeds=1, soft_intro_overrides={"num_vae": 5}, **small)
    assert len(co["models"]["vae"]["kl_per_step"][0]) == 12
    assert (tmp_path / "collapse.png").is_file()
    from genvae.batched import BatchedTrainer

    with mock.patch.object(BatchedTrainer, "train_step", side_effect=AssertionError("trained again")):
        again = run_collapse(tmp_path, steps=12, seeds=1, soft_intro_overrides={"num_vae": 5}, **small)
    assert again["models"] == co["models"]


def test_table2_cells_trained_in_worker_processes_equal_those_trained_in_process(tmp_path):
    from genvae.bench2d import run_table2

    kw = dict(steps=6, seeds=1, datasets=["8gaussians"], objectives=["vae", "intro"], grid_points=32,
              train={"batch_size": 32}, arch={"hidden": 16}, log=None)  # fmt: skip
    one = run_table2(tmp_path / "one", **kw)
    two = run_table2(tmp_path / "two", jobs=2, **kw)
    assert two["summary"] == one["summary"] and set(two["runs"]) == {"8gaussians/vae", "8gaussians/intro"}
    with pytest.raises(ConfigError, match="--jobs must be at least 1, got 0"):
        run_table2(tmp_path / "three", jobs=0, **kw)


def test_a_table2_report_without_a_finished_cell_is_an_error_not_an_empty_table(tmp_path):
    """A mistyped --out asked for a report: one line, and nothing written (a cell still training is reported, with its step)."""
    from genvae.bench2d import run_table2

    out = tmp_path / "table2-typo"
    with pytest.raises(ConfigError, match=r"table2-typo holds none of these Table 2 cells, finished or training \(it does not exist\)"):
        run_table2(out, steps=6, seeds=1, datasets=["8gaussians"], objectives=["vae"], train_missing=False, log=None)
    assert not out.exists()


def test_table2_markdown_header_has_as_many_columns_as_its_rule_even_before_any_cell_finished():
    from genvae.bench2d import table2_markdown

    for summary in ({}, {"rings": {"vae": {k: (1.0, 0.1) for k in ("gnelbo", "kl", "jsd", "jsd_textbook")}}}):
        lines = table2_markdown({"steps": 6, "seeds": [0], "summary": summary, "runs": {}, "floor": {}}).splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("| dataset"))
        assert lines[header].count("|") == lines[header + 1].count("|"), lines[header : header + 2]


def test_interrupted_table2_cell_continues_from_its_state(tmp_path):
    """A crash in the middle of a cell keeps its last saved state; the rerun continues from it and
    gives the metrics of a cell trained straight through; the finished cell drops its state."""
    import genvae.bench2d as bench2d
    from genvae.batched import BatchedTrainer

    args = dict(steps=12, seeds=[0, 1], datasets=["8gaussians"], objectives=["soft-intro"], grid_points=32, log=None,
                train={"batch_size": 32}, arch={"hidden": 16}, objective_overrides={"soft-intro": {"num_vae": 5}})  # fmt: skip
    straight = bench2d.run_table2(tmp_path / "straight", **args)

    real_step = BatchedTrainer.train_step

    def crash_at_9(self):
        if self.step == 9:
            raise KeyboardInterrupt
        return real_step(self)

    cell = tmp_path / "crashed" / "cells" / "8gaussians-soft-intro"
    with mock.patch.object(bench2d, "BENCH_CHECKPOINT_EVERY", 4), mock.patch.object(BatchedTrainer, "train_step", crash_at_9):
        with pytest.raises(KeyboardInterrupt):
            bench2d.run_table2(tmp_path / "crashed", **args)
    assert torch.load(cell / "state.pt", weights_only=True)["step"] == 8
    with pytest.raises(RunDirError, match=r"holds training with other settings \(steps: 12 saved, 13 now\)"):
        bench2d.run_table2(tmp_path / "crashed", **{**args, "steps": 13})

    lines: list[str] = []
    with mock.patch.object(BatchedTrainer, "train_step", side_effect=AssertionError("a report trains nothing")):
        report = bench2d.run_table2(tmp_path / "crashed", **{**args, "log": lines.append}, train_missing=False)
    assert report["summary"] == {} and "state saved at step 8 of 12" in lines[0]
    assert (tmp_path / "crashed" / "table2.md").is_file()

    continued_from = []
    real_load = BatchedTrainer.load
    with mock.patch.object(BatchedTrainer, "load", lambda self, p: (real_load(self, p), continued_from.append(self.step))):
        again = bench2d.run_table2(tmp_path / "crashed", **args)
    assert continued_from == [8]
    assert again["runs"]["8gaussians/soft-intro"]["members"] == straight["runs"]["8gaussians/soft-intro"]["members"]
    assert (cell / "result.json").is_file() and not (cell / "state.pt").exists() and not (cell / "settings.json").exists()
    seconds = again["runs"]["8gaussians/soft-intro"]["train_seconds"]
    assert 0 < seconds and "summed over the 1 cells" in (tmp_path / "crashed" / "table2.md").read_text()


def test_table2_grid_draws_only_what_is_finished(tmp_path):
    from PIL import Image

    from genvae.bench2d import table2_grid
    from genvae.core.plugins import get_plugins

    plugins = get_plugins()
    arch = plugins.architectures.get("mlp")
    tiny = lambda: (arch.encoder(hidden=8, depth=1), arch.decoder(hidden=8, depth=1))  # noqa: E731
    gauss, rings = plugins.datasets.get("8gaussians")(), plugins.datasets.get("rings")()
    sizes = []
    for models in ({("8gaussians", "vae"): (tiny(), gauss)}, {("8gaussians", "vae"): (tiny(), gauss), ("rings", "soft-intro"): (tiny(), rings)}):
        path = table2_grid(models, ["8gaussians", "2spirals", "rings"], ["vae", "intro", "soft-intro"], tmp_path / "grid.png", n_pts=16, n_samples=50)
        with Image.open(path) as im:
            sizes.append(im.size)
    # 1 row x (real + VAE's 2 panels); then 2 rows x (real + 2 objectives x 2), two panels "not finished"
    assert sizes == [(660, 220), (1100, 440)]


def test_figure_benches_set_takes_architecture_settings_only():
    from genvae.bench2d import arch_overrides

    assert arch_overrides(["arch.depth=3", "arch.hidden=128"]) == {"depth": 3, "hidden": 128}
    with pytest.raises(ConfigError, match=r"--set 'objective.beta_kl=0.5': this bench takes arch.KEY=VALUE only"):
        arch_overrides(["objective.beta_kl=0.5"])


def test_bench_table2_set_sends_an_objective_option_to_the_objectives_that_have_it():
    from genvae.bench2d import table2_overrides

    notes: list[str] = []
    sets = ["arch.depth=3", "objective.encoder_fake_grad=target", "objective.beta_kl=0.5"]
    arch, per_objective = table2_overrides(sets, ["vae", "intro", "soft-intro"], log=notes.append)
    assert arch == {"depth": 3}
    assert per_objective == {"vae": {"beta_kl": 0.5}, "intro": {"beta_kl": 0.5}, "soft-intro": {"encoder_fake_grad": "target", "beta_kl": 0.5}}
    assert notes == ["table2 bench: vae has no option objective.encoder_fake_grad; its runs go without",
                     "table2 bench: intro has no option objective.encoder_fake_grad; its runs go without"]  # fmt: skip
    with pytest.raises(ConfigError, match=r"--set 'data.path=x': bench table2 takes arch.KEY=VALUE and objective.KEY=VALUE only"):
        table2_overrides(["data.path=x"], ["vae"])


def test_the_2d_datasets_recommend_the_authors_network():
    """Four hidden ReLU layers of 256: the authors' 2-D script (n_layers=3 after the input layer)."""
    from genvae.core.run import resolve

    for name in ("8gaussians", "2spirals", "checkerboard", "rings"):
        cfg, _ = resolve({"data": {"name": name}, "objective": {"name": "soft-intro"}})
        assert cfg.arch == {"name": "mlp", "hidden": 256, "depth": 4, "z_dim": 2, "output": "linear"}
    cfg, _ = resolve({"data": {"name": "rings"}, "arch": {"name": "mlp", "depth": 3}})
    assert cfg.arch["depth"] == 3


def test_a_cell_saved_before_a_bookkeeping_setting_existed_is_reused(tmp_path):
    """train.compile appeared after some Table 2 cells were kept; it changes nothing learned, so a
    cell without it is still reused, while a real difference is still refused."""
    from genvae.bench2d import _refuse_other_settings

    wanted = {"steps": 3, "resolved": {"train": {"steps": 3, "compile": False, "log_every": 10}}}
    _refuse_other_settings(tmp_path, {"steps": 3, "resolved": {"train": {"steps": 3}}}, wanted, "was computed with")
    with pytest.raises(RunDirError, match=r"was computed with other settings \(resolved.train.batch_size: 64 saved, \(none\) now\)"):
        _refuse_other_settings(tmp_path, {"steps": 3, "resolved": {"train": {"steps": 3, "batch_size": 64}}}, wanted, "was computed with")


def test_a_cell_saved_before_an_architecture_option_existed_is_reused(tmp_path):
    """arch.output appeared after the Table 2 cells were kept; their resolved arch has no such key
    and meant the linear output, so they are still reused, while another output is refused."""
    from genvae.bench2d import _refuse_other_settings

    old = {"name": "mlp", "hidden": 256, "depth": 4, "z_dim": 2}
    wanted = {"steps": 3, "resolved": {"arch": {**old, "output": "linear"}}}
    _refuse_other_settings(tmp_path, {"steps": 3, "resolved": {"arch": old}}, wanted, "was computed with")
    sigmoid = {"steps": 3, "resolved": {"arch": {**old, "output": "sigmoid"}}}
    with pytest.raises(RunDirError, match=r"resolved.arch.output: linear saved, sigmoid now"):
        _refuse_other_settings(tmp_path, {"steps": 3, "resolved": {"arch": old}}, sigmoid, "was computed with")


def test_a_cell_or_run_saved_before_an_objective_option_existed_is_reused(tmp_path):
    """objective.decoder_fake_grad appeared after the Table 2 cells and bench runs were kept; its
    default is what they were trained with, so they are still reused, while the other value is refused."""
    from genvae.bench2d import _refuse_other_settings
    from genvae.core.bench_run import continue_or_start
    from genvae.core.checkpoint import CHECKPOINT_DIR
    from genvae.core.run import saved_objective

    old = {"name": "soft-intro", "beta_rec": 0.2, "beta_kl": 0.5, "beta_neg": 1.0, "num_vae": 2000, "encoder_fake_grad": "full"}
    now = saved_objective(old)
    assert now["decoder_fake_grad"] == "fakes" and now["gamma_r"] == 1e-8 and now["beta_kl"] == 0.5
    _refuse_other_settings(tmp_path, {"steps": 3, "resolved": {"objective": old}}, {"steps": 3, "resolved": {"objective": now}}, "was computed with")
    other = {"steps": 3, "resolved": {"objective": {**now, "decoder_fake_grad": "reconstructions"}}}
    with pytest.raises(RunDirError, match=r"resolved.objective.decoder_fake_grad: fakes saved, reconstructions now"):
        _refuse_other_settings(tmp_path, {"steps": 3, "resolved": {"objective": old}}, other, "was computed with")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"objective": old}))
    (run / CHECKPOINT_DIR).mkdir()
    (run / CHECKPOINT_DIR / "trainer.json").write_text('{"step": 10}')
    assert continue_or_start(run, {"objective": now}) is True


def test_squared_norm_reference_is_the_gnelbo_of_the_energy_norm_squared():
    """The gnELBO reference of e(x) = ‖x‖², by hand: the same grid and real batches as a model's score."""
    import torch

    from genvae.core.plugins import get_plugins
    from genvae.plugins.metrics.toy2d import setup_grid, squared_norm_gnelbo

    data = get_plugins().datasets.get("rings")()
    g = torch.Generator().manual_seed(3 + 2)  # compute_metrics draws the gnELBO batches with seed + 2
    real = torch.cat([data.sampler(16, g) for _ in range(3)])
    grid = setup_grid(2.0, 32)
    by_hand = (real.pow(2).sum(1) / torch.cat([grid.pow(2).sum(1), real.pow(2).sum(1)]).sum()).mean().item() / 1e-7
    value = squared_norm_gnelbo(data, 2.0, seed=3, grid_points=32, gnelbo_batches=3, gnelbo_batch_size=16)
    assert value == pytest.approx(by_hand, rel=1e-5)
    assert value < 1e7 / (32**2 + 48)  # rings lie nearer the origin than the grid's average point


def test_a_bench_asking_for_an_absent_gpu_stops_before_writing(tmp_path, monkeypatch):
    from genvae.bench2d import run_table2
    from genvae.bench_collapse import run_collapse
    from genvae.bench_stability import run_stability

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name, bench in [("table2", run_table2), ("stability", run_stability), ("collapse", run_collapse)]:
        with pytest.raises(ConfigError, match="--device cuda but no CUDA GPU is visible"):
            bench(tmp_path / name, steps=2, seeds=1, device="cuda", log=None)
        assert not (tmp_path / name).exists()


def test_2d_data_without_a_table5_row_takes_the_rings_betas():
    """25gaussians had the objectives' image defaults (beta_neg 256), far outside Table 5's 0.2-1.0."""
    from genvae.core.run import resolve

    cfg, _ = resolve({"data": {"name": "25gaussians"}, "objective": {"name": "soft-intro"}})
    assert {k: cfg.objective[k] for k in ("beta_rec", "beta_kl", "beta_neg")} == TABLE5["rings"]["soft-intro"]
    assert cfg.objective["num_vae"] == 2000 and cfg.train.steps == 30_000


def test_kl_and_both_jsds_of_two_by_two_histograms_by_hand():
    """Worked by hand: 2 rows (batchmean divides by 2); a bin empty in the fake histogram but not
    in the real one costs real·(log real − log 1e-14), so eps and its place inside the log count."""
    real = np.array([[1.0, 0.0], [2.0, 1.0]])
    fake = np.array([[2.0, 1.0], [1.0, 0.0]])
    ln = math.log
    # Σ real·(log real − log(fake + ε)): −ln 2 (bin 00) + 0 (01) + 2 ln 2 (10) + (0 − ln 1e-14) (11)
    assert M.kl_authors(real, fake) == pytest.approx((ln(2) + 14 * ln(10)) / 2, rel=1e-12)
    # M = [[1.5, .5], [1.5, .5]]; Σ M·(log M − log(real + ε)) and the same for fake are equal here:
    # 1.5 ln 1.5 + .5(ln .5 + 14 ln 10) + 1.5(ln 1.5 − ln 2) + .5 ln .5
    half = (3 * ln(1.5) + ln(0.5) - 1.5 * ln(2) + 7 * ln(10)) / 2
    assert M.jsd_authors(real, fake) == pytest.approx(half, rel=1e-12)
    # textbook: p = [.25, 0, .5, .25], q = [.5, .25, .25, 0], m = [.375, .125, .375, .125]
    kl_pm = 0.25 * ln(0.25 / 0.375) + 0.5 * ln(0.5 / 0.375) + 0.25 * ln(0.25 / 0.125)
    kl_qm = 0.5 * ln(0.5 / 0.375) + 0.25 * ln(0.25 / 0.125) + 0.25 * ln(0.25 / 0.375)
    assert M.jsd_textbook(real, fake) == pytest.approx(0.5 * (kl_pm + kl_qm), rel=1e-12)
    # the same numbers through the histograms of points: one point per unit of mass, a 2x2 grid on [-2, 2]²
    # (density = count / (n · bin area), bin area 4): the arrays above times 1/(4·4)
    pts_real = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, -1.0], [1.0, 1.0]])
    pts_fake = np.array([[-1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]])
    np.testing.assert_allclose(M.density_histogram(pts_real, 1.0, bins=2), real / 16)
    np.testing.assert_allclose(M.density_histogram(pts_fake, 1.0, bins=2), fake / 16)


def test_textbook_jsd_of_an_empty_histogram_is_log_2():
    """No sample inside the range: maximally different, as the docstring says (not 0, which
    would score the worst generator as perfect)."""
    empty = np.zeros((100, 100))
    full = M.density_histogram(_points(0), 1.0)
    assert M.jsd_textbook(full, empty) == pytest.approx(math.log(2)) and M.jsd_textbook(empty, full) == pytest.approx(math.log(2))
    with np.errstate(invalid="ignore"):  # numpy's density of an empty histogram: 0 / 0 in every bin
        far = M.sample_divergences(_points(0), np.full((50, 2), 100.0), 1.0)  # every generated point outside [-2, 2]²
    assert far["jsd_textbook"] == pytest.approx(math.log(2))


def test_histogram_range_is_4_wide_for_8gaussians_and_8_wide_for_the_others():
    """The spec's scale: 1 for 8gaussians, 2 for the other datasets (the range is [-2·scale, 2·scale]²)."""
    from genvae.plugins.datasets.toy2d import Toy2D

    assert M.plot_scale("8gaussians") == 1.0
    for name in ("2spirals", "checkerboard", "rings", "25gaussians", "a-users-points"):
        assert M.plot_scale(name) == 2.0
    assert Toy2D("8gaussians").plot_scale == 1.0 and Toy2D("rings").plot_scale == 2.0


def test_compute_metrics_uses_the_papers_counts_and_the_documented_seeds():
    """Defaults: 5,000 real and generated samples, a 1024 × 1024 grid over [-2s, 2s]² and
    100 × 128 real samples for gnELBO; real samples seed, prior noise seed + 1; the KL is of the
    real histogram against the generated one (not the reverse)."""
    from genvae.plugins.datasets.toy2d import Toy2D

    data = Toy2D("rings")
    encoded, decoded = [], []

    def encoder(x):
        encoded.append(x.clone())
        return x, torch.zeros_like(x)

    def decoder(z):
        decoded.append(len(z))
        return 0.5 * z

    out = M.compute_metrics(encoder, decoder, data, scale=2.0, z_dim=2, seed=7, return_samples=True)
    assert decoded[0] == 5000 and len(out["_real"]) == 5000
    torch.testing.assert_close(out["_real"], data.sampler(5000, torch.Generator().manual_seed(7)), rtol=0, atol=0)
    torch.testing.assert_close(out["_fake"], 0.5 * torch.randn(5000, 2, generator=torch.Generator().manual_seed(8)), rtol=0, atol=0)
    points = torch.cat(encoded)
    assert len(points) == 1024**2 + 100 * 128 and out["_grid_energy"].numel() == 1024**2
    grid = points[: 1024**2]
    assert grid.min().item() == -4.0 and grid.max().item() == 4.0 and len(grid[:, 0].unique()) == 1024
    expected = M.sample_divergences(out["_real"], out["_fake"], 2.0)
    assert out["kl"] == expected["kl"] != M.sample_divergences(out["_fake"], out["_real"], 2.0)["kl"]


def test_fraction_outside_range_counts_generated_points_outside_the_histogram_range():
    """Half the generated points at x = 1.5 (inside [-2, 2]² for 8gaussians' scale 1), half at 2.5."""

    def encoder(x):
        return x, torch.zeros_like(x)

    def decoder(z):
        return torch.tensor([[1.5, 0.0], [2.5, 0.0]]).repeat(len(z) // 2, 1) if len(z) % 2 == 0 else z

    from genvae.plugins.datasets.toy2d import Toy2D

    out = M.compute_metrics(encoder, decoder, Toy2D("8gaussians"), scale=1.0, z_dim=2, num_samples=100, grid_points=8, gnelbo_batches=1, gnelbo_batch_size=5)
    assert out["fraction_outside_range"] == 0.5
