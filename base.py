"""Mini-batches the way TensorFlow's old MNIST tutorial served them.

    train = DataSet(X, Y, seed=0)
    for step in range(1000):
        batch_x, batch_y = train.next_batch(64)

Each epoch visits every sample exactly once in a fresh random order; a batch that crosses the
end of an epoch takes the rest of the old epoch and the start of the next.
"""
from typing import NamedTuple

import numpy as np


class DataSet:
    def __init__(self, X, Y=None, seed=None, shuffle=True):
        X = np.asarray(X)
        if Y is not None and len(Y) != len(X):
            raise ValueError(f"X has {len(X)} samples but Y has {len(Y)}")
        if len(X) == 0:
            raise ValueError("a DataSet needs at least one sample")
        self.X, self.Y = X, (None if Y is None else np.asarray(Y))
        self.shuffle = shuffle
        self.epochs_completed = 0
        self._rng = np.random.default_rng(seed)
        self._order = self._new_order()
        self._position = 0

    @property
    def num_examples(self):
        return len(self.X)

    def _new_order(self):
        n = self.num_examples
        return self._rng.permutation(n) if self.shuffle else np.arange(n)

    def next_batch(self, batch_size):
        """(X, Y) for the next batch_size samples (Y is None for unlabelled data)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        taken = []
        while batch_size > 0:
            if self._position == self.num_examples:
                self.epochs_completed += 1
                self._order, self._position = self._new_order(), 0
            step = min(batch_size, self.num_examples - self._position)
            taken.append(self._order[self._position:self._position + step])
            self._position += step
            batch_size -= step
        index = np.concatenate(taken)
        return self.X[index], (None if self.Y is None else self.Y[index])


class DataSets(NamedTuple):
    train: DataSet
    validation: DataSet
    test: DataSet


def split(X, Y, validation_size=0.1, seed=0):
    """Random train/validation split of arrays; validation_size is a fraction or a count."""
    n = len(X)
    n_val = int(round(validation_size * n)) if validation_size < 1 else int(validation_size)
    if not 0 < n_val < n:
        raise ValueError(f"validation_size {validation_size} leaves no train or no validation data "
                         f"out of {n} samples")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    return (X[train], Y[train]), (X[val], Y[val])


def read_data_sets(train_path, test_path=None, validation_size=0.1, seed=0, complete_only=True):
    """Kaggle CSVs -> DataSets(train, validation, test) like tf's old mnist.read_data_sets."""
    import input_data
    X, Y = input_data.load(train_path, complete_only=complete_only)
    (X_train, Y_train), (X_val, Y_val) = split(X, Y, validation_size, seed)
    test = None
    if test_path is not None:
        test = DataSet(input_data.load_test(test_path)[1], shuffle=False)
    return DataSets(DataSet(X_train, Y_train, seed=seed), DataSet(X_val, Y_val, shuffle=False), test)
