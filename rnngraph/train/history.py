"""A training run a person can watch: one log line per epoch, a CSV history, a PNG plot.

    history = History(["loss", "train_accuracy", "test_accuracy"])
    history.add(epoch=1, loss=0.9, train_accuracy=0.71, test_accuracy=0.75, seconds=1.2)
    print(history.line(-1))          # "epoch   1  loss 0.9000  train_accuracy 0.7100 ..."
    history.write_csv("out/history.csv")
    history.plot("out/history.png")   # matplotlib (the `plot` extra); False without it

`History.read_csv` reads a history back (the demo's `--resume` continues one). The CSV holds
numbers only; reading it parses floats and ints, nothing else.
"""
from __future__ import annotations

import csv
import math
import os
import tempfile

MAX_ROWS = 10_000_000


class History:
    """Rows of per-epoch metrics: `epoch` (an int) first, then the named metrics (floats)."""

    def __init__(self, metrics):
        metrics = list(metrics)
        for m in metrics:
            if not isinstance(m, str) or not m.replace("_", "").isalnum() or m == "epoch":
                raise ValueError(f"History: metric names are words (letters, digits, _), not "
                                 f"'epoch', got {m!r}")
        self.metrics = metrics
        self.rows: list[dict] = []

    @property
    def columns(self) -> list:
        return ["epoch"] + self.metrics

    def add(self, epoch: int, **values) -> dict:
        """Append one epoch's metrics (missing ones are NaN; unknown names are an error)."""
        unknown = set(values) - set(self.metrics)
        if unknown:
            raise ValueError(f"History.add: unknown metrics {sorted(unknown)} (known: "
                             f"{self.metrics})")
        row = {"epoch": int(epoch)}
        row.update({m: float(values.get(m, math.nan)) for m in self.metrics})
        self.rows.append(row)
        return row

    def column(self, name: str) -> list:
        return [r[name] for r in self.rows]

    def line(self, index: int = -1, total: int | None = None) -> str:
        """One row as a log line: `epoch  3/40  loss 0.4012  test_accuracy 0.9417 ...`."""
        r = self.rows[index]
        width = len(str(total)) if total else 3
        head = f"epoch {r['epoch']:>{width}}" + (f"/{total}" if total else "")
        parts = [head] + [f"{m} {_fmt(r[m])}" for m in self.metrics]
        return "  ".join(parts)

    # --- files ----------------------------------------------------------------------------
    def write_csv(self, path) -> str:
        """The whole history as CSV (a header, then a row per epoch), written atomically."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".history-", dir=folder)
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(self.columns)
                for r in self.rows:
                    w.writerow([r["epoch"]] + [repr(r[m]) for m in self.metrics])
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return path

    @classmethod
    def read_csv(cls, path) -> "History":
        """A history written by write_csv. ValueError for anything else."""
        with open(os.fspath(path), newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            try:
                header = next(reader)
            except StopIteration:
                raise ValueError(f"{path}: empty history file") from None
            if not header or header[0] != "epoch":
                raise ValueError(f"{path}: not a history file (its first column is not 'epoch')")
            hist = cls(header[1:])
            for i, row in enumerate(reader):
                if i >= MAX_ROWS:
                    raise ValueError(f"{path}: more than {MAX_ROWS} rows")
                if len(row) != len(header):
                    raise ValueError(f"{path}: row {i + 2} has {len(row)} fields, the header "
                                     f"{len(header)}")
                try:
                    hist.add(int(row[0]), **{m: float(v) for m, v in zip(header[1:], row[1:])})
                except ValueError:
                    raise ValueError(f"{path}: row {i + 2} is not numbers") from None
        return hist

    def truncate(self, last_epoch: int) -> None:
        """Drop the rows after `last_epoch` (a resumed run redoes them)."""
        self.rows = [r for r in self.rows if r["epoch"] <= last_epoch]

    def plot(self, path, title: str | None = None) -> bool:
        """A PNG of the loss (left) and the accuracies (right) per epoch; False when matplotlib
        (the `plot` extra) is not installed. Uses matplotlib's non-interactive Agg canvas
        directly, so pyplot's global state and backend stay untouched."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg   # optional: plot extra
            from matplotlib.figure import Figure                          # optional: as above
        except ImportError:
            return False
        epochs = self.column("epoch")
        losses = [m for m in self.metrics if "loss" in m]
        accs = [m for m in self.metrics if "acc" in m]
        others = [m for m in self.metrics if m not in losses and m not in accs and
                  m not in ("seconds", "learning_rate")]
        fig = Figure(figsize=(10, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(1, 2)
        for m in losses + others:
            ax1.plot(epochs, self.column(m), marker=".", label=m)
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("loss")
        ax1.set_title("loss per epoch")
        for m in accs:
            ax2.plot(epochs, self.column(m), marker=".", label=m)
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("accuracy")
        ax2.set_title("accuracy per epoch")
        for ax in (ax1, ax2):
            ax.grid(True, alpha=0.3)
            if ax.lines:
                ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(os.fspath(path), format="png")
        return True


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "-"
    if abs(x) >= 1000 or (x != 0 and abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.4f}"
