"""v3_convnet_dropout: Nouri's net6 (and, with dense_units=1000, net7): net2 with dropout.

Architecture: image 96x96x1 -> conv1 32@3x3 relu -> pool1 2x2 -> drop1 0.1 -> conv2 64@2x2 relu -> pool2 2x2 -> drop2 0.2 -> conv3 128@2x2 relu -> pool3 2x2 -> drop3 0.3 -> flatten 15488 -> fc1 500 relu -> drop4 0.5 -> fc2 500 relu -> out 30
Parameters: 8051502

Where it comes from: net6 of Nouri's tutorial ("Using convolutional neural nets to detect
facial keypoints", 2014): v2_convnet with dropout of 0.1, 0.2 and 0.3 after the three pools
and 0.5 after the first dense layer, none after the second. Dropout stops net2 from
overfitting, which then leaves it too small, so net7 doubles the dense layers to 1000 units
(dense_units=1000: 16,561,502 parameters). The weighted layers have v2's names and, at 500
units, v2's shapes, so a trained v2 can start a v3.

Options: dense_units (default 500 = net6; 1000 = net7).
"""
from pathlib import Path

import keras
from keras import layers

from models import check_options, v2_convnet

NAME = Path(__file__).stem

# Default training settings (read by the training engine): v2_convnet's (Adam with a cosine
# decay; see there for Nouri's Nesterov recipe), for longer, since dropout nets learn slower.
SETTINGS = {**v2_convnet.SETTINGS, "epochs": 150, "patience": 50}


def network(init="glorot_uniform", **options):
    """Nouri's net6 (net7 with dense_units=1000), uncompiled. `init`: every kernel's initializer."""
    dense_units = check_options(NAME, options, dense_units=500)["dense_units"]

    # Building network
    image = keras.Input((96, 96, 1), name="image")
    net = layers.Conv2D(32, 3, activation="relu", kernel_initializer=init, name="conv1")(image)
    net = layers.MaxPooling2D(2, name="pool1")(net)
    net = layers.Dropout(0.1, name="drop1")(net)
    net = layers.Conv2D(64, 2, activation="relu", kernel_initializer=init, name="conv2")(net)
    net = layers.MaxPooling2D(2, name="pool2")(net)
    net = layers.Dropout(0.2, name="drop2")(net)
    net = layers.Conv2D(128, 2, activation="relu", kernel_initializer=init, name="conv3")(net)
    net = layers.MaxPooling2D(2, name="pool3")(net)
    net = layers.Dropout(0.3, name="drop3")(net)
    net = layers.Flatten(name="flatten")(net)
    net = layers.Dense(dense_units, activation="relu", kernel_initializer=init, name="fc1")(net)
    net = layers.Dropout(0.5, name="drop4")(net)
    net = layers.Dense(dense_units, activation="relu", kernel_initializer=init, name="fc2")(net)
    out = layers.Dense(30, kernel_initializer=init, name="out")(net)
    return keras.Model(image, out, name=NAME)


if __name__ == "__main__":      # python -m models.v3_convnet_dropout
    network().summary()
