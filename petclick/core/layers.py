"""petclick's layers, lowest first: a package may import its own layer and the layers below it,
never one above (tests/test_layers.py checks every import, including those inside functions)."""

from __future__ import annotations

#: One tuple per layer, lowest first. `petclick` is the root package (its __init__: version, doc).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("petclick", "core"),                    # errors, YAML utilities, geometry helpers
    ("config",),                             # presets and bundle config files
    ("io",),                                 # volumes, click files, datalists, SimpleITK images
    ("networks", "clicks"),                  # networks; click simulation, curricula and encodings
    ("phantoms", "metrics", "postprocess"),  # the phantom cohort, official metrics, post-processing
    ("runtime",),                            # preprocessing, click input, sliding window, checkpoints
    ("training", "inference"),               # the training loop; predictors and ensembles
    ("auto3dseg",),                          # MONAI Auto3DSeg glue (BundleAlgo, analysis, ensemble)
    ("workflows", "bundles"),                # jobs: demo, interactive evaluation, predict, gc, hpo; the
                                             # Auto3DSeg templates' scripts (package data, copied by AutoRunner)
    ("commands",),                           # the `petclick` subcommands (argument parsing)
    ("cli", "__main__"),                     # the command-line entry
)


def layer_of(module: str) -> int:
    """The layer index of a dotted petclick module name (`petclick.runtime.window` -> 5)."""
    parts = module.split(".")
    if parts[0] != "petclick":
        raise ValueError(f"not a petclick module: {module}")
    top = parts[1] if len(parts) > 1 else "petclick"
    for n, names in enumerate(LAYERS):
        if top in names:
            return n
    raise KeyError(f"{module}: package {top!r} is in no layer of petclick.core.layers.LAYERS")
