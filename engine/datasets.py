"""Data sets generated in memory (nothing is downloaded)."""
from __future__ import annotations

import numpy as np


def get_spiral(train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The book's spiral (step 48): 3 classes x 100 points, shuffled.

    Returns x, float32 of shape (300, 2), and t, int64 labels 0-2 of shape
    (300,). The same points as the book's `dezero.datasets.get_spiral`
    (seed 1984 for train, 2020 for test), drawn from a private RandomState
    instead of reseeding numpy's global one.
    """
    rs = np.random.RandomState(1984 if train else 2020)
    num_data, num_class = 100, 3
    rate = np.arange(num_data) / num_data
    xs, ts = [], []
    for j in range(num_class):
        radius = rate
        theta = j * 4.0 + 4.0 * rate + rs.randn(num_data) * 0.2
        xs.append(np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1))
        ts.append(np.full(num_data, j))
    indices = rs.permutation(num_data * num_class)
    x = np.concatenate(xs).astype(np.float32)[indices]
    t = np.concatenate(ts).astype(np.int64)[indices]
    return x, t
