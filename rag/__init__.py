"""Retrieval-augmented question answering: shared types, settings, indexes and retrieval."""

__version__ = "0.1.0"
