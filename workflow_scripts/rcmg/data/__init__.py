"""Data: audio I/O, dataset sources in their published layouts, segmenting."""
