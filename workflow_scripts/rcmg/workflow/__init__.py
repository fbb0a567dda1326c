"""Workflow plumbing: atomic outputs, code hash, config checks, run info, the CLI frame."""
