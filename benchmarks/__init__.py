"""The flask-core-redis benchmark: `bash scripts/bench` runs benchmarks/run.py."""
