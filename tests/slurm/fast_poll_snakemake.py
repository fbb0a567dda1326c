"""``python fast_poll_snakemake.py ARGS`` = ``snakemake ARGS`` with the SLURM executor checking
job status every POLL_S seconds. Tests only.

The executor plugin (2.8) waits ``slurm-init-seconds-before-status-checks`` after each
finished job and 10 s longer after every check that sees none finish (up to 180 s): on a
cluster that is the right courtesy to slurmctld, but in a test of jobs that take seconds it
adds up to minutes of waiting per job chain. The profile cannot set a fixed interval, so
this entry point pins it; everything else (submission, status parsing, retries) is the
plugin's own code.
"""

import sys

from snakemake_executor_plugin_slurm import Executor

POLL_S = 2

Executor.next_seconds_between_status_checks = property(
    lambda self: POLL_S, lambda self, value: None
)

if __name__ == "__main__":
    from snakemake.cli import main

    sys.argv[0] = "snakemake"
    sys.exit(main())
