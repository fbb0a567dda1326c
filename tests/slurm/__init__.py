"""Tests that need the local SLURM test cluster (tests/slurm/cluster.sh)."""
