"""Parameter counts and a one-line-per-fact summary of a network configuration."""

from __future__ import annotations

from typing import Any

from torch import nn

from petclick.networks.factory import build_network, check_name, network_kwargs
from petclick.networks.roi import roi_divisors


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `model` (only those with requires_grad if `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def network_summary(name: str, in_channels: int = 4, out_channels: int = 1, **kwargs: Any) -> dict[str, Any]:
    """Build network `name` with YAML `kwargs` and report what a user sizing a run needs:
    the resolved kwargs, parameter count, ROI divisors and the smallest trainable ROI."""
    key = check_name(name)
    model = build_network(key, in_channels, out_channels, **kwargs)
    div = roi_divisors(key, **kwargs)
    kw = network_kwargs(key, **kwargs)
    if key == "dints":
        kw["num_blocks"], kw["num_depths"] = model.num_blocks, model.num_depths
        kw.pop("arch_code", None)
    return {
        "name": key,
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "kwargs": kw,
        "parameters": count_parameters(model),
        "roi_divisors": div,
        "deep_supervision": key == "segresnet" and min(int(kw["dsdepth"]), len(kw["blocks_down"]) - 1) > 1,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as readable lines (for the CLI and benchmarks)."""
    lines = [f"{summary['name']}: {summary['parameters'] / 1e6:.2f} M parameters, "
             f"in {summary['in_channels']} -> out {summary['out_channels']}, "
             f"ROI multiple of {list(summary['roi_divisors'])}"
             + (", deep supervision" if summary["deep_supervision"] else "")]
    lines += [f"  {k}: {v}" for k, v in summary["kwargs"].items() if v is not None]
    return "\n".join(lines)
