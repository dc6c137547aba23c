"""``skbottleneck extract``: the CNN features of an image folder or file list, into a store."""

import os
import sys
import time
import warnings

import numpy as np

from .._keras import import_tf
from ..backbones import get_backbone
from ..extraction import CNNFeatureTransformer
from ..images import ImageError
from ..store import StoreLockedError
from ..utils import format_bytes
from ._files import (
    check_writable_dir,
    check_writable_file,
    load_input,
    open_store,
    read_file_list,
    weights_arg,
    write_errors,
)
from ._output import EXIT_FAILURE, EXIT_OK, CLIError, echo, with_flags


__all__ = ["cmd_extract"]


def cmd_extract(args):
    """Extract into ``--out``; list the unreadable images left out in the errors file."""
    if (args.image_dir is None) == (args.file_list is None):
        raise CLIError("give either IMAGE_DIR or --file-list FILE (exactly one).")
    try:
        get_backbone(args.backbone)
    except ValueError as e:
        raise CLIError(str(e)) from e
    weights = weights_arg(args.weights)
    out = check_writable_file(args.out, "feature store")
    errors_file = args.errors_file or out + ".errors.csv"
    if args.on_error == "skip":
        check_writable_file(errors_file, "errors file")
    if args.image_dir is not None:
        paths, labels = load_input(args.image_dir, args.path_column, args.label_column)
    else:
        paths, labels = read_file_list(args.file_list)
    cache_dir = None if args.no_cache else (args.cache_dir or "auto")
    if cache_dir not in (None, "auto"):
        check_writable_dir(cache_dir, "cache folder")

    transformer = _transformer(args, cache_dir, weights)
    import_tf(quiet=True)
    n_classes = "" if labels is None else f" in {len(np.unique(labels))} classes"
    if not args.quiet:
        model = (f"backbone {args.backbone}, weights {args.weights}"
                 + (", int8" if args.precision == "int8" else "")
                 if args.calibration_store is None else
                 f"the int8 model of {args.calibration_store} ({transformer.backbone})")
        echo(f"{len(paths)} images{n_classes}; {model}, writing {out}", file=sys.stderr)
    extract_kwargs = {"overwrite": args.overwrite}
    if args.no_wait:
        extract_kwargs["wait"] = False
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # skipped images are reported below, with the errors file
            warnings.filterwarnings("ignore", message=r"\d+ of \d+ images could not be read")
            result = transformer.extract(paths, labels, store=out, **extract_kwargs)
    except FileExistsError as e:
        raise CLIError(with_flags(e.strerror or e)) from e
    except OSError as e:
        if not isinstance(e, StoreLockedError):
            raise
        raise CLIError(f"{with_flags(e.strerror or e)} (without --no-wait, extract waits "
                       "for the other writer to finish)", EXIT_FAILURE) from e
    except ImageError as e:
        if args.on_error != "skip":
            raise CLIError(f"{e} (--on-error skip leaves unreadable images out; rerunning keeps "
                           "the features already extracted)", EXIT_FAILURE) from e
        # extract() keeps the readable images; it raises only when there are none
        write_errors(errors_file, getattr(e, "failed", None) or [(e.path, e.reason)])
        raise CLIError(f"none of the {len(paths)} images could be read; see {errors_file}",
                       EXIT_FAILURE) from None
    elapsed = time.perf_counter() - t0
    with result.features as store:
        n_rows, n_features = store.shape
    skipped = list(result.failed)  # by this run or, when it had nothing to do, a previous one
    if skipped:
        write_errors(errors_file, skipped)
        echo(f"skbottleneck: warning: {len(skipped)} unreadable images were left out; "
             f"listed in {errors_file}", file=sys.stderr)
    stats = result.stats
    size = os.path.getsize(out) if os.path.exists(out) else 0
    detail = ""
    if stats:
        on = f" on {stats['runtime']}" if stats.get("runtime") else ""
        on += " (int8)" if stats.get("precision") == "int8" else ""
        detail = (f" ({stats.get('n_extracted', 0)} through the CNN{on}, "
                  f"{stats.get('n_cached', 0)} from the cache)")
    echo(f"wrote {n_rows} images x {n_features} features ({transformer.dtype}) to {out} "
         f"[{format_bytes(size)}] in {elapsed:.1f} s{detail}")
    return EXIT_OK


def _transformer(args, cache_dir, weights):
    """The transformer of the flags, or with ``--calibration-store`` the store's own."""
    run = dict(batch_size=args.batch_size, cache_dir=cache_dir, on_error=args.on_error,
               decode_threads=args.decode_threads, runtime=args.runtime,
               verbose=0 if args.quiet else (2 if args.verbose else 1))
    if args.calibration_store is None:
        return CNNFeatureTransformer(
            args.backbone, weights=weights, layer=args.layer,
            pooling=None if args.pooling == "none" else args.pooling,
            input_size=args.input_size, dtype=args.dtype, precision=args.precision or "float32",
            random_state=args.random_state, **run)
    from ._train import _transformer_from_store

    moved = [f"--{dest.replace('_', '-')}" for dest, default in args.model_defaults.items()
             if getattr(args, dest) != default and dest != "weights"]
    moved += ["--precision float32"] if args.precision == "float32" else []  # its model is int8
    if moved:
        raise CLIError(f"--calibration-store takes the model from {args.calibration_store!r}; "
                       f"drop {', '.join(moved)}.")
    store = open_store(args.calibration_store)
    given = args.weights != args.model_defaults["weights"]  # a weights file the store names
    transformer = _transformer_from_store(store, weights if given else None)
    if transformer.precision != "int8":
        raise CLIError(f"--calibration-store needs a store of int8 features; "
                       f"{args.calibration_store!r} holds {transformer.precision} ones (a float32 "
                       "model needs no calibration: give its flags instead).")
    try:
        return transformer.set_params(**run).fit(store)  # takes over the calibration
    except ValueError as e:
        raise CLIError(str(e)) from e
