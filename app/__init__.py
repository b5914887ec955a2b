"""NPC Forge: generate, browse and talk to non-player characters."""

__version__ = "0.1.0"
