"""Live logs of a training run: ``metrics.csv``, one row per evaluation, and TensorBoard event files.

:class:`MetricsLog` is what :meth:`pdviz.training.Trainer.run` writes when given ``log_dir`` (``pdviz train``
gives the run directory). Each row is written and closed when the evaluation ends, so a run that is killed
keeps every row it reached; the file is rebuilt from the History when a run starts or resumes, so the rows
of iterations after the last checkpoint of a killed run are not repeated.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pdviz.errors import InvalidArgumentError


def scalars(frame: dict[str, Any]) -> dict[str, Any] | None:
    """The scalar keys of an evaluation frame (``step``, ``log_likelihood``, ``mmd2``, ``lag``,
    ``grad_error``, ...; None where not measured), or None for a frame that is not an evaluation."""
    if "log_likelihood" not in frame:
        return None
    return {k: v for k, v in frame.items() if v is None or isinstance(v, (int, float))}


class MetricsLog:
    """``folder/metrics.csv`` (columns ``step`` and the scalar keys of the evaluation frames, in the order
    they first appear) and, with ``tensorboard``, scalars under ``folder/tensorboard`` for the frames of
    step >= ``since`` (needs the ``tensorboard`` package: ``pip install 'pdviz[tensorboard]'``)."""

    def __init__(self, folder: str | Path, frames: Iterable[dict], tensorboard: bool = False, since: int = 0):
        self.path, self.rows, self.fields, self.tb = Path(folder) / "metrics.csv", [], [], None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                msg = "tensorboard logs need the tensorboard package: pip install 'pdviz[tensorboard]'"
                raise InvalidArgumentError(msg) from None
            self.tb = SummaryWriter(str(Path(folder) / "tensorboard"))
        self.path.write_text("")
        for frame in frames:
            self.add(frame, tensorboard=frame["step"] >= since)

    def add(self, frame: dict[str, Any], tensorboard: bool = True) -> dict[str, Any] | None:
        """Append the frame's row if it is an evaluation (rewriting the file when it brings a new column);
        return the row."""
        row = scalars(frame)
        if row is None:
            return None
        self.rows.append(row)
        new = [k for k in row if k not in self.fields]
        self.fields += new
        with self.path.open("w" if new else "a", newline="") as f:
            writer = csv.DictWriter(f, self.fields, restval="")
            if new:
                writer.writeheader()
            writer.writerows(self.rows if new else [row])
        if self.tb is not None and tensorboard:
            for key, value in row.items():
                if key != "step" and value is not None:
                    self.tb.add_scalar(key, value, row["step"])
            self.tb.flush()
        return row

    def close(self) -> None:
        """Close the TensorBoard writer (the CSV is closed after each row)."""
        if self.tb is not None:
            self.tb.close()
