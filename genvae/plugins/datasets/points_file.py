"""Your own points: one sample per row of a file (``--data my.csv`` or ``--data points:path=my.npy``).

Read files: ``.npy`` (a 2-D array, rows × features), ``.npz`` (its one array, or ``data.key``),
``.csv`` / ``.tsv`` / ``.txt`` (numbers separated by commas, tabs, semicolons or spaces; a first
line that is not all numbers is a header). ``data.columns`` picks columns by header name or index.
The rows are served as the image datasets serve images: shuffled epochs, resumable mid-epoch.

Rows get the 2-D toys' recipe (the paper's network and schedule, the rings' Table 5 β's; a latent
as wide as a row, at most ``MAX_Z_DIM``); two-dimensional rows also their figures and metrics
(``genvae eval toy2d``): the plots and histograms span [-2·scale, 2·scale]²
around the origin, with ``scale`` chosen to hold every row. The paper's networks and β's are for
data of about unit scale around 0: data far from that is pointed out, to be rescaled in the file
(nothing is rescaled silently, so samples come out in the file's units).

For point clouds (one cloud per sample) see the genvae-pointcloud plugin.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genvae.core.hookspecs import hookimpl
from genvae.core.interfaces import Batch, DataSource, Models
from genvae.errors import ConfigError, DataError
from genvae.plugins.datasets.image_source import ImageStream, held_out_batch, held_out_split

POINT_SUFFIXES = (".npy", ".npz", ".csv", ".tsv", ".txt")
MAX_Z_DIM = 32  # rows of more columns start from a latent of this size (--set arch.z_dim=N)
FAR_FROM_UNIT = 10.0  # a mean or spread beyond this (or a spread below its inverse) is pointed out


def read_table(path: Path, key: str = "") -> tuple[np.ndarray, list[str]]:
    """(float64 rows × columns, the header's column names or []) of one file."""
    suffix = path.suffix.lower()
    if suffix not in POINT_SUFFIXES:
        raise DataError(f"points: cannot read {path.name!r}; give a {', '.join(POINT_SUFFIXES)} file")
    try:
        if suffix == ".npy":
            return _numeric(np.load(path, allow_pickle=False), path), []
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if key and key not in names:
                    raise DataError(f"points: {path.name} holds no array {key!r}; its arrays: {', '.join(names)}")
                if not key and len(names) != 1:
                    raise DataError(f"points: {path.name} holds {len(names)} arrays ({', '.join(names)}); choose one with data.key=NAME")
                return _numeric(archive[key or names[0]], path), []
        return _read_text(path)
    except (OSError, ValueError, EOFError) as exc:  # a damaged or mislabelled file
        raise DataError(f"points: cannot read {path}: {numpy_read_error(exc)}") from None


def numpy_read_error(exc: BaseException) -> str:
    """Why NumPy could not read a file, without its advice to load pickles (unsafe, and never
    what a damaged or mislabelled file needs)."""
    if "allow_pickle" in str(exc):
        return "it is not a NumPy array file, or holds Python objects (save numbers with np.save / np.savez)"
    return str(exc)


def _numeric(array: np.ndarray, path: Path) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"points: {path.name} holds {array.dtype} values; save the numbers as a float array")
    return array.astype(np.float64)


