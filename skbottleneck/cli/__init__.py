"""The ``skbottleneck`` command: extract features, train a head, evaluate, predict.

Run ``skbottleneck --help`` (or ``python -m skbottleneck --help``) for the
list of commands, ``skbottleneck COMMAND --help`` for each one. The typical
session::

    skbottleneck extract photos/ --backbone efficientnet_lite0 --out features.h5
    skbottleneck train features.h5 --head logreg --out model.skops
    skbottleneck evaluate model.skops test_photos/ --report report/
    skbottleneck predict model.skops new_photo.jpg more_photos/

A ``.skops`` model file runs no code when it is loaded (one holding a type
that is not trusted is refused); a ``.joblib`` model file is a pickle, which
runs whatever code it holds: load only those from a trusted source.

Expected errors (a wrong argument, a missing folder, an unreadable image, a
store of another backbone) print one line, ``skbottleneck: error: ...``, on
stderr and exit with a status scripts can rely on (see :data:`EXIT_CODES`);
``--traceback`` shows the Python traceback as well.

The package is thin: ``_parser`` (the arguments), ``_main`` (dispatch and
errors), ``_output`` (messages and exit statuses), ``_files`` (the inputs and
outputs, checked before work starts), and one module per command
(``_backbones``, ``_extract``, ``_train``, ``_evaluate`` with ``predict``,
``_similar``, ``_cache``) calling the library. A command's module is
imported only when it runs, and TensorFlow only by the commands that run a
CNN, so ``--help``, ``backbones`` and ``cache`` answer at once.
"""

from ._main import main
from ._output import EXIT_CODES, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CLIError
from ._parser import build_parser

__all__ = ["CLIError", "EXIT_CODES", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
           "build_parser", "main"]
