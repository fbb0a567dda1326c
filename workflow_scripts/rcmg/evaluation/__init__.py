"""Evaluation: metrics, statistics, plots, reports (and templates), the comparison."""
