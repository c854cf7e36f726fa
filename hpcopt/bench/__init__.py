"""What every kernel shares: the timing harness, the SPMD program, the console, checks."""
