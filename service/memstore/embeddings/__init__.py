"""Embedders: text to vectors for semantic search, pluggable, offline by default."""
