"""Benchmarks: the studio against the guide's reference pipeline, side by side in one run.

``python -m bench`` (full) or ``python -m bench --smoke`` (tiny sizes, CI); see bench/RESULTS.md.
"""
