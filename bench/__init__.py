"""Benchmarks. `python bench/ingest.py --help`; see bench/README.md."""
