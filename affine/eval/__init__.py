"""Evaluation: per-env statistics, validator-style intervals and Pareto dominance, result comparison, reports."""
