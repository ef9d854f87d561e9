"""Answering: the retrieval ``gate``, the ``prompt`` (passages, citations, refusals) and the
``pipeline`` that runs retrieve → gate → LLM → checked, cited answer."""
