"""``skbottleneck cache``: the size of the feature cache per model and of the
converted OpenVINO models, or clear them."""

import json
import os

from ..cache import CONVERTED_MODELS_FOLDER, cache_info, clear_cache, converted_models_info, get_cache_dir
from ..utils import format_bytes
from ._output import EXIT_OK, CLIError, echo

__all__ = ["cmd_cache"]


def cmd_cache(args):
    """``cache info`` (table or JSON) or ``cache clear``, optionally of one backbone."""
    cache_dir = get_cache_dir(args.cache_dir)
    if args.cache_dir and os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise CLIError(f"cache folder {args.cache_dir!r} is a file, not a folder.")
    if args.cache_dir and not os.path.isdir(cache_dir):
        raise CLIError(f"cache folder {args.cache_dir!r} does not exist.")
    if args.action == "clear":
        removed = clear_cache(cache_dir, backbone=args.backbone)
        n_converted = sum(1 for k in removed if "/" in k)
        what = f" of backbone {args.backbone}" if args.backbone else ""
        echo(f"removed the cached features{what} of {len(removed) - n_converted} models and "
             f"{n_converted} converted OpenVINO models from {cache_dir}, freeing "
             f"{format_bytes(sum(removed.values()))}")
        return EXIT_OK
    info, converted = cache_info(cache_dir), converted_models_info(cache_dir)
    if args.backbone:
        info, converted = ({k: v for k, v in d.items() if isinstance(v.get("fingerprint"), dict)
                            and v["fingerprint"].get("backbone") == args.backbone}
                           for d in (info, converted))
    if args.format == "json":
        echo(json.dumps({"cache_dir": cache_dir, "models": info, "converted_models": converted},
                        indent=2, default=str))
        return EXIT_OK
    echo(_format_cache_info(info, cache_dir))
    size = format_bytes(sum(v.get("bytes") or 0 for v in converted.values()))
    echo(f"{len(converted)} converted OpenVINO models, {size}"
         f" (in {os.path.join(cache_dir, CONVERTED_MODELS_FOLDER)})")
    return EXIT_OK


def _format_cache_info(info, cache_dir):
    total = sum(v.get("bytes") or 0 for v in info.values())
    lines = [f"cache folder: {cache_dir}",
             f"{len(info)} models, {sum(v.get('n_entries') or 0 for v in info.values())} images, "
             f"{format_bytes(total)}"]
    if not info:
        return "\n".join(lines)
    table = [("ID", "IMAGES", "FEATURES", "DISK", "MODEL")]
    for key, v in info.items():
        fp = v.get("fingerprint") if isinstance(v.get("fingerprint"), dict) else {}
        size = fp.get("input_size")
        size = "x".join(map(str, size)) if isinstance(size, (list, tuple)) else str(size or "?")
        model = (f"{fp.get('backbone', '?')} weights={fp.get('weights')} layer={fp.get('layer')} "
                 f"pooling={fp.get('pooling')} size={size} dtype={v.get('storage_dtype')}"
                 if fp else v.get("description", "?"))
        table.append((key, str(v.get("n_entries", 0)), str(v.get("n_features") or "?"),
                      format_bytes(v.get("bytes") or 0), model))
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines.append("")
    for r in table:
        lines.append("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]),
                                r[3].rjust(widths[3]), r[4]]))
    return "\n".join(lines)
