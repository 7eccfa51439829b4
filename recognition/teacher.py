"""A teacher for the embedding: dlib's ResNet face encoder (128-D, trained on about 3 million
faces of 7,485 people), whose vectors the shipped embedding learns to imitate beside its own
ArcFace loss (knowledge distillation: embedding.train_embedder's `distill`). 200 people are
too few to learn what makes faces differ; the teacher's vectors carry what it learnt from
thousands. Only training needs it, never recognize.py:

    pip install -r requirements-teacher.txt     # dlib-bin (a prebuilt dlib) and its models

The teacher finds its own five landmarks inside the face's box and crops its own 150x150
chip, as dlib's face_recognition pipeline does; the student sees the project's aligned crop.
"""
import numpy as np

from recognition.faces import RecognitionError

INSTALL = "pip install -r requirements-teacher.txt"


class DlibTeacher:
    """dlib's encoder: vectors(photos, boxes) -> (n, 128) unit vectors."""
    dim = 128

    def __init__(self):
        try:
            import dlib
            import face_recognition_models as models
        except ImportError as error:
            raise RecognitionError(f"the dlib teacher is not installed ({error.name}): {INSTALL}") from None
        self._landmarks = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self._encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        self._rectangle = dlib.rectangle

    def vectors(self, photos, boxes, progress=None):
        """photos: uint8 gray (H, W) arrays; boxes: (x0, y0, x1, y1) of each face in its photo
        (e.g. the bounding box of its 68 landmarks). -> float32 (n, 128), unit length."""
        out = np.empty((len(photos), self.dim), np.float32)
        for i, (gray, box) in enumerate(zip(photos, boxes)):
            rgb = np.ascontiguousarray(np.repeat(np.asarray(gray, np.uint8)[:, :, None], 3, axis=2))
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            shape = self._landmarks(rgb, self._rectangle(x0, y0, x1, y1))
            out[i] = np.asarray(self._encoder.compute_face_descriptor(rgb, shape), np.float32)
            if progress:
                progress(i + 1)
        return out / np.linalg.norm(out, axis=1, keepdims=True)
