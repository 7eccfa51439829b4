"""data.p: round trip as in the course card, and a malicious pickle that must not run."""
import pickle
import zipfile

import numpy as np
import pytest

import cli
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
        with pytest.raises(pickle.UnpicklingError, match="only (numeric numpy|plain numeric or bool) arrays"):
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


class DeclaresBigArray:
    """A pickle of ~120 bytes that asks numpy for a 7 GB array (issue 15, class 5)."""

    def __reduce__(self):
        return (np._core.multiarray._reconstruct, (np.ndarray, (7_000_000_000,), b"b"))


class LiesAboutItsShape:
    """A real array's state with a shape far larger than the bytes it carries."""

    def __reduce__(self):
        array = np.zeros(4, np.float32)
        reduced = list(array.__reduce__())
        version, shape, dtype, fortran, data = reduced[2]
        reduced[2] = (version, (10**6,), dtype, fortran, data)
        return tuple(reduced)


class CallsNdarray:
    """REDUCE numpy.ndarray((7e9,), 'b'): the constructor itself would allocate 7 GB."""

    def __reduce__(self):
        return (np.ndarray, ((7_000_000_000,), "b"))


# NEWOBJ: ndarray.__new__(ndarray, (7e9,)), the protocol-2 spelling of the same, by hand.
NEWOBJ_NDARRAY = (b"\x80\x02cnumpy\nndarray\n" + pickle.dumps(((7_000_000_000,),), protocol=2)[2:-1]
                  + pickle.NEWOBJ + pickle.STOP)


@pytest.mark.parametrize("value, message", [
    (CallsNdarray(), "refusing to call numpy.ndarray directly"),
    (NEWOBJ_NDARRAY, "not a readable pickle of arrays"),
    (np.zeros(2, dtype=[("x", "f4"), ("o", "O")]), "dtype"),              # object inside a field
    (np.zeros(2, dtype=[("x", "f4"), ("y", "f4")]), "dtype"),             # fields at all
    (np.zeros(2, dtype=("f4", (3,))), "float32"),                         # subarray dtype -> shape (2,3): fine
    (np.array(["a", "b"]), "dtype <U1"),                                  # strings are not numbers
    (DeclaresBigArray(), "6.5 GB, above the 1 GB limit"),
    (LiesAboutItsShape(), "declares shape"),
])
def test_hostile_arrays_are_refused_before_allocating(tmp_path, value, message):
    payload = value if isinstance(value, bytes) else pickle.dumps((value, None), protocol=2)
    if message == "float32":   # numpy folds a subarray dtype into the shape when it pickles
        (array, _) = serializer.loads(payload)
        assert array.shape == (2, 3) and array.dtype == np.float32
        return
    (tmp_path / "data.p").write_bytes(payload)
    with pytest.raises(serializer.RefusedPickle, match=message) as error:
        serializer.load(tmp_path / "data.p")
    assert "data.p" in str(error.value) and "\n" not in str(error.value)
    assert isinstance(error.value, cli.InputError)   # exit 1 through cli.run
    assert len(payload) < 400


@pytest.mark.parametrize("payload", [b"", b"\x80\x04garbage", b"not a pickle at all", pickle.dumps(1)[:-1]])
def test_broken_pickles_are_one_refusal(tmp_path, payload):
    (tmp_path / "data.p").write_bytes(payload)
    with pytest.raises(serializer.RefusedPickle, match="data.p"):
        serializer.load(tmp_path / "data.p")


def test_returned_arrays_are_plain_ndarrays():
    (X, Y), (X_test, _) = serializer.loads(pickle.dumps(arrays(), protocol=2))
    assert type(X) is np.ndarray and type(X_test) is np.ndarray


def test_cache_is_keyed_by_content_not_mtime(tmp_path):
    """A replaced CSV whose copy kept an older mtime must not be served from the stale cache."""
    import os
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(3, 96, 96), dtype=np.uint8)
    keypoints = rng.uniform(20, 70, size=(3, 30)).astype(np.float32)
    path = input_data.write_csv(tmp_path / "training.csv", images, keypoints)
    first, _ = serializer.cached_keypoints(path)
    assert (tmp_path / "training.csv.cache.p").is_file()
    np.testing.assert_array_equal(first, images)
    old = os.stat(path).st_mtime_ns
    input_data.write_csv(path, images[::-1].copy(), keypoints)     # same size, other content
    os.utime(path, ns=(old - 10**10, old - 10**10))               # ... and an older mtime
    second, _ = serializer.cached_keypoints(path)
    np.testing.assert_array_equal(second, images[::-1])
    (tmp_path / "training.csv.cache.p").write_bytes(b"garbage")   # a damaged cache is rebuilt
    third, _ = serializer.cached_keypoints(path)
    np.testing.assert_array_equal(third, images[::-1])


def test_cli_refuses_bad_settings_before_work(tmp_path):
    with pytest.raises(cli.UsageError, match=r"--out: got '.*data.csv'; must be a .p file"):
        serializer.main(["--data", str(tmp_path), "--out", str(tmp_path / "data.csv")])
    with pytest.raises(input_data.DataError, match="--train .*no such file"):
        serializer.main(["--train", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x.p")])
    assert list(tmp_path.iterdir()) == []
