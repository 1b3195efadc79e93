"""ModelDB benchmarks: `python -m bench [--quick]` prints a table and writes bench/results/."""
