"""The HTTP service (FastAPI): search, documents, health, metrics (and /ask with the generators)."""
