"""The point-cloud plugin as a user installs it: discovered through its entry point,
contract-tested, Chamfer checked by hand, trained end to end through the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genvae.cli import app
from genvae.core.losses import reconstruction_error, reconstruction_loss
from genvae.core.plugins import get_plugins, use_plugins
from genvae.core.run import load_run
from genvae.errors import ConfigError, DataError
from genvae.testing import ArchitectureContract, DatasetContract
from genvae_pointcloud.chamfer import chamfer_distance
from genvae_pointcloud.data import PointCloudFolder, PointCloudShapes

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # as genvae's own tests: two workers on two cores


@pytest.fixture(autouse=True)
def _installed_plugins(monkeypatch):
    monkeypatch.delenv("GENVAE_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    use_plugins(None)
    yield
    use_plugins(None)


def write_ply(path: Path, points: np.ndarray, extra_property: bool = True) -> None:
    props = ["x", "y", "z"] + (["intensity"] if extra_property else [])
    lines = ["ply", "format ascii 1.0", "comment written by the test", f"element vertex {len(points)}"]
    lines += [f"property float {p}" for p in props] + ["element face 0", "property list uchar int vertex_indices", "end_header"]
    rows = [" ".join(str(v) for v in (*p, 0.5)[: len(props)]) for p in points.tolist()]
    path.write_text("\n".join(lines + rows) + "\n")


def make_folder(root: Path, n_per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(("boxes", "blobs")):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            points = rng.normal(size=(20 + 7 * i, 3)).astype(np.float32) * (1 + k)
            if i % 2:
                write_ply(root / name / f"{i}.ply", points)
            else:
                np.save(root / name / f"{i}.npy", points)
    return root


# --- contracts --------------------------------------------------------------------------------


class TestPointNetContract(ArchitectureContract):
    arch_name = "pointnet"
    arch_options = {"z_dim": 4, "channels": [8, 16], "fc": [16], "decoder_hidden": [16]}
    data_shape = (32, 3)
    num_classes = 3


class TestShapesContract(DatasetContract):
    dataset_name = "pointcloud-shapes"
    dataset_options = {"size": 40, "num_points": 32}


class TestFolderContract(DatasetContract):
    dataset_name = "pointcloud"

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path_factory):
        self.dataset_options = {"path": str(make_folder(tmp_path_factory.mktemp("clouds"))), "num_points": 16}


def test_discovered_through_the_entry_point():
    info = get_plugins().info["pointcloud"]
    assert (info.distribution, info.error) == ("genvae-pointcloud", None)
    assert info.registers == {"architecture": ["pointnet"], "dataset": ["pointcloud", "pointcloud-shapes"], "loss": ["chamfer"]}
    assert reconstruction_loss("chamfer") is chamfer_distance


# --- Chamfer by hand ----------------------------------------------------------------------------


def test_chamfer_is_zero_for_the_same_set_in_any_order():
    x = torch.randn(3, 40, 3, generator=torch.Generator().manual_seed(0))
    shuffled = x[:, torch.randperm(40, generator=torch.Generator().manual_seed(1))]
    assert torch.equal(chamfer_distance(x, shuffled), torch.zeros(3))
    assert (chamfer_distance(x, x + 0.1) > 0).all()


def test_chamfer_of_two_points_by_hand_and_its_gradient():
    # X = {(0,0,0), (1,0,0)}, Y = {(0,0,0), (0,2,0)}
    # X -> Y: 0 + min(1, 1 + 4) = 1;  Y -> X: 0 + min(4, 1 + 4) = 4;  CD = 5
    x = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    y = torch.tensor([[[0.0, 0, 0], [0, 2, 0]]], requires_grad=True)
    cd = chamfer_distance(x, y)
    assert cd.shape == (1,) and cd.item() == pytest.approx(5.0)
    cd.sum().backward()
    # y1 is the nearest neighbour of x2: ∂‖x2 − y1‖²/∂y1 = 2(y1 − x2) = (−2, 0, 0);
    # y2's nearest neighbour is x1: ∂‖y2 − x1‖²/∂y2 = 2(y2 − x1) = (0, 4, 0)
    assert torch.allclose(y.grad, torch.tensor([[[-2.0, 0, 0], [0, 4, 0]]]))


def test_chamfer_gradient_matches_finite_differences_and_sets_may_differ_in_size():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(2, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert chamfer_distance(x, y).shape == (2,)
    assert torch.autograd.gradcheck(lambda t: chamfer_distance(x, t), (y,), fast_mode=True)


def test_chamfer_sits_on_the_scale_of_mse():
    """Same points, same order, small errors: every nearest neighbour is at most the own partner, CD ≤ 2·mse."""
    x = torch.randn(4, 64, 3, generator=torch.Generator().manual_seed(3))
    x_rec = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    cd, mse = chamfer_distance(x, x_rec), reconstruction_error(x, x_rec, "mse")
    assert (cd <= 2 * mse + 1e-6).all() and (cd > 1.5 * mse).all()  # close to 2·mse when neighbours are far apart


# --- data ------------------------------------------------------------------------------------


def test_folder_reads_npy_and_ascii_ply_with_classes_fixed_size_and_normalised(tmp_path):
    data = PointCloudFolder(str(make_folder(tmp_path)), num_points=24)
    assert (data.size, data.num_classes, data.class_names, data.shape) == (12, 2, ["blobs", "boxes"], (24, 3))
    clouds, labels = data.load()
    assert clouds.shape == (12, 24, 3) and labels.tolist() == [0] * 6 + [1] * 6
    assert torch.allclose(clouds.mean(dim=1), torch.zeros(12, 3), atol=1e-5)
    assert torch.allclose(clouds.norm(dim=-1).amax(dim=1), torch.ones(12))


def test_ply_points_are_the_files_points(tmp_path):
    points = np.array([[0.0, 1, 2], [3, 4, 5], [-1, -2, -3]], dtype=np.float32)
    write_ply(tmp_path / "a.ply", points)
    data = PointCloudFolder(str(tmp_path), num_points=3, normalize=False)
    got = data.load()[0][0]
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, points.tolist()))


def test_clear_errors_for_a_missing_folder_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="needs data.path"):
        PointCloudFolder()
    with pytest.raises(DataError, match="is not a directory; set data.path to a folder of .npy"):
        PointCloudFolder(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no .npy or .ply files under"):
        PointCloudFolder(str(tmp_path))
    np.save(tmp_path / "flat.npy", np.zeros((10, 2), dtype=np.float32))
    with pytest.raises(DataError, match=r"flat.npy holds an array of shape \(10, 2\), expected \(N, 3\) points"):
        PointCloudFolder(str(tmp_path)).load()
    (tmp_path / "flat.npy").unlink()
    (tmp_path / "bin.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n\x00\x00")
    with pytest.raises(DataError, match="binary_little_endian-format PLY; only ASCII PLY is read"):
        PointCloudFolder(str(tmp_path)).load()


def test_cli_reports_a_missing_folder_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "--arch", "pointnet", "--data", "pointcloud", "--set", f"data.path={tmp_path / 'missing'}", "--dry-run"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "is not a directory; set data.path to a folder of .npy (N×3) or ASCII .ply files" in " ".join(result.output.split())


def test_shapes_are_seeded_labelled_and_held_out_differs():
    a, b = PointCloudShapes(size=30, num_points=16), PointCloudShapes(size=30, num_points=16)
    assert torch.equal(a.load()[0], b.load()[0]) and set(a.load()[1].tolist()) == {0, 1, 2}
    assert not torch.equal(a.load()[0][:5], a.test_batch(5).x)
    assert not torch.equal(a.load()[0], PointCloudShapes(size=30, num_points=16, seed=1).load()[0])


# --- end to end -----------------------------------------------------------------------------

TINY = ["--set", "data.size=48", "--set", "data.num_points=32", "--set", "arch.z_dim=8", "--set", "arch.channels=[16,32]",
        "--set", "arch.fc=[32]", "--set", "arch.decoder_hidden=[64]", "--set", "objective.num_vae=20", "--set", "train.log_every=1",
        "--set", "optim.lr=3e-3", "--batch-size", "16", "--no-progress"]  # fmt: skip


def test_soft_intro_on_shapes_through_the_cli_learns_exports_and_reloads(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--objective", "soft-intro", "--arch", "pointnet", "--data", "pointcloud-shapes",
            "--set", "objective.recon_loss=chamfer", "--steps", "40", "--run-dir", str(run), *TINY]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    # 20 VAE warm-up steps, then 20 Soft-IntroVAE steps: in 40 steps the decoder learns the shapes'
    # common outline (Chamfer ~10 -> ~7 with 32 points); telling the shapes apart takes a few
    # hundred steps (the README's run)
    recs = [r["rec"] for r in log]
    assert log[-1]["step"] == 40 and "loss_encoder" in log[-1]
    assert sum(recs[-5:]) / 5 < 0.8 * sum(recs[:3]) / 3, [round(r, 2) for r in recs]
    assert (run / "pointclouds.png").stat().st_size > 10_000

    loaded = load_run(run)
    assert loaded.config.objective["recon_loss"] == "chamfer" and loaded.data.shape == (32, 3)
    x = loaded.data.test_batch(8).x
    with torch.no_grad():
        mu, _ = loaded.encoder(x)
        rec = loaded.decoder(mu)
        mu2, _ = load_run(run).encoder(x)
    assert torch.equal(mu, mu2)  # the export reloads to the same network
    at_centre = reconstruction_error(x, torch.zeros_like(x), "chamfer").mean()
    assert reconstruction_error(x, rec, "chamfer").mean() < 0.9 * at_centre  # better than all points at the centre

    sample = CliRunner().invoke(app, ["sample", str(run), "--num-samples", "4", "--out", str(tmp_path / "s.png")])
    assert sample.exit_code == 0, sample.output
    assert (tmp_path / "s.png").is_file()
