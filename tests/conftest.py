"""Shared test settings: headless matplotlib, one torch thread per worker, deterministic seeds."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PDVIZ_FAST", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def gen():
    """A fresh seeded generator per test."""
    return torch.Generator().manual_seed(1234)
