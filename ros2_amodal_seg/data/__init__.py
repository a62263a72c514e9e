"""Datasets: the in-memory sample form, loaders for several amodal JSON layouts and writers."""
