"""Stand-ins for the demo and benchmarks: synthetic corpus, tiny and published-architecture
random-weight models. No product module imports this package."""
