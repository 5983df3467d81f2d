"""Benchmarks: ours vs diffusers in the same run on the same machine (``python -m benchmarks``).

``python -m benchmarks`` runs the suite (``suite.py``); ``--quick`` is the CI
smoke run (reduced models, no thresholds). ``fields.py`` holds the calibrated
decode field; ``bench_*.py`` are older single-purpose scripts. Results are
recorded in ``RESULTS.md``; nothing here is a test and no test asserts a time.
"""
