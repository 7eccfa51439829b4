"""predict.py on a photo turned in its plane: are the keypoints found, and where do they land?

    python bench/predict_rotation.py [PHOTO ...] [--turns 30,45,90,180] [--model PATH]

Each photo (default: ../shared/data/photos/face_recognition_examples/obama.jpg) is turned
counter-clockwise by each angle (the canvas grows to hold it, the corners repeat the photo's
edge; quarter turns move whole pixels), predict.py finds the faces of the turned copy, and the keypoints of its
largest face are compared with the upright photo's, turned the same way: the mean and largest
distance in pixels, beside the upright inter-ocular distance. The roll predict.py reports
should be the turn (to within a few degrees).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402

import cli  # noqa: E402
import input_data  # noqa: E402
import predict  # noqa: E402

DEFAULT_PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / \
    "face_recognition_examples" / "obama.jpg"


def turned(gray, turn):
    """(the photo turned counter-clockwise by `turn` degrees on a larger canvas, the 2x3 matrix
    from upright to turned pixels): predict.py's own turn (upright_view turns clockwise)."""
    view = predict.upright_view(gray, -turn)
    return view.image, view.matrix


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", nargs="*", default=[str(DEFAULT_PHOTO)], help="photos with one upright face")
    parser.add_argument("--turns", default="30,45,90,180,-90,-135",
                        help="comma list of degrees, counter-clockwise")
    parser.add_argument("--model", default=None, help="a .keras or .onnx keypoint model (default: the shipped one)")
    args = parser.parse_args(argv)
    try:
        turns = [float(t) for t in args.turns.split(",") if t.strip()]
    except ValueError:
        raise cli.UsageError(f"--turns: got {args.turns!r}; must be a comma list of degrees") from None
    if not turns or not all(np.isfinite(turns)):
        raise cli.UsageError(f"--turns: got {args.turns!r}; must be a comma list of degrees")
    model = predict.load_model(args.model)
    print(f"{'photo':<24}{'turn':>7}{'found':>7}{'roll':>8}{'mean px':>9}{'max px':>8}{'eyes px':>9}")
    for photo in args.photos:
        gray = input_data.read_gray(photo)
        upright = predict.find_and_predict(gray, model)
        if not upright:
            print(f"{Path(photo).name[:23]:<24} no upright face: skipped")
            continue
        truth = upright[0].keypoints
        iod = np.linalg.norm(truth[0] - truth[1])
        for turn in turns:
            image, matrix = turned(gray, turn)
            faces = predict.find_and_predict(image, model)
            if not faces:
                print(f"{Path(photo).name[:23]:<24}{turn:7.0f}{'no':>7}")
                continue
            expected = truth @ matrix[:, :2].T + matrix[:, 2]
            distance = np.linalg.norm(faces[0].keypoints - expected, axis=1)
            print(f"{Path(photo).name[:23]:<24}{turn:7.0f}{len(faces):7d}{faces[0].roll:8.1f}"
                  f"{distance.mean():9.2f}{distance.max():8.2f}{iod:9.1f}")


if __name__ == "__main__":
    cli.run(main)
