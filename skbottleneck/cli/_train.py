"""``skbottleneck train``: a classifier head on a feature store, saved as an image Pipeline.

``--head logreg`` picks its solver: the exact one (StandardScaler +
``LogisticRegression``, L-BFGS, on the training rows read into memory) when
they fit in the memory budget and nothing asks for the out-of-core loop
(``--epochs``, or a ``--param`` that only SGD has, such as ``alpha``);
otherwise SGD out of core, chunk by chunk (:func:`~skbottleneck.heads.build_head`).
"""

import inspect
import os
import sys
import time

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from .._keras import import_tf
from .._model_files import save_model
from ..extraction import transformer_from_store
from ..chunks import chunk_rows, parse_bytes
from ..heads import build_head
from ..store import StoreSubset
from ._files import check_writable_file, open_store, weights_arg
from ._output import EXIT_OK, CLIError, echo

__all__ = ["choose_solver", "cmd_train", "exact_logreg", "memory_budget"]

# transformer_from_store speaks of parameters; the command line of flags
_API_TO_FLAGS = (("pass weights=PATH", "give its path with --weights PATH"),
                 ("weights=PATH", "--weights PATH"),
                 ("random_state", "--random-state"))


def cmd_train(args):
    """Train on the store minus the held-out rows; print their accuracy; save the Pipeline."""
    out = check_writable_file(args.out, "model file")
    store = open_store(args.store)
    labels = store.labels
    if labels is None:
        raise CLIError(f"the feature store {args.store!r} holds no labels; extract it from a "
                       "class-per-subfolder folder or a file list with labels.")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise CLIError(f"the feature store {args.store!r} holds a single class ({classes[0]!r}); "
                       "a classifier needs at least two.")
    # Fails early, before training, when the store cannot be predicted from images.
    transformer = _transformer_from_store(store, weights_arg(args.weights) if args.weights else None)
    train_rows, val_rows = _split(labels, counts, args)
    solver, why = choose_solver(args, len(train_rows), store.n_features)
    try:
        head = (exact_logreg(args.param, random_state=args.random_state) if solver == "exact"
                else build_head(args.head, args.param, epochs=args.epochs,
                                chunk_size=args.chunk_size, random_state=args.random_state))
    except ValueError as e:
        raise CLIError(str(e)) from e
    t0 = time.perf_counter()
    import_tf(quiet=True)
    transformer.fit(store)  # builds the CNN once; raises if the store is of another model
    if not args.quiet:
        echo(f"training a {args.head} head on {len(train_rows)} rows x {store.n_features} features "
             f"({len(classes)} classes), {len(val_rows)} rows held out; solver: {why}",
             file=sys.stderr)
    data = StoreSubset(store, train_rows) if len(val_rows) else store
    if solver == "exact":
        head.fit(*data.read_rows(np.arange(len(data)), dtype=np.float32))
    else:
        head.fit(data, **_fit_kwargs(head, labels))
    fit_s = time.perf_counter() - t0
    val_accuracy = None
    if len(val_rows):
        correct = 0
        rows = chunk_rows(args.chunk_size, store.n_features * store.dtype.itemsize)
        for X_chunk, y_chunk in StoreSubset(store, val_rows).iter_chunks(rows, shuffle=False):
            correct += int(np.sum(np.asarray(head.predict(X_chunk)) == y_chunk))
        val_accuracy = correct / len(val_rows)
    # an exact head is [scale, head]: flattened, named_steps["head"] is the classifier
    steps = head.steps if isinstance(head, Pipeline) else [("head", head)]
    model = Pipeline([("features", transformer), *steps])
    fmt = save_model(model, out)
    if val_accuracy is not None:
        echo(f"validation accuracy: {val_accuracy:.4f} ({len(val_rows)} held-out rows)")
    kind = ("skops format: loading it runs no code" if fmt == "skops" else
            "a joblib pickle: loading it runs code, so load it only from a trusted source; "
            "name it .skops for a file that runs none")
    echo(f"trained in {fit_s:.1f} s; saved the model (CNN features + {args.head} head, {solver} "
         f"solver) to {out} "
         f"({kind})")
    return EXIT_OK


def _transformer_from_store(store, weights):
    try:
        return transformer_from_store(store, weights=weights)
    except ValueError as e:
        message = str(e)
        for api, flag in _API_TO_FLAGS:
            message = message.replace(api, flag)
        raise CLIError(message) from e


def _split(labels, counts, args):
    """``(train_rows, val_rows)``: a stratified hold-out of ``--val-fraction`` of the rows."""
    rows = np.arange(len(labels))
    if args.val_fraction == 0:
        return rows, rows[:0]
    stratify = labels if counts.min() >= 2 else None
    n_val = max(len(counts) if stratify is not None else 1,
                int(round(args.val_fraction * len(rows))))
    if n_val >= len(rows):
        raise CLIError(f"--val-fraction {args.val_fraction} leaves no rows to train on "
                       f"({len(rows)} rows in the store).")
    return train_test_split(rows, test_size=n_val, stratify=stratify,
                            random_state=args.random_state)


