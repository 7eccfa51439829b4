"""input_data.py's parts: Kaggle's files and real photos as the 96x96 faces every tool uses.

    kaggle_format  the frame (96 px), the 15 keypoints in Kaggle's column order, left/right pairs,
                   the scaling the network sees, DataError
    files          finding Kaggle's files in a folder (.csv, .zip, Kaggle's bundle), the size
                   limit, unzipping, a file's sha256
    kaggle_csv     reading Kaggle-format CSVs (pixels and keypoint numbers, strictly), test.csv,
                   IdLookupTable.csv; writing them
    photos         any photo file as 8-bit gray, and Frame: the square that becomes the 96x96 crop
    landmarks68    68-point labelled photos -> Kaggle's keypoints and frame (convert-68)

Lower modules never import higher ones, and none imports input_data.py, which re-exports their
public names (`input_data.load`, `input_data.Frame`, ...) and holds the command line.
"""
