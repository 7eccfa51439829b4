"""RMSE of a trained model on a Kaggle-format CSV, per keypoint and overall, in pixels.

    python evaluate.py --model models/v2_convnet/model.keras --data data/faces.csv [--flip-tta]
    python evaluate.py --specialists models/specialists/<run> --data data/faces.csv

The last line is always `RMSE <value> px`: over every present keypoint value, in the
96-pixel frame (Kaggle's score). --flip-tta averages each prediction with the un-mirrored
prediction of the mirrored face.
"""
import argparse
import sys

import numpy as np

import input_data


def load_predictor(model=None, specialists=None):
    """A model.keras, or the combined specialists of a folder: either way, `.predict(X)`."""
    if specialists is not None:
        import specialists as specialists_module
        return specialists_module.load(specialists)
    import train
    return train.load_model(model)


def predict(predictor, X, flip_tta=False, batch_size=256):
    """(N, 30) unit coordinates; flip_tta averages with the un-mirrored mirrored prediction."""
    if flip_tta:
        import augment
        return augment.predict_with_flip(predictor, X, batch_size=batch_size)
    return np.asarray(predictor.predict(X, batch_size=batch_size, verbose=0), np.float32)


def evaluate(model, X, Y, flip_tta=False, batch_size=256):
    """(overall RMSE px, per-column RMSE px (30,), predictions (N, 30) unit coords)."""
    import train
    predicted = predict(model, X, flip_tta, batch_size)
    return float(train.rmse_px(Y, predicted)), train.rmse_px(Y, predicted, axis=0), predicted


def report(per_column, Y):
    """Per-keypoint table: RMSE of x, y, and both, with how many faces have the keypoint."""
    lines = [f"{'keypoint':<26}{'faces':>7}{'x':>8}{'y':>8}{'both':>8}"]
    present = (~np.isnan(Y)).sum(axis=0)
    for k, name in enumerate(input_data.KEYPOINT_NAMES):
        x, y = per_column[2 * k], per_column[2 * k + 1]
        both = np.sqrt((x ** 2 * present[2 * k] + y ** 2 * present[2 * k + 1])
                       / max(present[2 * k] + present[2 * k + 1], 1))
        lines.append(f"{name:<26}{present[2 * k]:>7}{x:>8.3f}{y:>8.3f}{both:>8.3f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a model.keras written by train.py")
    which.add_argument("--specialists", help="a folder written by specialists.py")
    parser.add_argument("--data", required=True, help="Kaggle-format CSV (.csv/.zip) or data.p")
    parser.add_argument("--flip-tta", action="store_true", help="average with the mirrored face's prediction")
    args = parser.parse_args(argv)
    import train
    try:
        X, Y, _ = train.load_arrays(args.data, all_rows=True)
    except input_data.DataError as error:
        sys.exit(f"error: {error}")
    model = load_predictor(args.model, args.specialists)
    overall, per_column, _ = evaluate(model, X, Y, flip_tta=args.flip_tta)
    print(f"{args.model or args.specialists} on {args.data}: {len(X)} faces"
          f"{' (flip TTA)' if args.flip_tta else ''}")
    print(report(per_column, Y))
    print(f"RMSE {overall:.4f} px")


if __name__ == "__main__":
    main()
