"""The ``points`` dataset: a user's rows from .npy / .npz / .csv / .tsv / .txt (``--data FILE``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from genvae.core.run import resolve
from genvae.errors import ConfigError, DataChangedWarning, DataError
from genvae.plugins.datasets.points_file import PointsFile, nice_scale


def _rows(n: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2))


def test_text_files_with_and_without_a_header(tmp_path: Path) -> None:
    x = _rows(5)
    (tmp_path / "a.csv").write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in x) + "\n")
    (tmp_path / "b.tsv").write_text("\n".join(f"{a}\t{b}" for a, b in x))
    (tmp_path / "c.txt").write_text("# a comment\n\n" + "\n".join(f"  {a}   {b}" for a, b in x))
    (tmp_path / "d.csv").write_text('"x";"y"\n' + "\n".join(f"{a};{b}" for a, b in x))
    for name in ("a.csv", "b.tsv", "c.txt", "d.csv"):
        data = PointsFile(str(tmp_path / name))
        assert data.shape == (2,) and torch.allclose(data.rows, torch.tensor(x, dtype=torch.float32)), name


def test_columns_by_header_name_or_index(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,x,label,y\n1,0.5,cat,-0.5\n2,1.5,dog,-1.5\n")
    with pytest.raises(DataError, match=r"t.csv line 2: 'cat' is not a number; correct it, or pick the numeric columns with data.columns"):
        PointsFile(str(tmp_path / "t.csv"))
    # a text column (labels) is no error when data.columns leaves it out, as the user guide's columns=[x,y]
    assert PointsFile(str(tmp_path / "t.csv"), columns=["x", "y"]).rows.tolist() == [[0.5, -0.5], [1.5, -1.5]]
    with pytest.raises(DataError, match=r"t.csv line 2: 'cat' is not a number; correct it$"):
        PointsFile(str(tmp_path / "t.csv"), columns=["x", "label"])
    (tmp_path / "t.csv").write_text('id,x,"label, long",y\n1,0.5,7,-0.5\n2,1.5,8,-1.5\n')
    picked = PointsFile(str(tmp_path / "t.csv"), columns=["y", "x"])
    assert picked.rows.tolist() == [[-0.5, 0.5], [-1.5, 1.5]] and picked.column_names == ["y", "x"]
    assert PointsFile(str(tmp_path / "t.csv"), columns=[1, -1]).rows.tolist() == [[0.5, -0.5], [1.5, -1.5]]
    with pytest.raises(ConfigError, match=r"data.columns: t.csv has no column 'z'; its columns: 'id', 'x', 'label, long', 'y'"):
        PointsFile(str(tmp_path / "t.csv"), columns=["z"])
    np.save(tmp_path / "t.npy", _rows(4))
    with pytest.raises(ConfigError, match=r"has no column 2; it has 2 columns \(0 to 1\) and no header"):
        PointsFile(str(tmp_path / "t.npy"), columns=[2])


def test_numpy_files(tmp_path: Path) -> None:
    x = _rows(6)
    np.save(tmp_path / "x.npy", x)
    assert torch.allclose(PointsFile(str(tmp_path / "x.npy")).rows, torch.tensor(x, dtype=torch.float32))
    np.save(tmp_path / "v.npy", x[:, 0])  # one column
    assert PointsFile(str(tmp_path / "v.npy")).shape == (1,)
    np.savez(tmp_path / "one.npz", points=x)
    assert PointsFile(str(tmp_path / "one.npz")).rows.shape == (6, 2)
    np.savez(tmp_path / "two.npz", points=x, labels=np.arange(6))
    with pytest.raises(DataError, match=r"two.npz holds 2 arrays \(points, labels\); choose one with data.key=NAME"):
        PointsFile(str(tmp_path / "two.npz"))
    with pytest.raises(DataError, match=r"holds no array 'pts'; its arrays: points, labels"):
        PointsFile(str(tmp_path / "two.npz"), key="pts")
    assert PointsFile(str(tmp_path / "two.npz"), key="labels").shape == (1,)
    np.save(tmp_path / "cube.npy", np.zeros((3, 2, 2)))
    with pytest.raises(DataError, match=r"shape \(3, 2, 2\); give rows × features"):
        PointsFile(str(tmp_path / "cube.npy"))


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs data.path"):
        PointsFile()
    with pytest.raises(DataError, match="no file"):
        PointsFile(str(tmp_path / "missing.csv"))
    np.save(tmp_path / "nan.npy", np.array([[0.0, 1.0], [np.nan, 0.0], [np.inf, 1.0]]))
    with pytest.raises(DataError, match=r"row 1 \(0-based, after any header\) is not finite.*2 row\(s\) in all"):
        PointsFile(str(tmp_path / "nan.npy"))
    (tmp_path / "ragged.csv").write_text("1,2\n3,4,5\n")
    with pytest.raises(DataError, match="ragged.csv line 2 has 3 values where the first row has 2"):
        PointsFile(str(tmp_path / "ragged.csv"))
    (tmp_path / "one.csv").write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match="holds 1 row"):
        PointsFile(str(tmp_path / "one.csv"))
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="cannot read .*broken.npy"):
        PointsFile(str(tmp_path / "broken.npy"))
    np.save(tmp_path / "words.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match="holds <U1 values; save the numbers as a float array"):
        PointsFile(str(tmp_path / "words.npy"))
    with pytest.raises(ConfigError, match=r"test_fraction must be in \[0, 1\)"):
        PointsFile(str(tmp_path / "one.csv"), test_fraction=1.0)
    (tmp_path / "header.csv").write_text("x,y\n")
    with pytest.raises(DataError, match="header.csv holds a header and no rows"):
        PointsFile(str(tmp_path / "header.csv"))


def test_one_column_gets_histograms(tmp_path: Path) -> None:
    """One column of numbers trained, then crashed at its first figure (a scatter of two columns)."""
    import genvae

    (tmp_path / "one.csv").write_text("\n".join(str(v) for v in np.random.default_rng(0).normal(size=200)))
    result = genvae.train(tmp_path / "run", objective="vae", data=str(tmp_path / "one.csv"), steps=3, batch_size=32,
                          settings={"arch.hidden": 8, "train.figures_every": 3})  # fmt: skip
    assert tmp_path / "run" / "samples.png" in result.figures
    run = genvae.load_run(tmp_path / "run")
    run.data.plot_samples(run.models.decode(torch.randn(50, run.models.z_dim)), tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_data_far_from_unit_scale_is_pointed_out(tmp_path: Path) -> None:
    np.save(tmp_path / "far.npy", _rows(50) * 3 + 500)
    with pytest.warns(UserWarning, match=r"means up to 50\d.*save \(x - mean\) / std per column"):
        data = PointsFile(str(tmp_path / "far.npy"))
    assert data.plot_scale == 500.0  # the figures still hold every row
    np.save(tmp_path / "near.npy", _rows(50))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PointsFile(str(tmp_path / "near.npy"))


def test_nice_scale_holds_the_largest_value() -> None:
    assert [nice_scale(v) for v in (1.9, 2.0, 3.0, 4.5, 9.0, 0.3, 180.0)] == [1.0, 1.5, 2.0, 2.5, 5.0, 0.2, 100.0]
    for v in np.geomspace(1e-3, 1e4, 50):
        assert 2 * nice_scale(v) >= 1.05 * v


def test_epochs_visit_every_row_once_and_resume_exactly(tmp_path: Path) -> None:
    x = np.arange(20, dtype=float).reshape(10, 2)
    np.save(tmp_path / "x.npy", x)
    data = PointsFile(str(tmp_path / "x.npy"))
    stream = data.train_stream(4, seed=3)
    batches = iter(stream)
    first = torch.cat([next(batches).x for _ in range(5)])  # two epochs of 10 rows
    assert sorted(first[:10, 0].tolist()) == sorted(first[10:, 0].tolist()) == list(range(0, 20, 2))
    state = stream.state_dict()
    after = [next(batches).x for _ in range(3)]
    resumed = data.train_stream(4, seed=3)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, next(iter(resumed)).x) for a in after)
    np.save(tmp_path / "more.npy", np.arange(24, dtype=float).reshape(12, 2))  # rows added between the kill and the resume
    with pytest.raises(DataError, match=r"points holds 12 training rows where the checkpoint's run had 10: the data changed"):
        PointsFile(str(tmp_path / "more.npy")).train_stream(4, seed=3).load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same rows again: no warning
        PointsFile(str(tmp_path / "x.npy")).train_stream(4, seed=3).load_state_dict(state)
    np.save(tmp_path / "other.npy", x[::-1].copy())  # same number of rows, other content
    with pytest.warns(DataChangedWarning, match="the training rows differ from those the checkpoint was trained on"):
        PointsFile(str(tmp_path / "other.npy")).train_stream(4, seed=3).load_state_dict(state)


def test_a_held_out_split(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(40, dtype=float).reshape(20, 2) / 10)
    data = PointsFile(str(tmp_path / "x.npy"), test_fraction=0.25)
    train, test = set(data.splits["train"].tolist()), set(data.splits["test"].tolist())
    assert len(test) == 5 and len(train) == 15 and not train & test and data.has_test_split
    assert set(data.test_batch(12).x[:, 0].mul(5).round().long().tolist()) <= test
    whole = PointsFile(str(tmp_path / "x.npy"))
    assert not whole.has_test_split and whole.split_size("test") == whole.split_size("train") == 20


def test_a_file_as_data_name_is_the_points_dataset(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _rows(100))
    cfg, data = resolve({"data": {"name": str(tmp_path / "x.npy")}, "objective": {"name": "soft-intro"}})
    assert cfg.data["name"] == "points" and cfg.data["path"] == str(tmp_path / "x.npy")
    # the 2-D recipe with the rings' Table 5 row (not the images' beta_neg = 256); batch at most the rows
    assert cfg.arch["name"] == "mlp" and cfg.arch["depth"] == 4 and cfg.train.batch_size == 100
    assert (cfg.objective["beta_rec"], cfg.objective["beta_kl"], cfg.objective["beta_neg"], cfg.objective["num_vae"]) == (0.2, 0.2, 1.0, 2000)
    np.save(tmp_path / "y.npy", _rows(100))
    with pytest.raises(ConfigError, match=r"--data .*x.npy and data.path=.*y.npy name two different files"):
        resolve({"data": {"name": str(tmp_path / "x.npy"), "path": str(tmp_path / "y.npy")}})
    with pytest.raises(ConfigError, match=r"no file or directory 'missing.npy' \(and no dataset of that name\)"):
        resolve({"data": {"name": "missing.npy"}})
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"'.*x.json' is a file; --data takes .* a file of rows \(\.npy, \.npz, \.csv, \.tsv, \.txt\)"):
        resolve({"data": {"name": str(tmp_path / "x.json")}})
    np.save(tmp_path / "wide.npy", _rows(100, 1).repeat(5, axis=1))
    cfg, data = resolve({"data": {"name": f"points:path={tmp_path / 'wide.npy'},columns=[0,1,2]"}})
    assert data.shape == (3,) and cfg.arch["name"] == "mlp" and cfg.arch["z_dim"] == 3 and cfg.data["columns"] == [0, 1, 2]


def test_train_evaluate_sample_and_resume_on_a_csv(tmp_path: Path, monkeypatch) -> None:
    import genvae
    from typer.testing import CliRunner

    from genvae.cli import app

    monkeypatch.chdir(tmp_path)
    x = _rows(300)
    (tmp_path / "mine.csv").write_text("a,b\n" + "\n".join(f"{a},{b}" for a, b in x))
    settings = {"objective.num_vae": 2, "arch.hidden": 16, "train.checkpoint_every": 3}
    genvae.train("run", objective="soft-intro", data="mine.csv", steps=3, batch_size=32, settings=settings)
    runner = CliRunner()
    moved = tmp_path / "moved.csv"
    (tmp_path / "mine.csv").rename(moved)
    result = runner.invoke(app, ["train", "--resume", "--run-dir", "run", "--data", str(moved), "--steps", "5"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["path"] == str(moved)
    result = runner.invoke(app, ["eval", "toy2d", "run"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == "points" and np.isfinite(metrics["kl"]) and metrics["perfect_model"]["kl"] < metrics["kl"]
    result = runner.invoke(app, ["sample", "run", "-n", "50", "--out", "s.png"])
    assert result.exit_code == 0 and (tmp_path / "s.png").stat().st_size > 0, result.output
    for out in ("s.csv", "s.npy"):  # rows, as the data came; the csv with the data's header
        result = runner.invoke(app, ["sample", "run", "-n", "50", "--out", out])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "a,b"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # five steps' samples are far from unit scale
        rows = PointsFile(str(tmp_path / "s.csv")).rows
    assert rows.shape == (50, 2) and torch.allclose(rows, torch.from_numpy(np.load(tmp_path / "s.npy")), atol=1e-5)
    result = runner.invoke(app, ["eval", "ood", "run", "--in", str(moved), "--out", "8gaussians"])
    assert result.exit_code == 0, result.output
