"""LLM backends behind one contract, picked by name from a registry."""

from app.backends.base import Backend, JSONReply, JSONRequest, Message
from app.backends.registry import (
    BackendContext,
    BackendRegistry,
    default_registry,
    resolve_backend_name,
)

__all__ = [
    "Backend",
    "BackendContext",
    "BackendRegistry",
    "JSONReply",
    "JSONRequest",
    "Message",
    "default_registry",
    "resolve_backend_name",
]
