"""data.p: round trip as in the course card, and a malicious pickle that must not run."""
import pickle
import zipfile

import numpy as np
import pytest

import input_data
import serializer


def arrays():
    rng = np.random.default_rng(0)
    X = rng.random((4, 96, 96, 1), dtype=np.float32)
    Y = rng.random((4, 30), dtype=np.float32)
    return ((X, Y), (X[:2].copy(), None))


def assert_same(a, b):
    (X, Y), (X_test, none) = b
    np.testing.assert_array_equal(X, a[0][0])
    np.testing.assert_array_equal(Y, a[0][1])
    np.testing.assert_array_equal(X_test, a[1][0])
    assert none is None


def test_round_trip_plain_pickle_and_zip(tmp_path):
    data = arrays()
    written = serializer.save(data, tmp_path / "data.p")
    assert written == [tmp_path / "data.p", tmp_path / "data.p.zip"]
    with open(tmp_path / "data.p", "rb") as f:
        assert_same(data, pickle.load(f))          # what the course card does
    assert_same(data, serializer.load(tmp_path / "data.p"))
    assert_same(data, serializer.load(tmp_path / "data.p.zip"))
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_loads_any_protocol(protocol):
    data = arrays()
    assert_same(data, serializer.loads(pickle.dumps(data, protocol=protocol)))


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(((np.zeros(3), Exploit(marker)), (None, None)))
    (tmp_path / "evil.p").write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load (posix|os|nt).system"):
        serializer.load(tmp_path / "evil.p")
    with zipfile.ZipFile(tmp_path / "evil.p.zip", "w") as z:
        z.writestr("data.p", payload)
    with pytest.raises(pickle.UnpicklingError):
        serializer.load(tmp_path / "evil.p.zip")
    assert not marker.exists()


def test_object_arrays_and_other_types_are_refused():
    for bad in ([1, 2], {"X": np.zeros(2)}, np.array([1, "a"], dtype=object), "text"):
        with pytest.raises(pickle.UnpicklingError, match="only numeric numpy arrays"):
            serializer.loads(pickle.dumps((bad, None)))


def test_cli_writes_data_p_from_kaggle_files(tmp_path, capsys):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(6, 96, 96), dtype=np.uint8)
    keypoints = rng.uniform(20, 70, size=(6, 30)).astype(np.float32)
    keypoints[0, 5] = np.nan
    input_data.write_csv(tmp_path / "training.csv", images, keypoints)
    input_data.write_csv(tmp_path / "test.csv", images[:3], image_ids=[1, 2, 3])
    serializer.main(["--data", str(tmp_path), "--out", str(tmp_path / "data.p")])
    (X, Y), (X_test, none) = serializer.load(tmp_path / "data.p")
    assert X.shape == (5, 96, 96, 1) and Y.shape == (5, 30) and X_test.shape == (3, 96, 96, 1)
    assert none is None
    serializer.main(["--data", str(tmp_path), "--out", str(tmp_path / "all.p"), "--all-rows", "--no-zip"])
    (X, Y), _ = serializer.load(tmp_path / "all.p")
    assert len(X) == 6 and np.isnan(Y).sum() == 1
    assert not (tmp_path / "all.p.zip").exists()
    assert "wrote" in capsys.readouterr().out
