"""Generation: prompts, conditioning, style adapters (and their training), the generate job."""
