"""Classic U-Net (zhixuhao/unet layout) for Keras 3, channels-last (NHWC).

Shared by make_fixtures.py and unet_step_time.py.

Layout (F = start filters, default 64 in the original repo):

    down level i (i = 0..3, f = F * 2**i):
        [Conv2D(f, 3, same) (+ BN) + ReLU] x2  -> skip_i
        (Dropout(0.5) on the last skip, as in the original)
        MaxPooling2D(2)
    bottleneck (f = 16 F):
        [Conv2D(f, 3, same) (+ BN) + ReLU] x2, Dropout(0.5)
    up level i (i = 3..0, f = F * 2**i):
        UpSampling2D(2, nearest) -> Conv2D(f, 2, same) + ReLU
          (or, with transpose=True: Conv2DTranspose(f, 2, strides=2) (+ BN) + ReLU)
        Concatenate([skip_i, up], axis=-1)
        [Conv2D(f, 3, same) (+ BN) + ReLU] x2
    head:
        Conv2D(2 * classes, 3, same) + ReLU
        Conv2D(classes, 1) + sigmoid (classes == 1) or softmax (classes > 1)

Dropout is inactive at inference time. Kernel init is he_normal as in the
original repo.
"""

import keras
from keras import layers


def _conv_block(x, filters, batchnorm, bn_momentum, name):
    for j in (1, 2):
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            kernel_initializer="he_normal",
            activation=None if batchnorm else "relu",
            name=f"{name}_conv{j}",
        )(x)
        if batchnorm:
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn{j}")(x)
            x = layers.Activation("relu", name=f"{name}_relu{j}")(x)
    return x


def build_unet(
    input_shape=(None, None, 1),
    filters=64,
    classes=1,
    batchnorm=False,
    transpose=False,
    dropout=0.5,
    bn_momentum=0.99,
    batch_size=None,
    name="unet",
):
    inputs = keras.Input(shape=input_shape, batch_size=batch_size, name="input")
    x = inputs
    skips = []
    for i in range(4):
        f = filters * 2**i
        x = _conv_block(x, f, batchnorm, bn_momentum, f"down{i}")
        if i == 3 and dropout:
            x = layers.Dropout(dropout, name=f"down{i}_drop")(x)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{i}_pool")(x)

    x = _conv_block(x, filters * 16, batchnorm, bn_momentum, "bottleneck")
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_drop")(x)

    for i in reversed(range(4)):
        f = filters * 2**i
        if transpose:
            x = layers.Conv2DTranspose(
                f,
                2,
                strides=2,
                padding="same",
                kernel_initializer="he_normal",
                activation=None if batchnorm else "relu",
                name=f"up{i}_tconv",
            )(x)
            if batchnorm:
                x = layers.BatchNormalization(momentum=bn_momentum, name=f"up{i}_tbn")(x)
                x = layers.Activation("relu", name=f"up{i}_trelu")(x)
        else:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}_upsample")(x)
            x = layers.Conv2D(
                f,
                2,
                padding="same",
                kernel_initializer="he_normal",
                activation=None if batchnorm else "relu",
                name=f"up{i}_conv2x2",
            )(x)
            if batchnorm:
                x = layers.BatchNormalization(momentum=bn_momentum, name=f"up{i}_ubn")(x)
                x = layers.Activation("relu", name=f"up{i}_urelu")(x)
        x = layers.Concatenate(axis=-1, name=f"up{i}_concat")([skips[i], x])
        x = _conv_block(x, f, batchnorm, bn_momentum, f"up{i}")

    x = layers.Conv2D(
        2 * classes,
        3,
        padding="same",
        kernel_initializer="he_normal",
        activation=None if batchnorm else "relu",
        name="head_conv3x3",
    )(x)
    if batchnorm:
        x = layers.BatchNormalization(momentum=bn_momentum, name="head_bn")(x)
        x = layers.Activation("relu", name="head_relu")(x)
    outputs = layers.Conv2D(
        classes,
        1,
        activation="sigmoid" if classes == 1 else "softmax",
        name="head_out",
    )(x)
    return keras.Model(inputs, outputs, name=name)
