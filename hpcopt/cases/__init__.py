"""Harness cases: what each kernel times (allreduce algorithms, point-to-point patterns)."""
