"""hpcopt: what communication costs in distributed optimization, in seconds and in bits."""

__version__ = "0.1.0"
