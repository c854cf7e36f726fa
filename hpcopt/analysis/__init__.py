"""Analysis of hpcopt logs: plots, comparisons across files and α–β–γ cost models."""
