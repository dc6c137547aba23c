"""Model files: skops files that run no code when loaded, or joblib pickles.

A model that ``skbottleneck train`` saves is a scikit-learn ``Pipeline``
``[CNNFeatureTransformer, head]``. It can be written in two formats, chosen
by the file name:

``.skops`` (the safe one)
    :func:`skops.io.dump`: a zip of the estimators' state (parameters,
    NumPy arrays, a Keras head's weights and optimiser state, never a Keras
    object). :func:`load_model` reads the types named in the file *before*
    anything is imported or built, and refuses a file holding a type that is
    not in :data:`TRUSTED_TYPES` nor trusted by skops itself (scikit-learn's
    estimators and their losses, NumPy arrays, scalars and random states,
    Python's containers), so loading a file of unknown origin runs no code
    from it.
any other name (``.joblib``, ``.pkl``, ...)
    :func:`joblib.dump`, a pickle. **Loading a pickle runs whatever code the
    file holds**: load only files from a source you trust.

The format is recognised from the file's content, not its name: a skops
file is a zip archive holding ``schema.json``, anything else is a pickle,
and a file named ``.skops`` that is not a skops file is refused rather
than unpickled.
"""

import os
import warnings
import zipfile

from .extraction import CNNFeatureTransformer
from .feature_space import check_feature_space, pipeline_steps
from .fileio import atomic_file
from .heads import IncrementalClassifier, KerasMLPClassifier

__all__ = ["SKOPS_EXTENSION", "TRUSTED_TYPES", "UntrustedModelError", "check_model_file",
           "load_model", "model_file_format", "save_model"]

#: File extension that makes :func:`save_model` write the skops format.
SKOPS_EXTENSION = ".skops"

#: The types a ``.skops`` model file may hold beyond those skops trusts by
#: default: the package's own estimators (their state holds only parameters,
#: NumPy arrays and Python containers; :class:`KerasMLPClassifier` keeps its
#: network's weights and optimiser state as arrays, no Keras object), and the
#: solvers scikit-learn's ``MLPClassifier`` keeps after ``partial_fit`` (the
#: ``mlp`` head), which skops does not trust by default. Nothing else: a file
#: naming another type is refused (:class:`UntrustedModelError`).
TRUSTED_TYPES = tuple(
    [f"{cls.__module__}.{cls.__qualname__}"
     for cls in (CNNFeatureTransformer, IncrementalClassifier, KerasMLPClassifier)]
    + ["sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
       "sklearn.neural_network._stochastic_optimizers.SGDOptimizer"]
)


class UntrustedModelError(ValueError):
    """A ``.skops`` model file holds types that skbottleneck does not trust.

    Nothing from the file was imported, built or run.

    Parameters
    ----------
    path : str
        The model file.
    types : list of str
        The fully qualified names of the types that are not trusted.

    Attributes
    ----------
    path : str
        The model file.
    types : list of str
        The types that are not trusted.
    """

    def __init__(self, path, types):
        self.path = path
        self.types = list(types)
        super().__init__(
            f"{path} holds types that skbottleneck does not trust: {', '.join(self.types)}. "
            "The file was not loaded (no code from it ran): a .skops model file may hold "
            "skbottleneck's own estimators, scikit-learn estimators and NumPy arrays only. If "
            "you trust the file's source, load it yourself with "
            "skops.io.load(path, trusted=[...])."
        )

    def __reduce__(self):
        return type(self), (self.path, self.types)


