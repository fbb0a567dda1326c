"""rcmg: the library behind the retrieval-conditioned music generation workflow.

Each module holds one job; the CLIs in ``workflow_scripts/*.py`` are thin wrappers.
Heavy imports (torch, diffusers, transformers, faiss) stay inside functions so that
``snakemake -n`` and the CPU-only steps start fast.
"""

__version__ = "0.1.0"
