"""The pieces every HTML page of the report is made of: style, escaping, image cards.

Pages are plain HTML5 with an inline style sheet: no JavaScript, no fonts or
style sheets from a network, so they open offline in any browser. Every
piece of user data (labels, paths, reasons, titles) goes through
:func:`esc`.
"""

import html
import os

__all__ = ["esc", "page", "card", "fmt", "common_folder"]

_STYLE = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#d9e2ec; --bg:#f5f7fa; --ok:#2f855a;
        --bad:#c53030; --accent:#2166ac; }
* { box-sizing: border-box; }
body { margin:0; padding:24px 32px 48px; font:14px/1.45 system-ui,-apple-system,"Segoe UI",
       Roboto,"Helvetica Neue",Arial,sans-serif; color:var(--ink); background:#fff; }
h1 { font-size:24px; margin:0 0 4px; }
h2 { font-size:19px; margin:32px 0 8px; padding-bottom:4px; border-bottom:2px solid var(--line); }
h3 { font-size:15px; margin:20px 0 6px; }
p.sub, .note { color:var(--muted); margin:4px 0 12px; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
nav { margin:8px 0 0; color:var(--muted); } nav a { margin-right:14px; }
.tiles { display:flex; flex-wrap:wrap; gap:12px; margin:16px 0; }
.tile { background:var(--bg); border:1px solid var(--line); border-radius:8px; padding:10px 16px;
        min-width:130px; }
.tile b { display:block; font-size:24px; } .tile span { color:var(--muted); font-size:12px; }
table { border-collapse:collapse; margin:8px 0; }
th, td { padding:4px 8px; border:1px solid var(--line); text-align:right; }
th { background:var(--bg); font-weight:600; } td.name, th.name { text-align:left; }
table.cm td { min-width:38px; text-align:center; font-variant-numeric:tabular-nums; }
table.cm td.diag { outline:2px solid var(--ok); outline-offset:-2px; }
table.cm th.col { writing-mode:vertical-rl; transform:rotate(180deg); text-align:left;
                  vertical-align:bottom; white-space:nowrap; padding:6px 4px; }
.bar { display:inline-block; height:8px; background:var(--accent); border-radius:2px;
       vertical-align:middle; margin-left:6px; }
.side { display:flex; flex-wrap:wrap; gap:0 48px; align-items:flex-start; }
.side p.note { max-width:520px; }
.cards { display:flex; flex-wrap:wrap; gap:10px; }
.card { margin:0; width:SIZEpx; font-size:11.5px; line-height:1.3; }
.card .img { width:SIZEpx; height:SIZEpx; display:flex; align-items:center;
             justify-content:center; background:var(--bg); border:1px solid var(--line);
             border-radius:4px; overflow:hidden; }
.card img { max-width:100%; max-height:100%; display:block; }
.card .missing { padding:6px; color:var(--bad); text-align:center; overflow-wrap:anywhere; }
.card figcaption { margin-top:3px; }
.card .path { color:var(--muted); overflow-wrap:anywhere; display:block; }
.card .query { border-color:var(--accent); border-width:3px; }
.t { color:var(--ok); } .p { color:var(--bad); font-weight:600; }
.row { display:flex; gap:14px; align-items:flex-start; padding:10px 0;
       border-bottom:1px solid var(--line); }
.more { color:var(--muted); font-style:italic; align-self:center; }
"""


def esc(value):
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def fmt(value, digits=3):
    """A number for the page: ``-`` for None."""
    return "-" if value is None else f"{value:.{digits}f}"


def common_folder(paths):
    """The folder all ``paths`` are in (``""`` when none), to show them shorter."""
    try:
        folders = {os.path.dirname(os.fspath(p)) for p in paths}
        return os.path.commonpath(folders) if folders else ""
    except ValueError:  # absolute and relative mixed, or different drives
        return ""


def page(title, body, *, thumbnail_size=128):
    """A complete HTML5 document with the inline style sheet."""
    style = _STYLE.replace("SIZE", str(int(thumbnail_size)))
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")


def card(thumbs, path, lines, *, css_class="", shown_path=None):
    """A thumbnail (or a placeholder saying why there is none) above caption ``lines``.

    ``lines`` are HTML already escaped; the path is escaped here and shown
    last, as ``shown_path`` (e.g. relative to the folder the page names)
    with the full path as its tooltip. ``path`` None: the sample has no
    image file (features given).
    """
    if path is None:
        picture = '<div class="missing">no image: the samples were given as features</div>'
    else:
        uri, reason = thumbs.get(path)
        if uri is None:
            picture = f'<div class="missing">image unreadable: {esc(reason)}</div>'
        else:
            picture = f'<img src="{uri}" alt="{esc(path)}">'
    caption = "<br>".join(lines)
    if path is not None:
        caption += (f'<span class="path" title="{esc(path)}">'
                    f"{esc(path if shown_path is None else shown_path)}</span>")
    return (f'<figure class="card"><div class="img {css_class}">{picture}</div>'
            f"<figcaption>{caption}</figcaption></figure>")
