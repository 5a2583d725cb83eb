"""Op benchmarks: one pytest module per op (bench_<op>.py) over the shared harness in common.py."""
