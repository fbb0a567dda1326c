"""rcmg (retrieval-conditioned music generation): the library behind the workflow.

One sub-package per stage (data, models, bank, generation, evaluation, workflow) plus
``standins`` for the demo and benchmarks; the CLIs in ``workflow_scripts/*.py`` are thin
wrappers. Heavy imports (torch, diffusers, transformers, faiss) stay inside functions so
that ``snakemake -n`` and the CPU-only steps start fast.
"""

__version__ = "0.2.0"