def _read_text(path: Path) -> tuple[np.ndarray, list[str]]:
    lines = [(n, line.strip()) for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise DataError(f"points: {path} holds no rows")
    delimiter = next((d for d in (",", "\t", ";") if d in lines[0][1]), None)

    def fields(line: str) -> list[str]:  # csv's quoting: a quoted header name may hold the delimiter
        return [f.strip() for f in next(csv.reader([line], delimiter=delimiter))] if delimiter else line.split()

    header = fields(lines[0][1])
    if all(_is_number(f) for f in header):
        header = []
    else:
        lines = lines[1:]
        if not lines:
            raise DataError(f"points: {path.name} holds a header and no rows")
    rows = [fields(line) for _, line in lines]
    for (n, _), values in zip(lines, rows):
        if len(values) != len(rows[0]):
            raise DataError(f"points: {path.name} line {n} has {len(values)} values where the first row has {len(rows[0])}")
    cells = np.empty((len(rows), len(rows[0])), dtype=object)  # text: numbers are read once columns are picked
    cells[:] = rows
    return TextCells(cells, [n for n, _ in lines]), header


class TextCells(np.ndarray):
    """A text file's cells (strings), which remember each row's line in the file; :func:`as_numbers`
    reads them once ``data.columns`` has picked the columns, so a text column left out is no error."""

    def __new__(cls, cells: np.ndarray, line_numbers: list[int]) -> "TextCells":
        out = np.asarray(cells).view(cls)
        out.line_numbers = line_numbers
        return out

    def __array_finalize__(self, obj) -> None:  # type: ignore[no-untyped-def]
        self.line_numbers = getattr(obj, "line_numbers", None)


def as_numbers(table: np.ndarray, path: Path, columns_given: bool) -> np.ndarray:
    """``table`` as float64; a text cell that is no number stops with its line."""
    if not isinstance(table, TextCells):
        return table
    for row, n in zip(table, table.line_numbers):
        bad = next((v for v in row if not _is_number(v)), None)
        if bad is not None:
            fix = "correct it" + ("" if columns_given else ", or pick the numeric columns with data.columns=[NAME,...]")
            raise DataError(f"points: {path.name} line {n}: {bad!r} is not a number; {fix}")
    return np.asarray(table, dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def select_columns(table: np.ndarray, header: list[str], columns: list[int | str], path: Path) -> tuple[np.ndarray, list[str]]:
    """The columns named (header names or 0-based indices), in the order given (all when none),
    and their header names ([] without a header)."""
    if not columns:
        return table, header
    index = []
    for c in columns:
        if isinstance(c, str) and c in header:
            index.append(header.index(c))
        elif isinstance(c, int) and -table.shape[1] <= c < table.shape[1]:
            index.append(c % table.shape[1])
        else:
            names = f"its columns: {', '.join(map(repr, header))}" if header else f"it has {table.shape[1]} columns (0 to {table.shape[1] - 1}) and no header"
            raise ConfigError(f"data.columns: {path.name} has no column {c!r}; {names}")
    return table[:, index], [header[i] for i in index] if header else []


class PointsFile(DataSource):
    """Rows of a .npy / .npz / .csv / .tsv / .txt file, one sample per row (``data.path``)."""

    kind = "points"
    name = "points"
    hflip = False

    def __init__(self, path: str = "", columns: list[int | str] = (), key: str = "", test_fraction: float = 0.0) -> None:  # type: ignore[assignment]
        if not path:
            raise ConfigError(f"the points dataset needs data.path, a file of rows ({', '.join(POINT_SUFFIXES)}); or give --data FILE")
        if not 0.0 <= test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be in [0, 1), got {test_fraction}")
        self.path = Path(path).expanduser()
        self.title = f"points: {self.path.name}"  # the figures' title
        if not self.path.is_file():
            raise DataError(f"points: no file {self.path}; set data.path to a file of rows ({', '.join(POINT_SUFFIXES)})")
        table, header = read_table(self.path, key)
        if table.ndim == 1:
            table = table[:, None]
        if table.ndim != 2:
            images = f", or train on images with --data=image-array:path={self.path}" if table.ndim in (3, 4) else ""
            raise DataError(f"points: {self.path.name} holds an array of shape {table.shape}; give rows × features (2 dimensions){images}")
        table, self.column_names = select_columns(table, header, list(columns), self.path)
        table = as_numbers(table, self.path, bool(columns))
        bad = np.flatnonzero(~np.isfinite(table).all(axis=1))
        if len(bad):
            raise DataError(f"points: {self.path.name} row {bad[0]} (0-based, after any header) is not finite (NaN or infinity), "
                            f"{len(bad)} row(s) in all; remove or fill them")  # fmt: skip
        if len(table) < 2:
            raise DataError(f"points: {self.path.name} holds {len(table)} row(s); a dataset needs at least 2")
        self.rows = torch.from_numpy(table).to(torch.float32)
        self.shape = (self.rows.shape[1],)
        self.splits = held_out_split(len(self.rows), test_fraction)
        self.has_test_split = test_fraction > 0
        self.plot_scale = nice_scale(float(self.rows.abs().max()))
        from genvae.plugins.datasets.toy2d import TABLE5_OTHER_2D, recipe_2d

        self.recommended = recipe_2d(TABLE5_OTHER_2D)  # the paper's only settings for low-dimensional data
        self.recommended["train"]["batch_size"] = min(self.recommended["train"]["batch_size"], self.split_size("train"))
        self.recommended["arch"]["z_dim"] = min(self.dim, MAX_Z_DIM)  # 2-D: the paper's z_dim 2
        self._warn_if_far_from_unit()

    def _warn_if_far_from_unit(self) -> None:
        mean, std = self.rows.mean(0), self.rows.std(0)
        spread = float(std.max())
        if float(mean.abs().max()) > FAR_FROM_UNIT or spread > FAR_FROM_UNIT or spread < 1 / FAR_FROM_UNIT:
            warnings.warn(f"points: the columns of {self.path.name} have means up to {float(mean.abs().max()):.3g} and spreads up to "
                          f"{spread:.3g}; the networks and the paper's β's are for data of about unit scale around 0: "
                          "save (x - mean) / std per column and train on that", stacklevel=2)  # fmt: skip

    # served like images: the stream asks for split sizes and rows by index
    def split_size(self, split: str) -> int:
        return len(self.splits[split])

    def get(self, index: Tensor, split: str = "train") -> Batch:
        return Batch(self.rows[self.splits[split][index]])

    def train_stream(self, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> ImageStream:
        return ImageStream(self, batch_size, seed, rank, world_size)

    def test_batch(self, n: int, seed: int = 0) -> Batch:
        """``n`` held-out rows (every row when there is no held-out split), repeated when fewer."""
        return held_out_batch(self, n, seed)

    def sample(self, n: int, seed: int = 0) -> Tensor:
        """``n`` rows drawn with replacement from all rows (``genvae eval toy2d``'s real samples)."""
        index = torch.randint(0, len(self.rows), (n,), generator=torch.Generator().manual_seed(seed))
        return self.rows[index]

    def write_figures(self, models: Models, out_dir: Path, seed: int = 0) -> list[Path]:
        """2-D rows: ``samples.png`` (rows vs generated) and ``density.png`` (exp(ELBO) on a grid);
        more columns: ``samples.png`` of the first two; one column: histograms."""
        from genvae.plugins.metrics.toy2d import generated_samples
        from genvae.viz.points import write_toy2d_figures

        if self.dim == 2:
            return write_toy2d_figures(models, self, Path(out_dir), seed)
        fake = generated_samples(models.decode, models.z_dim, 2000, seed)
        title = self.title if self.dim == 1 else f"{self.title}, columns 1 and 2"
        return [self._draw(self.sample(2000, seed), fake, Path(out_dir) / "samples.png", title)]

    def plot_samples(self, x: Tensor, path: Path) -> None:
        self._draw(self.sample(len(x)), x.reshape(len(x), -1), Path(path))

    def _draw(self, real: Tensor, fake: Tensor, path: Path, title: str = "") -> Path:
        """Real beside generated rows: a scatter of the first two columns, or histograms of one."""
        from genvae.viz.points import histogram_real_fake, scatter_real_fake

        if self.dim == 1:
            return histogram_real_fake(real, fake, self.plot_scale, path, title)
        return scatter_real_fake(real[:, :2], fake[:, :2], self.plot_scale, path, title)


def nice_scale(largest: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 5 times a power of ten with 2·scale ≥ 1.05·``largest``."""
    need = max(1.05 * largest / 2.0, 1e-6)
    power = 10.0 ** math.floor(math.log10(need))
    return next(m * power for m in (1.0, 1.5, 2.0, 2.5, 5.0, 10.0) if m * power >= need)


@hookimpl
def genvae_register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register("points", PointsFile)
