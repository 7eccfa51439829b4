"""synthetic_faces.py's parts: drawn faces labelled with keypoints that follow Kaggle's statistics.

    keypoints  Kaggle's keypoint statistics as numbers, sampling keypoints from them, the labels
               Kaggle left empty; fitting the statistics again (--fit-stats)
    people     Traits: one person's looks, the same in every image of that person
    drawing    the drawing tools and the parts of a face, painted on its keypoints (render_face)

Lower modules never import higher ones, and none imports synthetic_faces.py, which re-exports
their public names (`synthetic_faces.sample_keypoints`, `synthetic_faces.render_face`, ...) and
makes the data sets and the command line.
"""
