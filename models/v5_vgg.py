"""v5_vgg: a small VGG, three blocks of two 3x3 convolutions, then two dense layers with dropout.

Architecture: image 96x96x1 -> conv1_1, conv1_2 64@3x3 -> pool1 -> conv2_1, conv2_2 128@3x3 -> pool2 -> conv3_1, conv3_2 256@3x3 -> pool3 -> flatten 36864 -> fc1 512 relu -> drop1 0.5 -> fc2 512 relu -> drop2 0.5 -> out 30 (convs 'same' relu, pools 2x2)
Parameters: 20297182

Where it comes from: VGG (Simonyan & Zisserman, "Very deep convolutional networks for
large-scale image recognition", 2014): stacks of 3x3 'same' convolutions, two per block
(two 3x3 layers see 5x5 with fewer weights and one more ReLU), filters doubling as 2x2
pools halve the map, and a dense head regularised with dropout 0.5. Here three blocks
instead of five for 96x96 faces (96 -> 48 -> 24 -> 12) and 512-wide dense layers instead of
4096. fc1 sees 12 x 12 x 256 = 36,864 features and holds 93% of the parameters, while the
convolutions hold nearly all the computation (1.4 billion multiply-adds per face, 30 times v2):
the slowest version to train on a CPU.
"""
from pathlib import Path

import keras
from keras import layers

from models import check_options

NAME = Path(__file__).stem

# Default training settings (read by the training engine).
SETTINGS = {
    "optimizer": "adam",           # as v4 (sdeck51's ConvNet; Adam's default rate 0.001)
    "learning_rate": 0.001,
    "final_learning_rate": 0.00001,# cosine decay to sdeck51's smooth 1e-5
    "schedule": "cosine",
    "batch_size": 64,              # TFLearn's fit() default, as in the COS 429 notebook
    "epochs": 100,                 # about 3.5 minutes per epoch on two CPU cores: 6 hours
                                   # for all 100; a GPU makes it minutes
    "patience": 20,
    "augment": "flip,rotate,shift,scale,light",  # the big net needs the most varied faces
}


def network(init="glorot_uniform", **options):
    """The small VGG, uncompiled. `init`: kernel initializer of every conv and dense layer."""
    check_options(NAME, options)

    # Building network
    image = keras.Input((96, 96, 1), name="image")
    net = image
    for block, filters in enumerate([64, 128, 256], start=1):
        for k in (1, 2):
            net = layers.Conv2D(filters, 3, padding="same", activation="relu",
                                kernel_initializer=init, name=f"conv{block}_{k}")(net)
        net = layers.MaxPooling2D(2, name=f"pool{block}")(net)
    net = layers.Flatten(name="flatten")(net)
    net = layers.Dense(512, activation="relu", kernel_initializer=init, name="fc1")(net)
    net = layers.Dropout(0.5, name="drop1")(net)
    net = layers.Dense(512, activation="relu", kernel_initializer=init, name="fc2")(net)
    net = layers.Dropout(0.5, name="drop2")(net)
    out = layers.Dense(30, kernel_initializer=init, name="out")(net)
    return keras.Model(image, out, name=NAME)


if __name__ == "__main__":      # python -m models.v5_vgg
    network().summary()
