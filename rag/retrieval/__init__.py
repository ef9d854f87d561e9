"""Retrieval: BM25 and dense lists (``retriever``), their fusion (``fusion``), and the factory
that assembles a retriever from settings (``factory``)."""
