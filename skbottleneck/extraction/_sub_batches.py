"""TensorFlow's CNN stage, whole batches or sub-batches: whichever is faster here.

On a CPU, TensorFlow runs each operation of a batch on its intra-op
threads, and many of a CNN's operations (MobileNetV2's depthwise
convolutions, the convolutions of small late feature maps) are too small to
keep every core busy. Cut into sub-batches inside one graph, a batch becomes
independent branches, and TensorFlow's inter-op threads run them side by
side: the cores stay busy with no change to TensorFlow's thread settings
(which a library cannot make: they are fixed when TensorFlow starts).
``benchmarks/bench_tf_threads.py`` measures both, interleaved, on this
2-core machine.

Which is faster depends on the CPU, its cores and the model, so
:class:`SchemeChooser` measures it where it runs. Once a runner has run
:data:`WARMUP_IMAGES` images whole (a short run never pays for tracing a
second graph), its next calls alternate between the schemes (the first
call of each traces its graph and is not timed); once each has
:data:`TRIAL_CALLS` timed calls, the scheme of lower median time per image
is kept for the rest of the process (runners are built once per process and
model). Batches of fewer than :data:`MIN_ROWS` images run whole and are not
timed.

The features agree to float32 rounding (a relative 1.4e-7 of the largest
feature measured, the same as changing the batch size does on this CPU;
see the guarantees page), so the choice is not part of the fingerprint and
both schemes share cache entries. With a GPU, batches run whole: large
batches are what a GPU wants.
"""

import statistics
import threading
import time

__all__ = ["MIN_ROWS", "SUB_BATCHES", "SchemeChooser", "TRIAL_CALLS", "WARMUP_IMAGES",
           "split_graph"]

#: Sub-batches a batch is cut into (4 of 8 images each, for a batch of 32).
SUB_BATCHES = 4
#: Timed calls of each scheme before the faster is kept.
TRIAL_CALLS = 3
#: Batches smaller than this run whole and are not timed.
MIN_ROWS = 2 * SUB_BATCHES
#: Images run whole before the schemes are measured (8 batches of 32).
WARMUP_IMAGES = 256

WHOLE = "whole batches"
SPLIT = f"{SUB_BATCHES} sub-batches"


def split_graph(tf, call, k=SUB_BATCHES):
    """``call`` applied to ``k`` consecutive slices of the batch, in one graph.

    A batch of fewer than ``k`` rows runs whole: slicing it would hand the
    CNN empty sub-batches, which some CPU kernels refuse (oneDNN's
    convolution on Intel CPUs raises "input depth must be evenly divisible
    by filter depth"). ``tf.cond`` runs only the branch taken, so no empty
    tensor ever reaches a convolution.
    """

    def split(images):
        n = tf.shape(images)[0]

        def in_parts():
            return tf.concat([call(images[n * i // k:n * (i + 1) // k]) for i in range(k)],
                             axis=0)

        return tf.cond(n >= k, in_parts, lambda: call(images))

    return split


class SchemeChooser:
    """Run batches through the fastest of several equivalent compiled functions.

    Parameters
    ----------
    schemes : dict
        Name -> function of a uint8 batch returning a tensor, all computing
        the same features; the first is the one small batches use.
    warmup_images : int, default=WARMUP_IMAGES
        Images run through the first scheme before the measuring starts.

    Attributes
    ----------
    chosen : str or None
        The scheme kept, None while still measuring.
    timings : dict
        Name -> seconds per image of its timed calls.
    """

    def __init__(self, schemes, warmup_images=WARMUP_IMAGES):
        self.schemes = dict(schemes)
        self.warmup_images = warmup_images
        self._seen_images = 0
        self._first = next(iter(self.schemes))
        self.chosen = self._first if len(self.schemes) == 1 else None
        self.timings = {name: [] for name in self.schemes}
        self._traced = set()
        self._lock = threading.Lock()

    def __call__(self, images):
        """Features of a uint8 batch, as a numpy array."""
        name, timed = self._pick(len(images))
        start = time.perf_counter()
        features = self.schemes[name](images).numpy()
        if timed:
            self._record(name, (time.perf_counter() - start) / len(images))
        return features

    def _pick(self, n):
        with self._lock:
            if self.chosen is not None:
                return self.chosen, False
            warm = self._seen_images >= self.warmup_images
            self._seen_images += n
            if n < MIN_ROWS or not warm:
                name = self._first
            else:  # the scheme with the fewest calls so far, untimed tracing included
                name = min(self.schemes, key=lambda s: len(self.timings[s]) + (s in self._traced))
            timed = warm and name in self._traced and n >= MIN_ROWS  # interleaved only
            self._traced.add(name)
            return name, timed

    def _record(self, name, seconds_per_image):
        with self._lock:
            if self.chosen is not None:
                return
            self.timings[name].append(seconds_per_image)
            if all(len(t) >= TRIAL_CALLS for t in self.timings.values()):
                self.chosen = min(self.schemes, key=lambda s: statistics.median(self.timings[s]))

    def info(self):
        """What a run's stats record: the scheme kept (or ``"measuring"``) and the
        median milliseconds per image measured for each."""
        return {"tf_scheme": self.chosen or "measuring",
                "tf_scheme_ms_per_image": {
                    name: round(1000 * statistics.median(t), 3)
                    for name, t in self.timings.items() if t}}
