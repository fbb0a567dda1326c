# Input functions and params builders of rules/data.smk (which includes this file).
# Functions only: Snakemake's lint keeps rules and functions in separate files.


def dataset_root_input(wildcards):
    """Raw roots are inputs only when the demo writes them.

    The user's raw datasets are not declared, so a dry-run plans the full matrix
    without the data; index_sources fails with a clear message if a root is missing.
    """
    root = DATASETS[wildcards.dataset]["root"]
    return [root] if produced_by_demo(root) else []


def shard_embeddings(dataset):
    return [
        f"{P}/{dataset}/clap/shard{i}.npy" for i in range(DATASETS[dataset]["shards"])
    ]


def shard_dirs_of(wildcards):
    return shard_dirs(wildcards.dataset)


def shard_embeddings_of(wildcards):
    return shard_embeddings(wildcards.dataset)


def clap_embed_inputs(wildcards):
    inputs = {"shard": shard_dir(wildcards.dataset, wildcards.shard)}
    for i, path in enumerate(model_input(config["clap"]["model"])):
        inputs[f"clap{i}"] = path
    return inputs
