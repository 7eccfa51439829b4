"""predict.py's parts: from a photo file to faces with keypoints, and the files written.

    options     Options (a run's choices, carried into worker processes), the defaults, the statuses
    images      reading a photo (PhotoError), writing a picture, shrunk and turned copies (View)
    inputs      PATH arguments -> Items: photos and videos in folders, globs; the sample photos
    detection   the face detector (OpenCV cascades), its calibrated maps to the Kaggle frame
                (detector_calibration.json beside it), turned copies searched for faces
    calibration fitting detector_calibration.json (the command: calibrate_detector.py)
    runtime     the network: ONNX (onnxruntime) or Keras predictors, crops -> keypoints, confidence
    keypoints   one photo's faces: crop, predict, map back, refine; retries and turned faces
    outputs     the CSV, overlays, contact sheets and their file names
    photos      a group of photos start to end -> PhotoResult (what each worker of a folder run does)
    video       videos and the camera: per-frame keypoints, tracking, One Euro smoothing

Lower modules never import higher ones, and none imports predict.py (docs/architecture.md).
"""
import os

# FFmpeg (inside OpenCV) prints its own lines for a damaged video ("moov atom not found") before
# our one-line reason in the CSV; quiet unless the user sets it (read when cv2 is first imported).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
