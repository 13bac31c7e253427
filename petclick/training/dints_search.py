"""The DiNTS bundle's optional architecture-search stage (off by default).

`search_fold(cfg)` runs petclick.networks.search_dints_topology (MONAI TopologySearch, as the
DiNTS paper describes) on the fold's training patches - the same cached, augmented, click-encoded
patches the training loop uses - and saves the decoded architecture code into the bundle.
`run(config_file)` (the bundle's `scripts/search.py run`) then rewrites the bundle's
`configs/hyper_parameters.yaml` so that `network.kwargs.arch_code_path` names that code: the
training stage builds the searched topology, and every checkpoint inlines the code
(self-describing). `petclick.auto3dseg.dints_algo.DintsSearchAlgo` is the dints template's BundleAlgo: with `search.enabled`,
its train() runs scripts/search.py (a subprocess, like training) before scripts/train.py, once.

Config section (bundles/dints/configs/hyper_parameters.yaml):
    search: {enabled, arch_code, num_epochs, num_warmup_epochs, max_steps_per_epoch, channel_mul,
             ram_cost_factor, learning_rate, learning_rate_arch}
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from petclick.core.errors import InputError
from petclick.config.bundle import HYPER, config_files, load_bundle_config
from petclick.core.yamlio import read_yaml, write_yaml

log = logging.getLogger("petclick.training")
DEFAULT_ARCH_CODE = "arch_code.json"


def arch_code_path(cfg: Mapping[str, Any]) -> Path:
    """Where the search writes its code: `search.arch_code`, relative to the bundle folder."""
    path = Path(str((cfg.get("search") or {}).get("arch_code") or DEFAULT_ARCH_CODE))
    return path if path.is_absolute() else Path(cfg["bundle_root"]) / path


def search_fold(cfg: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Search a DiNTS topology on the fold's training patches; returns (code file, code)."""
    from petclick.networks import save_arch_code, search_dints_topology
    from petclick.networks.dints_arch import resolve_arch_code
    from petclick.networks.factory import network_kwargs
    from petclick.training.data import batch_stage, fold_files, train_dataset, train_loader
    from petclick.training.loop import describe

    if cfg["network"]["name"] != "dints":
        raise InputError("search", f"the architecture search is for dints bundles, not {cfg['network']['name']!r}")
    s = dict(cfg.get("search") or {})
    kw = network_kwargs("dints", **{k: v for k, v in (cfg["network"].get("kwargs") or {}).items()
                                    if k not in ("arch_code", "arch_code_path")})
    size = resolve_arch_code(kw)
    device = cfg["training"].get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    files = fold_files(cfg["datalist"], cfg["dataroot"], int(cfg["fold"]))
    roi = [int(r) for r in cfg["data"]["roi"]]
    seed = int(cfg["training"].get("seed", 0))
    loader = train_loader(cfg, train_dataset(cfg, files.train, roi), seed)
    stage = batch_stage(cfg)  # data.batch_transforms: the click channels are made on the batch, as in training
    if stage is not None:
        stage.set_random_state(seed)
        loader = _staged(loader, stage, device)
    t0 = time.time()
    code = search_dints_topology(
        loader, describe(cfg)["in_channels"], 1, roi, int(s.get("num_epochs", 40)),
        num_warmup_epochs=s.get("num_warmup_epochs"), num_blocks=int(size["num_blocks"]),
        num_depths=int(size["num_depths"]), channel_mul=float(s.get("channel_mul", 0.5)),
        use_downsample=bool(kw["use_downsample"]), learning_rate=float(s.get("learning_rate", 0.025)),
        learning_rate_arch=float(s.get("learning_rate_arch", 1e-3)),
        ram_cost_factor=float(s.get("ram_cost_factor", 0.8)), device=device,
        amp=bool(cfg["training"].get("amp", False)), seed=seed, max_steps_per_epoch=s.get("max_steps_per_epoch"))
    path = save_arch_code(code, arch_code_path(cfg))
    log.info("dints search: %d epochs in %.1f s, code -> %s", int(s.get("num_epochs", 40)), time.time() - t0, path)
    return path, code


class _staged:
    """A loader whose batches go through the training's batch stage (re-iterable, like the loader)."""

    def __init__(self, loader: Any, stage: Any, device: str):
        self.loader, self.stage, self.device = loader, stage, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return (self.stage(batch, self.device) for batch in self.loader)


def use_arch_code(hyper_file: str | Path, code_path: str | Path) -> Path:
    """Point `network.kwargs.arch_code_path` of a bundle's hyper_parameters.yaml at `code_path`
    (an inline `arch_code` is dropped); keeps the file's comment header."""
    hyper_file = Path(hyper_file)
    data = read_yaml(hyper_file)
    kwargs = dict((data.setdefault("network", {}).get("kwargs")) or {})
    kwargs.pop("arch_code", None)
    kwargs["arch_code_path"] = str(Path(code_path).resolve())
    data["network"]["kwargs"] = kwargs
    header = "\n".join(line for line in hyper_file.read_text().splitlines() if line.startswith("#"))
    return write_yaml(hyper_file, data, header=header)


def run(config_file: str | list | None = None, **override: Any) -> str:
    """Entry of the dints bundle's `scripts/search.py run --config_file=... [--search#num_epochs=N]`:
    search, save the code, point the bundle's hyper_parameters.yaml at it; returns the code path."""
    cfg = load_bundle_config(config_file, override)
    hyper = [f for f in config_files(config_file) if f.name == HYPER]
    if not hyper:
        raise InputError("config_file", f"the search needs the bundle's {HYPER} among the config files")
    for key in ("bundle_root", "datalist", "dataroot", "fold"):
        if key not in cfg:
            raise InputError(hyper[0], f"lacks {key!r}: is this a generated bundle's config?")
    path, _ = search_fold(cfg)
    use_arch_code(hyper[0], path)
    return str(path)


def cli() -> None:
    """Fire entry of the dints bundle's search.py."""
    import fire

    fire.Fire({"run": run})


def search_pending(bundle: str | Path) -> bool:
    """True when the bundle's config enables the search and its code file does not exist yet."""
    cfg = read_yaml(Path(bundle) / "configs" / HYPER)
    return bool((cfg.get("search") or {}).get("enabled")) and not arch_code_path(cfg).is_file()
