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

# Default training settings (read by the training engine). Nouri's own recipe (net4/net5:
# Nesterov momentum, learning rate 0.03 -> 0.0001 and momentum 0.9 -> 0.999 linearly, over
# 1000-3000 GPU epochs) needs hundreds of epochs before it leaves the mean face: on the real
# faces, 17 epochs of it (4 CPU minutes) stayed at the mean shape's 4.6 px, where Adam was at
# 2.6 px after 6. So the default is Adam with a cosine decay; the recipe is one line away:
#   python train.py --model v2_convnet --optimizer nesterov --learning-rate 0.03 \
#       --final-learning-rate 0.0001 --momentum 0.9 --final-momentum 0.999 --schedule linear --epochs 1000
SETTINGS = {
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "final_learning_rate": 1e-5,
    "schedule": "cosine",
    "batch_size": 128,             # Nouri's BatchIterator(batch_size=128)
    "epochs": 100,                 # about 8 s per epoch on two CPU cores
    "patience": 30,
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
