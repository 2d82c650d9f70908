"""Fault injection under load (scripts/chaos): see chaos/run.py."""
