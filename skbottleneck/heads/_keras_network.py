"""The network of :class:`~skbottleneck.KerasMLPClassifier`: layers, optimizer, training step.

TensorFlow is imported (through :mod:`skbottleneck._keras`) only when a
network is built.
"""

import numbers

import numpy as np

from .._keras import import_keras, import_tf

__all__ = ["ACTIVATIONS", "OPTIMIZERS", "build_network", "hidden_sizes"]

ACTIVATIONS = {"relu", "tanh", "sigmoid", "elu", "selu", "gelu", "silu", "swish", "linear"}
OPTIMIZERS = {"adam", "adamw", "nadam", "rmsprop", "sgd", "adagrad"}


def hidden_sizes(hidden_layer_sizes):
    """Normalise ``hidden_layer_sizes`` to a tuple of positive ints.

    Examples
    --------
    >>> hidden_sizes(64), hidden_sizes([32, 16]), hidden_sizes(())
    ((64,), (32, 16), ())
    """
    sizes = hidden_layer_sizes
    if isinstance(sizes, numbers.Integral):
        sizes = (sizes,)
    sizes = tuple(sizes)
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0
               for s in sizes):
        raise ValueError(
            "hidden_layer_sizes must be a sequence of positive ints (one per hidden "
            f"layer; () for none). Got {hidden_layer_sizes!r} instead."
        )
    return tuple(int(s) for s in sizes)


def build_network(n_features, n_classes, seed, *, hidden_layer_sizes, activation, dropout,
                  optimizer, learning_rate):
    """A softmax MLP, its built optimizer and its compiled training step.

    Parameters
    ----------
    n_features, n_classes : int
        Width of the input and of the output.
    seed : int
        Seeds every initialiser and dropout layer (through a ``SeedSequence``).
    hidden_layer_sizes, activation, dropout, optimizer, learning_rate
        As the parameters of :class:`~skbottleneck.KerasMLPClassifier`.

    Returns
    -------
    model : keras.Sequential
        Its output is the class probabilities.
    optimizer : keras.optimizers.Optimizer
        Built on the model's trainable variables.
    train_chunk : tf.function
        ``train_chunk(x, y, w, batch_size)``: mini-batch steps over one
        chunk (``x`` float32, ``y`` int32 class positions, ``w`` float32
        weights); returns the sum of the batch losses times their rows, and
        the number of rows predicted right.
    """
    keras = import_keras()
    tf = import_tf()
    sizes = hidden_sizes(hidden_layer_sizes)
    seeds = np.random.SeedSequence(seed).generate_state(2 * len(sizes) + 1)
    layers = [keras.Input(shape=(n_features,))]
    for i, units in enumerate(sizes):
        layers.append(keras.layers.Dense(
            units, activation=activation, name=f"hidden_{i}",
            kernel_initializer=keras.initializers.GlorotUniform(seed=int(seeds[2 * i])),
        ))
        if dropout > 0:
            layers.append(keras.layers.Dropout(
                dropout, seed=int(seeds[2 * i + 1]), name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(
        n_classes, activation="softmax", name="output",
        kernel_initializer=keras.initializers.GlorotUniform(seed=int(seeds[-1])),
    ))
    model = keras.Sequential(layers, name="mlp_head")
    optimizer = keras.optimizers.get(
        {"class_name": optimizer, "config": {"learning_rate": float(learning_rate)}}
    )
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    apply_gradients = _fused_adam(tf, optimizer, model) if _is_plain_adam(keras, optimizer) else (
        lambda grads: optimizer.apply_gradients(zip(grads, model.trainable_variables)))

    def train_chunk(x, y, w, batch_size):
        """Mini-batch steps over one chunk; returns (sum of losses, correct).

        The loss of a batch is ``sum(w * loss) / len(batch)``, as Keras
        weighs samples (weights of 1 give the plain mean).
        """
        n = tf.shape(x)[0]
        total_loss = tf.constant(0.0)
        correct = tf.constant(0.0)
        for start in tf.range(0, n, batch_size):
            xb = x[start:start + batch_size]
            yb = y[start:start + batch_size]
            wb = w[start:start + batch_size]
            with tf.GradientTape() as tape:
                proba = model(xb, training=True)
                loss = loss_fn(yb, proba, sample_weight=wb)
            grads = tape.gradient(loss, model.trainable_variables)
            apply_gradients(grads)
            rows = tf.cast(tf.shape(xb)[0], tf.float32)
            total_loss += loss * rows
            hits = tf.equal(tf.argmax(proba, axis=1, output_type=tf.int32), yb)
            correct += tf.reduce_sum(tf.cast(hits, tf.float32))
        return total_loss, correct

    train_chunk = tf.function(
        train_chunk,
        input_signature=[
            tf.TensorSpec((None, n_features), tf.float32),
            tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((None,), tf.float32),
            tf.TensorSpec((), tf.int32),
        ],
        jit_compile=False,  # XLA compiles slowly and runs slower on CPU
    )
    return model, optimizer, train_chunk


def _is_plain_adam(keras, optimizer):
    """Adam as ``build_network`` makes it: no weight decay, clipping, EMA or AMSGrad,
    with the slot variables where Keras 3 keeps them (else Keras' own update runs)."""
    return (type(optimizer) is keras.optimizers.Adam and not optimizer.amsgrad
            and all(hasattr(optimizer, a) for a in ("_momentums", "_velocities",
                                                    "_get_variable_index"))
            and optimizer.weight_decay is None and not optimizer.use_ema
            and optimizer.clipnorm is None and optimizer.clipvalue is None
            and optimizer.global_clipnorm is None
            and optimizer.gradient_accumulation_steps is None)


def _fused_adam(tf, optimizer, model):
    """Apply Adam with TensorFlow's fused ``ResourceApplyAdam``, on the optimizer's variables.

    The same update as ``optimizer.apply_gradients`` (Keras' Adam: ``m``,
    ``v``, bias-corrected step size, epsilon added to ``sqrt(v)``), up to
    rounding, written in place by one kernel per variable: Keras' version
    makes several temporaries the size of each weight (100 MiB apiece for
    the 100,352 x 256 kernel of a head on un-pooled ResNet50 features).
    The moments and the iteration count stay the optimizer's own
    variables, so pickling and ``partial_fit`` see them as before.
    """
    variables = model.trainable_variables
    slots = [(optimizer._momentums[optimizer._get_variable_index(v)],
              optimizer._velocities[optimizer._get_variable_index(v)]) for v in variables]
    beta_1, beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
    epsilon = float(optimizer.epsilon)

    def apply_gradients(grads):
        lr = tf.cast(optimizer.learning_rate, tf.float32)
        step = tf.cast(optimizer.iterations + 1, tf.float32)
        b1, b2 = tf.constant(beta_1), tf.constant(beta_2)
        b1_power, b2_power = tf.pow(b1, step), tf.pow(b2, step)
        for var, (m, v), grad in zip(variables, slots, grads):
            tf.raw_ops.ResourceApplyAdam(
                var=var.value.handle, m=m.value.handle, v=v.value.handle,
                beta1_power=b1_power, beta2_power=b2_power, lr=lr, beta1=b1, beta2=b2,
                epsilon=tf.constant(epsilon), grad=grad)
        optimizer.iterations.assign_add(1)

    return apply_gradients
