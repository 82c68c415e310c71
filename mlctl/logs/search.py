"""``mlctl classify-logs search``: query the project's log index."""

from __future__ import annotations

import time
from typing import Any

from mlctl.core.config import LoadedConfig
from mlctl.core.errors import ConfigError, NotFound
from mlctl.logs.pipeline import resolve_sink_url

_INDEX_SCHEMES = ("sqlite:", "http://", "https://", "opensearch+", "elasticsearch+")


def index_url(loaded: LoadedConfig, index: str | None = None) -> str:
    """The index to search: ``index``, else the sink named ``index``, else the first index-like sink."""
    if index:
        return resolve_sink_url(index, loaded.root)
    sinks = loaded.config.logs.sinks
    url = sinks.get("index")
    if url is None or not url.startswith(_INDEX_SCHEMES):
        url = next((u for u in sinks.values() if u.startswith(_INDEX_SCHEMES)), None)
    if url is None:
        raise ConfigError("no search index among logs.sinks", hint="add e.g. index: sqlite:///.mlctl/logs.db")
    return resolve_sink_url(url, loaded.root)


def search_index(loaded: LoadedConfig, query: str, *, since: str | None = None, cls: str | None = None,
                 limit: int = 50, index: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Matching lines, newest first; ``since`` is a duration such as ``1h``."""
    from mlctl.connectors.search import make_index
    from mlctl.core.durations import parse_duration

    url = index_url(loaded, index)
    if url.startswith("sqlite:///"):
        from pathlib import Path

        path = Path(url[len("sqlite:///") :])
        if not path.exists():
            raise NotFound(f"no log index yet at {path}", hint="classify with --route, or stream, to fill it")
    cutoff = time.time() - parse_duration(since, what="--since") if since else None
    idx = make_index(url)
    try:
        return idx.search("" if query.strip() == "*" else query, since=cutoff, cls=cls, limit=limit)
    finally:
        idx.close()
