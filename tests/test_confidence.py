"""The confidence bar travels with the model: chosen when train.py ends (confidence.py), kept in
model.json and the ONNX metadata, read by predict.py, the benchmarks and the web page."""
import json
from pathlib import Path

import numpy as np
import pytest

import confidence
import input_data
import predict
import synthetic_faces
from prediction import runtime

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "v6_resnet_integral" / "model.keras"


def test_the_bar_is_over_the_no_face_crops_and_the_least_sure_held_out_faces():
    rng = np.random.default_rng(0)
    no_face = {"a": rng.uniform(0.05, 0.15, 500), "b": rng.uniform(0.05, 0.17, 172)}
    pooled = np.percentile(np.concatenate(list(no_face.values())), confidence.NO_FACE_PERCENTILE)
    crops_bar = round(confidence.MARGIN * pooled, 2)
    faces = rng.uniform(0.25, 0.45, 300)
    # Held-out faces: a face less sure than 99% of them is `low`, however far the crops are.
    bar = confidence.choose_bar(faces, no_face)
    assert bar["low_confidence"] == round(np.percentile(faces, 1), 2) > crops_bar
    assert bar["set_by"] == "held-out faces" and bar["separates"] and 0.98 <= bar["faces_over_bar"] <= 1
    assert "1st percentile of the held-out faces" in confidence.bar_line(bar)
    # Training faces (a model that held none out) say nothing of new faces: the crops set it.
    fitted = confidence.choose_bar(faces, no_face, held_out=False)
    assert fitted["low_confidence"] == crops_bar and fitted["set_by"] == "no-face crops"
    assert fitted["no_face"]["p99"] == round(pooled, 3) and fitted["no_face"]["b"] == round(no_face["b"].max(), 3)
    assert "does not tell" not in confidence.bar_line(fitted)
    # Faces no surer than the crops without one: the bar stays where the crops put it, and says so.
    muddled = confidence.choose_bar(rng.uniform(0.05, 0.2, 300), no_face)
    assert muddled["low_confidence"] == crops_bar and not muddled["separates"]
    assert "does not tell faces from crops without one" in confidence.bar_line(muddled)
    # Always a usable bar, even for scores at the ends of the scale.
    assert confidence.is_bar(confidence.choose_bar(faces, {"a": np.ones(10)})["low_confidence"])
    assert confidence.is_bar(confidence.choose_bar(np.zeros(5), {"a": np.zeros(10)})["low_confidence"])
    assert confidence.is_bar(confidence.choose_bar(np.ones(5), {"a": np.zeros(10)})["low_confidence"])


def test_no_face_crops_are_deterministic_96px_crops_of_every_kind():
    faces, _ = synthetic_faces.make_faces(20, seed=3)
    crops = confidence.no_face_crops(faces, n=8, seed=1)
    assert set(crops) == {"noise and flat grey", "smooth blobs", "shuffled 12-px tiles", "shuffled 24-px tiles",
                          "face corners", "upside down", "sideways"}
    for kind, batch in crops.items():
        assert batch.dtype == np.uint8 and batch.shape[1:] == (96, 96) and len(batch), kind
    again = confidence.no_face_crops(faces, n=8, seed=1)
    assert all(np.array_equal(crops[k], again[k]) for k in crops)
    # Shuffled tiles keep a face's pixels, not its layout.
    assert sorted(crops["shuffled 24-px tiles"][0].ravel()) in [sorted(f.ravel()) for f in faces.astype(np.uint8)]
    assert set(confidence.no_face_crops(np.zeros((0, 96, 96), np.uint8), n=8)) == {"noise and flat grey", "smooth blobs"}


def test_the_shipped_model_carries_its_bar_everywhere_predict_reads_it():
    info = json.loads((SHIPPED.parent / "model.json").read_text())
    assert info["low_confidence"] == predict.LOW_CONFIDENCE == 0.2 and info["confidence"]["separates"]
    shipped = predict.load_model()
    assert shipped.low_confidence == info["low_confidence"] == predict.bar_of(None)
    assert confidence.saved_bar(SHIPPED) == info["low_confidence"]
    assert predict.no_face_confidence(shipped) < shipped.low_confidence
    import web.build
    assert web.build.settings()["low_confidence"] == info["low_confidence"]


def test_a_given_bar_wins_over_the_models_and_a_model_without_one_gets_the_default():
    class Stand:                          # a Keras-like object: no heatmaps, maybe a bar
        def predict_on_batch(self, X):
            return np.zeros((len(X), 30), np.float32)
    assert predict.bar_of(Stand()) == predict.LOW_CONFIDENCE
    stand = Stand()
    stand.low_confidence = 0.55
    assert predict.bar_of(stand) == 0.55 and predict.bar_of(stand, 0.3) == 0.3
    assert predict.bar_of(None, 0.35) == 0.35


@pytest.mark.platform
def test_a_trained_v6_records_its_bar_and_predict_uses_it(tmp_path, monkeypatch):
    """train.py -> model.json's low_confidence -> export.py's ONNX metadata -> predict.py's bar
    (a .keras converted on first use; model.json's bar is part of the cached copy's key)."""
    import export
    import train
    images, keypoints = synthetic_faces.make_faces(400, seed=2)
    data = input_data.write_csv(tmp_path / "faces.csv", images, keypoints)
    run = train.train(model="v6_resnet_integral", data=str(data), epochs=1, root=str(tmp_path), verbose=0,
                      run_id="v6", model_options={"width": 8}, batch_size=32)
    info = json.loads((run.model_path.parent / "model.json").read_text())
    bar = run.confidence_bar
    assert confidence.is_bar(info["low_confidence"]) and info["low_confidence"] == bar["low_confidence"]
    assert set(info["confidence"]) == {"set_by", "faces_held_out", "faces", "no_face", "faces_over_bar", "separates"}
    path, _ = export.export_predictor(run.model_path, tmp_path / "v6.onnx")
    assert runtime.OnnxPredictor(path).low_confidence == info["low_confidence"]

    monkeypatch.setattr(runtime, "CACHE_DIR", tmp_path / "cache")
    runtime._cache.clear()
    assert predict.bar_of(str(run.model_path)) == info["low_confidence"]
    info["low_confidence"] = 0.77                      # a bar chosen again: a new converted copy
    (run.model_path.parent / "model.json").write_text(json.dumps(info))
    runtime._cache.clear()
    assert predict.bar_of(str(run.model_path)) == 0.77
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 2
    runtime._cache.clear()


@pytest.mark.parametrize("value", ["0.5x", -0.1, 1.5, 0, True, [0.3]])
def test_a_broken_bar_in_model_json_is_one_line_naming_the_file(tmp_path, value):
    import cli
    (tmp_path / "model.json").write_text(json.dumps({"mirror_axis_px": 48.8, "low_confidence": value}))
    with pytest.raises(cli.InputError, match=r"model\.json: field 'low_confidence' is .*; expected a number between 0 and 1"):
        confidence.saved_bar(tmp_path / "model.keras")
    (tmp_path / "model.json").write_text('{"low_confidence": NaN}')
    with pytest.raises(cli.InputError, match="low_confidence"):
        confidence.saved_bar(tmp_path / "model.keras")
    for text in ('{"mirror_axis_px": 48.8}', '{"low_confidence": null}', "not json", "[1, 2]"):
        (tmp_path / "model.json").write_text(text)
        assert confidence.saved_bar(tmp_path / "model.keras") is None
    (tmp_path / "model.json").write_text('{"low_confidence": 0.42}')
    assert confidence.saved_bar(tmp_path / "model.keras") == 0.42