def model_file_format(path):
    """The format of the model file ``path``, from its content.

    Parameters
    ----------
    path : str or os.PathLike
        An existing file.

    Returns
    -------
    format : {"skops", "joblib"}
        ``"skops"`` for a zip archive holding ``schema.json``, else
        ``"joblib"`` (a pickle, possibly compressed).

    Raises
    ------
    ValueError
        ``path`` is named ``*.skops`` but is not a skops file.
    OSError
        ``path`` cannot be read.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    if is_zip:
        try:
            with zipfile.ZipFile(path) as z:
                if "schema.json" in z.namelist():
                    return "skops"
        except zipfile.BadZipFile:
            pass
    if path.lower().endswith(SKOPS_EXTENSION):
        raise ValueError(f"{path} is named {SKOPS_EXTENSION} but is not a skops file (a zip "
                         "archive holding schema.json); it was not loaded.")
    return "joblib"


def check_model_file(path):
    """The format of ``path``; refuses a skops file that holds an untrusted type.

    Reads only the file's list of types: nothing is imported, built or run.

    Parameters
    ----------
    path : str or os.PathLike
        An existing model file.

    Returns
    -------
    format : {"skops", "joblib"}
        As :func:`model_file_format`. A ``"joblib"`` file is a pickle, which
        runs code when loaded: this function cannot check it.

    Raises
    ------
    UntrustedModelError
        A skops file naming a type outside :data:`TRUSTED_TYPES` and the
        types skops trusts by default.
    ValueError
        A ``.skops`` file that is not a skops file, or a damaged one.
    """
    path = os.fspath(path)
    fmt = model_file_format(path)
    if fmt == "skops":
        import skops.io

        try:
            found = skops.io.get_untrusted_types(file=path)
        except Exception as e:
            raise ValueError(f"{path} is not a readable skops model file "
                             f"({type(e).__name__}: {e})") from e
        untrusted = sorted(set(found) - set(TRUSTED_TYPES))
        if untrusted:
            raise UntrustedModelError(path, untrusted)
    return fmt


def load_model(path):
    """Load a model file written by :func:`save_model` (or by ``skbottleneck train``).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.skops`` file (loaded only if every type it holds is trusted:
        see :func:`check_model_file`) or a joblib pickle. **A pickle runs
        whatever code it holds when loaded: load only files from a source
        you trust.**

    Returns
    -------
    model : object
        The saved estimator.

    Raises
    ------
    UntrustedModelError
        A skops file holding a type that is not trusted.
    ValueError
        A ``.skops`` file that is not a skops file, or a damaged one; a
        Pipeline whose head was trained on features of another space than
        its transformer computes
        (:func:`~skbottleneck.feature_space.check_feature_space`), or
        whose transformer's stored ``fingerprint_`` is not what its
        parameters build (an edited file).

    Warns
    -----
    UserWarning
        For a pickle (it ran code when loaded), and for a transformer whose
        ``cache_dir`` names a folder (it came from the file).

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skbottleneck import load_model, save_model
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "model.skops")
    >>> save_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    'skops'
    >>> load_model(path).predict([[1.0]]).tolist()
    [1]
    >>> tmp.cleanup()
    """
    path = os.fspath(path)
    if check_model_file(path) == "joblib":
        import joblib

        warnings.warn(f"{path} is a pickle (joblib): loading it runs whatever code it holds. "
                      f"Load pickles only from a source you trust; save models as .skops "
                      f"files, which load without running code.", UserWarning, stacklevel=2)
        return _checked(joblib.load(path), path)
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        model = skops.io.load(path, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException as e:  # pragma: no cover - check_model_file saw them
        raise UntrustedModelError(path, [str(e)]) from e
    return _checked(model, path)


def _checked(model, path):
    """``model`` once its feature spaces agree (and its transformers' identities hold)."""
    try:
        check_feature_space(model)
    except ValueError as e:
        raise type(e)(f"{path}: {e}") from e
    for _, step in pipeline_steps(model):
        if not isinstance(step, CNNFeatureTransformer):
            continue
        cache_dir = step.get_params().get("cache_dir")
        if cache_dir not in ("auto", None):
            warnings.warn(
                f"{path}: its CNNFeatureTransformer writes its feature cache to "
                f"{os.fspath(cache_dir)!r}, a folder named in the file; "
                f"model.set_params(...cache_dir='auto') uses this machine's default cache.",
                UserWarning, stacklevel=3)
    return model


def save_model(model, path):
    """Write ``model`` to ``path``: skops for ``*.skops``, else a joblib pickle.

    The file is written under a temporary name, flushed to disk and renamed,
    so that ``path`` is either the previous file or the complete new one.

    Parameters
    ----------
    model : object
        The estimator to save.
    path : str or os.PathLike
        Destination. ``*.skops`` writes the skops format, which
        :func:`load_model` reads without running code from the file; any
        other name writes a joblib pickle, which runs code when loaded.

    Returns
    -------
    format : {"skops", "joblib"}
        The format written.

    Raises
    ------
    FeatureSpaceError
        A Pipeline whose head was trained on features of another space
        than its transformer computes (nothing is written).

    Notes
    -----
    A head after a transformer in a Pipeline learned from that
    transformer's features: before writing, each such step that has no
    ``feature_space_`` yet records the transformer's
    (:func:`~skbottleneck.feature_space.check_feature_space` with
    ``record=True``), so that the loaded model refuses features of another
    space.
    """
    check_feature_space(model, record=True)
    path = os.fspath(path)
    fmt = "skops" if path.lower().endswith(SKOPS_EXTENSION) else "joblib"
    with atomic_file(path) as tmp:
        if fmt == "skops":
            import skops.io

            skops.io.dump(model, tmp)
        else:
            import joblib

            joblib.dump(model, tmp)
    return fmt
