"""One router per group of endpoints: ``ops`` (health, readiness, metrics), ``search``, ``ask``,
``documents``."""
