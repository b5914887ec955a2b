"""LLM backends behind one contract, picked by name from a registry."""

from app.backends.base import Backend, JSONReply, JSONRequest, Message
from app.backends.registry import (
    BackendRegistry,
    default_registry,
    get_backend,
    resolve_backend_name,
)

__all__ = [
    "Backend",
    "BackendRegistry",
    "JSONReply",
    "JSONRequest",
    "Message",
    "default_registry",
    "get_backend",
    "resolve_backend_name",
]
