"""Running extraction on a Dask cluster (placeholder: the helper implements it)."""


def active_client(client=None):
    """The Dask client to use: ``client``, else none (placeholder)."""
    return client


def fill_cache_on_cluster(transformer, paths, *, client):  # pragma: no cover - placeholder
    raise NotImplementedError("distributed extraction is being implemented")
