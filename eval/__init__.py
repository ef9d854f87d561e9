"""Offline evaluation and benchmarks (retrieval quality, answer quality, speed, memory)."""
