"""One router per group of endpoints: ``ops`` (health, readiness, metrics), ``search``, ``ask``,
``chat`` (OpenAI-compatible) and ``documents``."""
