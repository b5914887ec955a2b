"""Where NPCs are kept: ChromaDB and the offline embedding function it searches with."""
