# Input functions and params builders of rules/adapter.smk (which includes this file).
# Functions only: Snakemake's lint keeps rules and functions in separate files.

# One folder per model and adapter variant: adapters/<model>/ (the configured
# adapter_training) or adapters/<model>@lr=...,hidden=.../ (a sweep's adapter knobs,
# rcmg.workflow.sweeps.adapter_variant); train_adapter is keyed by {model}{variant}.
ADAPTER_DIR = f"{R}/adapters/{{model}}{{variant}}"


def adapter_checkpoint(model, variant=""):
    """The trained style adapter of ``model`` at ``variant`` (output of train_adapter)."""
    return f"{ADAPTER_DIR}/style_adapter.safetensors".format(
        model=model, variant=variant
    )


def adapter_setting(key):
    """A train_adapter param: ``adapter_training.<key>`` at the job's adapter variant."""

    def value(wildcards):
        return sweeps.adapter_training(config, wildcards.variant)[key]

    return value


def adapter_family_flags(wildcards):
    """The family's own adapter settings (adapter_training.style_tokens: MusicGen's and Stable Audio's K), at
    the job's adapter variant; "" when none is set (the family's default)."""
    settings = sweeps.adapter_training(config, wildcards.variant)
    if "style_tokens" in settings and model_family(wildcards.model).adapter_options:
        return f"--style-tokens {settings['style_tokens']}"
    return ""


def converted_projector(pt_path):
    """Where convert_projector writes the safetensors adapter of an original ``.pt``."""
    return str(Path(pt_path).with_suffix("")) + ".projector.safetensors"


def external_adapter(model, condition):
    """A run's external adapter: the model's converted original projector, else the one
    trained at the run condition's adapter variant (the configured one when unswept)."""
    projector = MODELS[model].get("projector")
    if projector:
        return converted_projector(projector)
    return adapter_checkpoint(model, sweeps.adapter_variant(condition))


def adapter_model_input(wildcards):
    return model_input(MODELS[wildcards.model]["id"]) + model_input(
        model_space(wildcards.model).model
    )


def adapter_inputs(wildcards):
    files = space_files(model_space_name(wildcards.model))
    inputs = {
        "prompts": PROMPTS,
        "bank": files["npy"],
        "bank_mapping": BANK["mapping"],
        "index": files["index"],
        "segments": shard_dirs(BANK_DS),
    }
    for i, path in enumerate(adapter_model_input(wildcards)):
        inputs[f"model{i}"] = path
    return inputs
