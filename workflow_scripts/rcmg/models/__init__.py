"""Models: Hugging Face loading, the CLAP embedder, generation pipelines, random-weight marker."""
