"""Draw docs/demo.png: the shipped model's keypoints on the two public-domain demo photos.

    python docs/demo_figure.py [--out docs/demo.png] [--model PATH]

The photos are the ones `python predict.py` uses when faces/ is empty (scikit-image's
astronaut, Eileen Collins, NASA; matplotlib's grace_hopper, US Navy; both public domain).
Each photo is shown in colour with the square that became the network's 96x96 input (green)
and the 15 keypoints (red), and beside it that 96x96 input, enlarged, with the same keypoints.
It uses predict.py's own functions (read_photo, predict_keypoints), so the figure shows what
the command does.
"""
import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import cli  # noqa: E402

PANEL = 300          # height of a photo panel and side of an enlarged crop, in pixels
GAP = 8


def draw_points(draw, points, radius):
    for x, y in points:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(230, 30, 30),
                     outline=(255, 255, 255))


def panels(path, model):
    """The photo panel and the enlarged-crop panel of one demo photo (PIL images)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageOps

    import predict
    faces = predict.predict_keypoints(predict.read_photo(path), model=model)
    if not faces:
        raise cli.InputError(f"{path}: no face found by predict.py")
    face = faces[0]
    photo = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    scale = PANEL / photo.height
    photo = photo.resize((round(photo.width * scale), PANEL), Image.LANCZOS)
    draw = ImageDraw.Draw(photo)
    x0, y0 = face.frame.corner * scale
    side = face.frame.side * scale
    draw.rectangle([x0, y0, x0 + side, y0 + side], outline=(0, 200, 0), width=2)
    draw_points(draw, np.asarray(face.keypoints) * scale, 2.5)

    enlarge = PANEL / 96
    crop = Image.fromarray(face.crop).convert("RGB").resize((PANEL, PANEL), Image.NEAREST)
    draw_points(ImageDraw.Draw(crop), (face.frame.to_frame(face.keypoints) + 0.5) * enlarge - 0.5, 3.5)
    return photo, crop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(HERE / "demo.png"), help="the PNG to write (default docs/demo.png)")
    parser.add_argument("--model", default=None, help="a .keras model (default: the shipped one)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    cli.writable_folder(out.parent)

    from PIL import Image

    import predict
    with tempfile.TemporaryDirectory() as tmp:
        photos = predict.write_demo_photos(tmp)
        if not photos:
            raise cli.InputError("no demo photos: needs matplotlib's grace_hopper.jpg or scikit-image")
        parts = [p for photo in sorted(photos) for p in panels(photo, args.model)]
    width = sum(p.width for p in parts) + GAP * (len(parts) - 1)
    figure = Image.new("RGB", (width, PANEL), (255, 255, 255))
    x = 0
    for part in parts:
        figure.paste(part, (x, 0))
        x += part.width + GAP
    figure.save(out, optimize=True)
    print(f"wrote {out} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    cli.run(main)