def _fit_kwargs(head, labels):
    try:
        signature = inspect.signature(head.fit)
    except (TypeError, ValueError):
        return {}
    if "classes" in signature.parameters:
        return {"classes": np.unique(labels)}
    return {}


#: Parameters of the exact logreg head (``LogisticRegression``) that ``--param`` may set.
EXACT_PARAMS = ("C", "class_weight", "max_iter", "tol")
#: Default ``C`` of the exact logreg head (``benchmarks/bench_head_defaults.py``).
EXACT_C = 0.1
#: Bytes of working memory per feature of a training row for the exact solver: the
#: float32 rows read, their standardised copy, and as much again for the solver.
EXACT_BYTES_PER_FEATURE = 4 + 4 + 8


def exact_logreg(params=(), *, random_state=0):
    """The exact logreg head: a ``Pipeline`` [StandardScaler, LogisticRegression(C=0.1)].

    Parameters
    ----------
    params : iterable of (str, object), default=()
        Parameters of the ``LogisticRegression``, among :data:`EXACT_PARAMS`.
    random_state : int, default=0
        Seed of the ``LogisticRegression`` (used by none of its L-BFGS fits;
        kept in the saved model).

    Returns
    -------
    head : sklearn.pipeline.Pipeline
        Not fitted; steps ``scale`` and ``head``.

    Raises
    ------
    ValueError
        A parameter it does not have, or a value it refuses.

    Examples
    --------
    >>> exact_logreg([("C", 1.0)]).named_steps["head"].C
    1.0
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    classifier = LogisticRegression(C=EXACT_C, max_iter=1000, random_state=random_state)
    settable = dict(params)
    unknown = sorted(set(settable) - set(EXACT_PARAMS))
    if unknown:
        raise ValueError(f"the exact logreg head has no parameter {unknown[0]!r}; its parameters "
                         f"are: {', '.join(EXACT_PARAMS)}.")
    try:
        classifier.set_params(**settable)
        classifier._validate_params()
    except ValueError as e:
        raise ValueError(f"invalid --param for the logreg head: {e}") from e
    return Pipeline([("scale", StandardScaler()), ("head", classifier)])


def choose_solver(args, n_rows, n_features):
    """``("exact" or "sgd", why)``: the solver of ``train``'s head, and a phrase that says why.

    ``"exact"`` for ``--head logreg`` when its training rows fit in the memory
    budget (``args.memory_budget``: a size such as ``"2GiB"``, or ``"auto"``,
    a quarter of the memory available now) and neither ``--epochs`` nor a
    ``--param`` that only the SGD head has asks for the out-of-core loop.

    Examples
    --------
    >>> from argparse import Namespace
    >>> args = Namespace(head="logreg", epochs=None, param=[], memory_budget="64MiB")
    >>> choose_solver(args, 2000, 1280)
    ('exact', 'exact (L-BFGS in memory: 39.1 MiB of a 64.0 MiB budget)')
    >>> choose_solver(Namespace(**{**vars(args), "memory_budget": "16MiB"}), 2000, 1280)[0]
    'sgd'
    >>> choose_solver(Namespace(**{**vars(args), "epochs": 5}), 2000, 1280)
    ('sgd', 'SGD out of core (--epochs given)')
    """
    if args.head != "logreg":
        return "sgd", "out of core"
    if args.epochs is not None:
        return "sgd", "SGD out of core (--epochs given)"
    sgd_only = [key for key, _ in args.param if key not in EXACT_PARAMS]
    if sgd_only:
        return "sgd", f"SGD out of core (--param {sgd_only[0]} is a parameter of SGD)"
    need = n_rows * n_features * EXACT_BYTES_PER_FEATURE
    budget = memory_budget(getattr(args, "memory_budget", "auto"))
    fits = f"{_size(need)} of a {_size(budget)} budget"
    if need <= budget:
        return "exact", f"exact (L-BFGS in memory: {fits})"
    return "sgd", f"SGD out of core (the rows in memory would take {_size(need)}, over the " \
                  f"{_size(budget)} budget)"


def memory_budget(value="auto"):
    """Bytes the exact solver may use: ``value`` as a size, or a quarter of the memory available.

    Examples
    --------
    >>> memory_budget("1GiB")
    1073741824
    >>> memory_budget("auto") > 0
    True
    """
    if value is None or str(value).strip().lower() == "auto":
        return max(256 * 2**20, available_memory() // 4)
    try:
        return parse_bytes(value)
    except ValueError as e:
        raise CLIError(f"--memory-budget: expected a size such as 2GiB or auto; got {value!r}") from e


def available_memory():
    """Bytes of memory available to a new allocation now (Linux: MemAvailable), else 1 GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 2**30


def _size(n_bytes):
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes / 2**10:.1f} KiB"
