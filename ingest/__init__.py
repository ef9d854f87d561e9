"""Ingest: load documents (Markdown, text, HTML, PDF, BEIR JSONL), chunk them, index them."""
