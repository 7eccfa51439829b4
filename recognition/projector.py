"""The enrolled faces for TensorBoard's projector: `recognize.py enroll FOLDER --projector DIR`,
then `tensorboard --logdir DIR` and its Projector tab (PCA, t-SNE, UMAP of the vectors, each
shown as its face, coloured or searched by name).

    DIR/projector_config.pbtxt   which files are the tensor, its labels and its sprite
    DIR/vectors.tsv              one enrolled face's vector a line (tab-separated)
    DIR/metadata.tsv             name and photo of each (a header line, then one per vector)
    DIR/sprite.png               the aligned faces as one grid image, in the same order
"""
import csv
import io
from pathlib import Path

import numpy as np

import cli

FILES = ("projector_config.pbtxt", "vectors.tsv", "metadata.tsv", "sprite.png")
SPRITE_LIMIT = 8192        # the projector reads sprites up to 8192 x 8192 pixels


def sprite(faces):
    """uint8 (n, h, w) faces -> (grid image, thumbnail side): a square grid, row by row, the
    thumbnails shrunk so that the grid stays within SPRITE_LIMIT."""
    from PIL import Image
    faces = np.asarray(faces, np.uint8)
    columns = max(1, int(np.ceil(np.sqrt(len(faces)))))
    side = min(faces.shape[1], SPRITE_LIMIT // columns)
    grid = np.zeros((columns * side, columns * side), np.uint8)
    for k, face in enumerate(faces):
        small = np.asarray(Image.fromarray(face).resize((side, side), Image.Resampling.LANCZOS))
        row, column = divmod(k, columns)
        grid[row * side:(row + 1) * side, column * side:(column + 1) * side] = small
    return grid, side


def write_projector(folder, names, vectors, faces, photos):
    """The four FILES in folder (created; earlier ones replaced, all or none): vectors (n, dim),
    their names and photos, and faces uint8 (n, h, w) for the sprite. -> the config's path."""
    from PIL import Image
    from tensorboard.plugins import projector
    from google.protobuf import text_format
    if not (len(names) == len(vectors) == len(faces) == len(photos)) or not len(names):
        raise ValueError(f"{len(names)} names, {len(vectors)} vectors, {len(faces)} faces and "
                         f"{len(photos)} photos: one of each per enrolled face")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grid, side = sprite(faces)
    config = projector.ProjectorConfig()
    tensor = config.embeddings.add()
    tensor.tensor_name = "enrolled faces"
    tensor.tensor_path, tensor.metadata_path = "vectors.tsv", "metadata.tsv"
    tensor.tensor_shape.extend(np.shape(vectors))
    tensor.sprite.image_path = "sprite.png"
    tensor.sprite.single_image_dim.extend([side, side])

    def tsv(rows):
        text = io.StringIO()
        csv.writer(text, delimiter="\t", lineterminator="\n").writerows(rows)
        return text.getvalue()
    texts = {"vectors.tsv": tsv([[f"{v:.6g}" for v in row] for row in np.asarray(vectors, np.float32)]),
             # a tab or line break in a name would split its row: replaced by a space
             "metadata.tsv": tsv([["name", "photo"]] + [[" ".join(str(x).split()) for x in pair]
                                                        for pair in zip(names, photos)]),
             "projector_config.pbtxt": text_format.MessageToString(config)}
    writes = [(folder / name, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8", errors="backslashreplace"))
              for name, text in texts.items()]
    writes.append((folder / "sprite.png", lambda tmp: Image.fromarray(grid).save(tmp, format="png")))
    cli.write_all_atomically(writes)
    return folder / "projector_config.pbtxt"
