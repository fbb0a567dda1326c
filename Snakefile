"""Retrieval-conditioned music generation: MAESTRO/URMP/FSD50K -> CLAP -> style bank
-> FAISS -> AudioLDM1/2 generation x conditions -> evaluation -> reports.

    snakemake --configfile config/demo.yaml --cores 2     # embedded demo, CPU, minutes
    snakemake --profile slurm                             # the real experiment on a cluster
"""

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"


# A group of evaluate jobs runs them one at a time: `group_slots` is limited per submitted
# group, never across the cluster (config/README.md, cluster.evaluate_group_size).
resource_scopes:
    group_slots="local",


# Jobs see the submitting shell's environment (sbatch --export=ALL); declaring HF_HOME
# also forwards it on executors that do not share it. Planning never needs it.
if "HF_HOME" in os.environ:

    envvars:
        "HF_HOME",


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(map(re.escape, MODELS)),
    condition="|".join(map(re.escape, RUN_CONDITIONS)),
    seed=r"\d+",
    shard=r"\d+",
    demo_kind="|".join(DATASET_KINDS),
    tiny_kind="|".join(TINY_KINDS),
    arch_kind="|".join(MODEL_KINDS),
    space="|".join(map(re.escape, SPACES)) or "(?!)",


include: "rules/demo.smk"
include: "rules/data.smk"
include: "rules/bank.smk"
include: "rules/adapter.smk"
include: "rules/generate.smk"
include: "rules/listening.smk"
include: "rules/evaluate.smk"
include: "rules/audit.smk"
include: "rules/bench.smk"


rule all:
    default_target: True
    input:
        all_targets(),
