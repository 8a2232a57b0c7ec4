"""phasekit's benchmarks: every figure a ratio against a baseline measured in the same run.

Run ``python -m benchmarks`` (writes ``benchmarks/RESULTS.md``) or ``python -m benchmarks
--quick`` (a smoke run that prints the table and leaves RESULTS.md alone).
"""
