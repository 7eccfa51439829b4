"""DataSet.next_batch: shuffled, every sample exactly once per epoch, seedable."""
import numpy as np
import pytest

from base import DataSet, split


def stream(dataset, batch_size, batches):
    xs, ys = zip(*(dataset.next_batch(batch_size) for _ in range(batches)))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("batch_size", [1, 3, 10, 25])
def test_every_sample_once_per_epoch(batch_size):
    n = 10
    X = np.arange(n)
    dataset = DataSet(X, X * 10, seed=0)
    epochs = 5
    xs, ys = stream(dataset, batch_size, epochs * n // batch_size)
    np.testing.assert_array_equal(ys, xs * 10)                 # X and Y stay paired
    usable = len(xs) // n * n
    for epoch in xs[:usable].reshape(-1, n):
        assert sorted(epoch) == list(range(n))                 # each epoch: a permutation
    assert len({tuple(e) for e in xs[:usable].reshape(-1, n)}) > 1  # and a fresh one
    assert dataset.epochs_completed == (len(xs) - 1) // n


def test_seed_makes_it_repeatable():
    X = np.arange(50)
    a = stream(DataSet(X, X, seed=3), 7, 20)[0]
    b = stream(DataSet(X, X, seed=3), 7, 20)[0]
    c = stream(DataSet(X, X, seed=4), 7, 20)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unlabelled_and_bad_arguments():
    x, y = DataSet(np.arange(4), shuffle=False).next_batch(3)
    np.testing.assert_array_equal(x, [0, 1, 2])
    assert y is None
    with pytest.raises(ValueError, match="X has 3 samples but Y has 2"):
        DataSet(np.arange(3), np.arange(2))
    with pytest.raises(ValueError, match="batch_size"):
        DataSet(np.arange(3)).next_batch(0)


def test_split_is_disjoint_and_complete():
    X = np.arange(100)
    (xt, yt), (xv, yv) = split(X, X, validation_size=0.1, seed=0)
    assert len(xv) == 10 and len(xt) == 90
    assert sorted(np.concatenate([xt, xv])) == list(range(100))
