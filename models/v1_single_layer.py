"""v1_single_layer: one hidden layer, the baseline every later version must beat.

Architecture: image 96x96x1 -> flatten 9216 -> fc1 100 relu -> out 30
Parameters: 924730

Where it comes from: Daniel Nouri's net1 ("Using convolutional neural nets to detect facial
keypoints", 2014: 9216 -> 100 rectifier units -> 30, trained with Nesterov momentum), the
same net in navoshta's TensorFlow port of that tutorial, and the `v1_single_layer.py` of the
COS 429 project in TFLearn (Cristian42/FacialKeypointsDetection), which used 50 hidden units.
Every pixel feeds every hidden unit, so 99.7% of the weights sit in fc1 (9216 x units).

Options: units (default 100 as in Nouri's net1; 50 as in COS 429; 500 or 1000 to see that
width alone does not buy what convolutions do).
"""
from pathlib import Path

import keras
from keras import layers

from models import check_options

NAME = Path(__file__).stem

# Default training settings (read by the training engine). From Nouri's net1:
SETTINGS = {
    "optimizer": "nesterov",     # net1: update=nesterov_momentum
    "learning_rate": 0.01,       # net1: update_learning_rate=0.01, kept constant
    "momentum": 0.9,             # net1: update_momentum=0.9, kept constant too (the engine's
    "final_momentum": None,      #   default raises it to 0.999, Nouri's net4 schedule)
    "schedule": "constant",
    "batch_size": 128,           # nolearn's BatchIterator(batch_size=128)
    "epochs": 400,               # net1: max_epochs=400 (a few minutes on a CPU)
    "patience": 50,              # early stopping (Nouri added it from net5 on, patience=200
                                 # for 3000 epochs); at 400 epochs net1 is still improving
    "augment": "none",           # net1 sees the faces as they are; flips start at net3 (v2)
}
# The COS 429 TFLearn notebook trained its single layer (50 units) differently:
#   SGD(learning_rate=0.7, lr_decay=0.96, decay_step=2400), batch_size=64, n_epoch=100, i.e.
#   {"optimizer": "sgd", "learning_rate": 0.7, "schedule": "exponential", "lr_decay": 0.96,
#    "decay_step": 2400, "batch_size": 64, "epochs": 100} with network(units=50).
# With Keras's Glorot initialisation that rate kills the ReLUs within a few epochs: on the
# synthetic faces the net then predicts the mean face (validation RMSE stuck at 3.11 px, the
# mean face's own error), while net1's settings keep improving (3.23 px at epoch 100 and
# falling). About 0.3 s per epoch on two CPU cores.


def network(init="glorot_uniform", **options):
    """The single-hidden-layer net, uncompiled. `init`: kernel initializer of fc1 and out."""
    units = check_options(NAME, options, units=100)["units"]

    # Building network
    image = keras.Input((96, 96, 1), name="image")
    net = layers.Flatten(name="flatten")(image)
    net = layers.Dense(units, activation="relu", kernel_initializer=init, name="fc1")(net)
    out = layers.Dense(30, kernel_initializer=init, name="out")(net)
    return keras.Model(image, out, name=NAME)


if __name__ == "__main__":      # python -m models.v1_single_layer
    network().summary()
