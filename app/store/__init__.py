"""ChromaDB access: the NPC store and the offline embedding function."""
