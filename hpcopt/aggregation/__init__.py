"""Aggregation paths: the sum over ranks of what each rank holds, and what it costs."""
