"""A contact sheet of a similarity search: each query beside its nearest stored images."""

import os

from ._page import card, common_folder, esc, fmt, page
from ._thumbs import Thumbnails

__all__ = ["contact_sheet"]


def contact_sheet(result, path, *, title=None, thumbnail_size=128):
    """Write an HTML page showing each query image beside its neighbours.

    One row per query: the query (framed), then its ``k`` nearest stored
    images, nearest first, each with its rank, cosine distance, label (when
    the store holds labels), store row and path. A query that could not be
    read gets a row with the reason; a stored image that can no longer be
    read gets a placeholder with the reason. The page opens offline in any
    browser: thumbnails are embedded, decoded with
    :func:`skbottleneck.images.load_image`; all text is escaped.

    Parameters
    ----------
    result : SimilarityResult
        What :func:`skbottleneck.find_similar` returned.
    path : str or path-like
        The HTML file to write (its folder must exist).
    title : str, default=None
        Heading of the page; default "Similar images".
    thumbnail_size : int, default=128
        Longest side of a picture, in pixels.

    Returns
    -------
    path : str
        The file written.

    Examples
    --------
    >>> import numpy as np
    >>> from skbottleneck.report import contact_sheet
    >>> from skbottleneck.similarity import SimilarityResult
    >>> result = SimilarityResult(queries=np.array(["query.jpg"]), indices=np.array([[3, 1]]),
    ...                           distances=np.array([[0.05, 0.31]], dtype=np.float32),
    ...                           paths=np.array([["a.jpg", "b.jpg"]]), labels=np.array([["cat", "dog"]]))
    >>> html = open(contact_sheet(result, tmp_dir / "sheet.html")).read()
    >>> "0.050" in html and "cat" in html and "image unreadable: no such file" in html
    True
    """
    if isinstance(thumbnail_size, bool) or not isinstance(thumbnail_size, int) or thumbnail_size < 1:
        raise ValueError("The 'thumbnail_size' parameter of contact_sheet must be an int >= 1. "
                         f"Got {thumbnail_size!r} instead.")
    thumbs = Thumbnails(thumbnail_size)
    heading = title or "Similar images"
    n_queries, k = result.indices.shape
    queries = [] if result.queries is None else [str(q) for q in result.queries]
    folder = common_folder(queries + [str(p) for p in result.paths.ravel()])

    def shown(path):
        return os.path.relpath(path, folder) if folder else None

    rows = []
    for q in range(n_queries):
        query = None if result.queries is None else str(result.queries[q])
        cells = [card(thumbs, query, [f"<b>query {q + 1}</b>"], css_class="query",
                      shown_path=shown(query))
                 if query is not None else
                 f'<figure class="card"><div class="img query"><div class="missing">query '
                 f"{q + 1}: given as features</div></div></figure>"]
        for r in range(k):
            lines = [f"<b>#{r + 1}</b> distance {fmt(float(result.distances[q, r]))}"]
            if result.labels is not None:
                lines.append(f"label: {esc(result.labels[q, r])}")
            lines.append(f"row {int(result.indices[q, r])}")
            neighbour = str(result.paths[q, r])
            cells.append(card(thumbs, neighbour, lines, shown_path=shown(neighbour)))
        rows.append(f'<div class="row">{"".join(cells)}</div>')
    for query, reason in result.failed:
        rows.append(f'<div class="row"><figure class="card"><div class="img query">'
                    f'<div class="missing">query unreadable: {esc(reason)}</div></div>'
                    f'<figcaption><span class="path">{esc(query)}</span></figcaption>'
                    "</figure></div>")
    failed = f", {len(result.failed)} unreadable" if result.failed else ""
    body = (f"<h1>{esc(heading)}</h1><p class=\"sub\">{n_queries} queries{failed}, {k} nearest "
            "stored images each, nearest first (cosine distance: 0 is the same direction, "
            "2 the opposite)." + (f" Paths are relative to {esc(folder)}." if folder else "")
            + "</p>" + "\n".join(rows))
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page(heading, body, thumbnail_size=thumbnail_size))
    return path
