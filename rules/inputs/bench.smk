# Input functions and params builders of rules/bench.smk (which includes this file).
# Functions only: Snakemake's lint keeps rules and functions in separate files.


def real_arch_configs(wildcards):
    """The published configs a real-architecture build reads: editing one rebuilds it."""
    return [os.path.relpath(p) for p in bench_config_files(wildcards.arch_kind)]
