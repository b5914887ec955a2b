"""Cache keys: a stable hash of everything that determines a response."""

from __future__ import annotations

import hashlib

import orjson

from app.backends.base import JSONRequest


def response_key(backend_identity: str, request: JSONRequest, schema_version: int) -> str:
    """SHA-256 over backend + model (+ server), prompt, schema version and params.

    Different backends, models or servers never share an entry; neither do
    different seeds or temperatures.
    """
    payload = {
        "backend": backend_identity,
        "task": request.task,
        "messages": list(request.messages),
        "inputs": dict(request.inputs),
        "schema": dict(request.schema),
        "schema_version": schema_version,
        "temperature": round(request.temperature, 4),
        "seed": request.seed,
        "max_tokens": request.max_tokens,
    }
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
