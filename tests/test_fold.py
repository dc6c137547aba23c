"""Batch normalisation folded into convolutions: same function, fewer passes."""

import numpy as np
import pytest

from skbottleneck import CNNFeatureTransformer
from skbottleneck.extraction._fold import fold_batch_norm

keras = pytest.importorskip("keras")
layers = keras.layers


def _randomise_bn(model, seed=0):
    """Non-trivial statistics, so that a wrong fold changes the output."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            for w in layer.weights:
                name = w.path.rsplit("/", 1)[-1]
                shape = tuple(w.shape)
                if name == "moving_variance":
                    w.assign(rng.uniform(0.2, 3.0, shape).astype("float32"))
                elif name == "gamma":
                    w.assign(rng.uniform(-2.0, 2.0, shape).astype("float32"))
                else:  # beta, moving_mean
                    w.assign(rng.normal(0, 1.0, shape).astype("float32"))


def _zoo_model():
    """Every case the fold must take or leave alone, in one functional model."""
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((16, 16, 4))
    # folded: Conv2D without bias, BN with both gamma and beta
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv_nobias")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU()(x)
    # folded: Conv2D with bias and groups, BN without gamma (scale=False)
    x = layers.Conv2D(8, 3, padding="same", groups=2, name="conv_groups")(x)
    x = layers.BatchNormalization(scale=False, epsilon=1e-5, name="bn2")(x)
    # folded: depthwise with a multiplier, BN without beta (center=False)
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    x = layers.BatchNormalization(center=False, name="bn3")(x)
    # folded: separable
    x = layers.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(x)
    x = layers.BatchNormalization(name="bn4")(x)
    # not folded: the convolution has an activation before the BN
    x = layers.Conv2D(6, 1, activation="relu", name="conv_relu")(x)
    x = layers.BatchNormalization(name="bn5")(x)
    # not folded: the convolution's output is also read by the residual add
    y = layers.Conv2D(6, 1, name="conv_shared")(x)
    z = layers.BatchNormalization(name="bn6")(y)
    x = layers.Add()([y, z])
    # not folded: the BN reads a non-convolution
    x = layers.BatchNormalization(name="bn7")(x)
    # folded: the last pair, whose BN is the model's output
    x = layers.Conv2D(5, 3, strides=2, name="conv_last")(x)
    x = layers.BatchNormalization(name="bn8")(x)
    model = keras.Model(inputs, x, name="zoo")
    _randomise_bn(model)
    return model


def test_fold_matches_the_unfolded_model_on_every_layer_kind():
    model = _zoo_model()
    x = np.random.default_rng(1).normal(0, 1, (3, 16, 16, 4)).astype("float32")
    expected = model(x, training=False).numpy()
    folded, n = fold_batch_norm(model)
    assert n == 5  # bn1, bn2, bn3, bn4, bn8
    bns = {lay.name for lay in folded.layers if isinstance(lay, layers.BatchNormalization)}
    assert bns == {"bn5", "bn6", "bn7"}
    got = folded(x, training=False).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # the original model is untouched (its layers are shared, not modified)
    np.testing.assert_array_equal(model(x, training=False).numpy(), expected)


def test_a_model_without_batch_norm_is_returned_as_is():
    x = inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3)(x)
    model = keras.Model(inputs, x)
    assert fold_batch_norm(model) == (model, 0)


def test_a_subclassed_model_is_left_alone():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = layers.Conv2D(4, 3)
            self.bn = layers.BatchNormalization()

        def call(self, x):
            return self.bn(self.conv(x))

    net = Net()
    net(np.zeros((1, 8, 8, 3), "float32"))
    assert fold_batch_norm(net) == (net, 0)


def test_transformer_folds_resnet50_and_features_agree(photo_paths):
    """A real backbone: 53 folds, features equal to the unfolded CNN's to 1e-5."""
    from skbottleneck.extraction import CNNRunner
    from skbottleneck.images import load_image

    paths = photo_paths[0][:8]
    cnn = CNNFeatureTransformer("resnet50", weights=None, random_state=0, input_size=(32, 32),
                                cache_dir=None).fit()
    result = cnn.extract(paths)
    X = result.features
    assert result.stats["bn_folded"] == 53
    plain = CNNRunner(cnn, fold=False)
    assert plain.n_folded == 0
    expected = plain(np.stack([load_image(p, (32, 32)) for p in paths]))
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_folded_lite0_still_sees_a_cat(tmp_path):
    """Real ImageNet weights: the folded EfficientNet-Lite0 still classifies chelsea as a cat."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    from skbottleneck.backbones import EfficientNetLite0
    from skbottleneck.extraction import CNNRunner
    from skbottleneck.images import load_image

    path = tmp_path / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    full = EfficientNetLite0(include_top=True, weights="imagenet")  # preprocessing included
    cnn = CNNFeatureTransformer(full, pooling=None, cache_dir=None).fit()
    runner = CNNRunner(cnn)
    assert runner.n_folded == 49
    x = load_image(path, (224, 224))[None]
    probs_folded = runner(x)[0]
    probs = full(x.astype("float32"), training=False).numpy()[0]
    assert 281 <= int(np.argmax(probs_folded)) <= 285  # the ImageNet cat classes
    assert int(np.argmax(probs_folded)) == int(np.argmax(probs))
    np.testing.assert_allclose(probs_folded, probs, atol=1e-4)


def test_mixed_precision_runs_folded_and_restores_the_policy(photo_paths):
    """float16 compute (for GPUs; it also runs, slowly, on a CPU): close to float32."""
    paths = photo_paths[0][:4]
    kwargs = dict(weights=None, random_state=0, input_size=(32, 32), cache_dir=None)
    X32 = CNNFeatureTransformer("resnet50", **kwargs).fit().transform(paths)
    cnn16 = CNNFeatureTransformer("resnet50", mixed_precision=True, **kwargs).fit()
    result = cnn16.extract(paths)
    X16 = result.features
    assert result.stats["bn_folded"] == 53
    assert X16.dtype == np.float32 and np.isfinite(X16).all()
    assert keras.mixed_precision.global_policy().name == "float32"
    assert not np.array_equal(X16, X32)  # it did compute in float16
    np.testing.assert_allclose(X16, X32, rtol=0.05, atol=0.02 * np.abs(X32).max())
