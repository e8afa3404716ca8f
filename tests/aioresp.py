"""aioresponses, made to work with aiohttp 3.14 (shared by the connector unit tests).

aioresponses 0.7.9 builds ClientResponse objects without the ``stream_writer`` that
aiohttp 3.14 requires; this supplies one.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp
from aioresponses import aioresponses as _aioresponses
from yarl import URL


class _Response(aiohttp.ClientResponse):
    def __init__(self, method: str, url: URL, **kwargs: Any):
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


class aioresponses(_aioresponses):
    def add(self, *args: Any, **kwargs: Any) -> None:
        kwargs["response_class"] = kwargs.get("response_class") or _Response
        super().add(*args, **kwargs)
