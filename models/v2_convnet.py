"""v2_convnet: Daniel Nouri's net2, three small convolutions before two dense layers.

Architecture: image 96x96x1 -> conv1 32@3x3 relu -> pool1 2x2 -> conv2 64@2x2 relu -> pool2 2x2 -> conv3 128@2x2 relu -> pool3 2x2 -> flatten 15488 -> fc1 500 relu -> fc2 500 relu -> out 30
Parameters: 8051502

Where it comes from: net2 of Nouri's tutorial ("Using convolutional neural nets to detect
facial keypoints", 2014, Lasagne/nolearn). The convolutions are 'valid', as Lasagne's were,
so the maps shrink 96 -> 94 -> 47 -> 46 -> 23 -> 22 -> 11 and fc1 sees 11 x 11 x 128 = 15,488
inputs; fc1 holds 96% of the parameters. Nouri trains this same net as net2 (constant
learning rate), net3 (+ flipped faces), net4 (+ learning rate and momentum schedules) and
net5 (both); the settings below are net5's.
"""
from pathlib import Path

import keras
from keras import layers

from models import check_options

NAME = Path(__file__).stem

# Default training settings (read by the training engine). From Nouri's net4/net5:
SETTINGS = {
    "optimizer": "nesterov",       # nesterov_momentum throughout the tutorial
    "learning_rate": 0.03,         # net4: AdjustVariable('update_learning_rate',
    "final_learning_rate": 0.0001, #        start=0.03, stop=0.0001), a linspace over the epochs
    "momentum": 0.9,               # net4: AdjustVariable('update_momentum',
    "final_momentum": 0.999,       #        start=0.9, stop=0.999)
    "schedule": "linear",
    "batch_size": 128,             # BatchIterator(batch_size=128)
    "epochs": 400,                 # Nouri ran 1000-3000 on a GPU; the schedule makes 400 enough
                                   # (about 16 s per epoch on two CPU cores: under 2 hours)
    "patience": 50,                # net5: EarlyStopping(patience=200) of 3000, scaled down
    "augment": "flip",             # net3/net5: FlipBatchIterator, half of each batch mirrored
}


def network(init="glorot_uniform", **options):
    """Nouri's net2, uncompiled. `init`: kernel initializer of every conv and dense layer."""
    check_options(NAME, options)

    # Building network
    image = keras.Input((96, 96, 1), name="image")
    net = layers.Conv2D(32, 3, activation="relu", kernel_initializer=init, name="conv1")(image)
    net = layers.MaxPooling2D(2, name="pool1")(net)
    net = layers.Conv2D(64, 2, activation="relu", kernel_initializer=init, name="conv2")(net)
    net = layers.MaxPooling2D(2, name="pool2")(net)
    net = layers.Conv2D(128, 2, activation="relu", kernel_initializer=init, name="conv3")(net)
    net = layers.MaxPooling2D(2, name="pool3")(net)
    net = layers.Flatten(name="flatten")(net)
    net = layers.Dense(500, activation="relu", kernel_initializer=init, name="fc1")(net)
    net = layers.Dense(500, activation="relu", kernel_initializer=init, name="fc2")(net)
    out = layers.Dense(30, kernel_initializer=init, name="out")(net)
    return keras.Model(image, out, name=NAME)


if __name__ == "__main__":      # python -m models.v2_convnet
    network().summary()
