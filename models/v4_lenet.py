"""v4_lenet: a deeper LeNet-style stack, five conv + pool stages and a four-layer dense head.

Architecture: image 96x96x1 -> [conv 3x3 'same' relu -> pool 2x2] x5 (conv1 16, conv2 32, conv3 64, conv4 128, conv5 256; pool1..pool5) -> flatten 2304 -> fc1..fc4 500 relu -> out 30
Parameters: 2311350

Where it comes from: LeNet's pattern (LeCun et al. 1998: convolution, subsampling, repeat,
then fully connected layers), grown to five stages whose filters double 16 -> 256 while
'same' convolutions and 2x2 pools halve the map 96 -> 48 -> 24 -> 12 -> 6 -> 3; the same
shape as several facial-keypoint nets written for Udacity's CVND project. Compared with
v2, the pooling does the shrinking, so the flattened features are 3 x 3 x 256 = 2,304
instead of 15,488: fewer parameters (2.3 M against 8.1 M) for a deeper net.
"""
from pathlib import Path

import keras
from keras import layers

from models import check_options

NAME = Path(__file__).stem

# Default training settings (read by the training engine).
SETTINGS = {
    "optimizer": "adam",           # sdeck51's TensorFlow keypoint tutorial trains its ConvNet
    "learning_rate": 0.001,        #   with ADAM; 0.001 is Adam's (and TFLearn's) default
    "final_learning_rate": 0.00001,# sdeck51 found ADAM "jumping" at its default rate and
    "schedule": "cosine",          #   smooth at 1e-5: decay from one to the other
    "batch_size": 64,              # TFLearn's fit() default, used by the COS 429 notebook
    "epochs": 300,                 # about 9 s per epoch on two CPU cores: 45 minutes
    "patience": 50,
    "augment": "flip,rotate",      # sdeck51: horizontal reflection and rotation
}


def network(init="glorot_uniform", **options):
    """The five-stage LeNet-style net, uncompiled. `init`: every kernel's initializer."""
    check_options(NAME, options)

    # Building network
    image = keras.Input((96, 96, 1), name="image")
    net = image
    for stage, filters in enumerate([16, 32, 64, 128, 256], start=1):
        net = layers.Conv2D(filters, 3, padding="same", activation="relu",
                            kernel_initializer=init, name=f"conv{stage}")(net)
        net = layers.MaxPooling2D(2, name=f"pool{stage}")(net)
    net = layers.Flatten(name="flatten")(net)
    for k in range(1, 5):
        net = layers.Dense(500, activation="relu", kernel_initializer=init, name=f"fc{k}")(net)
    out = layers.Dense(30, kernel_initializer=init, name="out")(net)
    return keras.Model(image, out, name=NAME)


if __name__ == "__main__":      # python -m models.v4_lenet
    network().summary()
