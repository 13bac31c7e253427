"""Parameter counts and a one-line-per-fact summary of a network configuration."""

from __future__ import annotations

from typing import Any

from torch import nn

from petclick.networks.factory import build_network, network_kwargs, network_spec
from petclick.networks.roi import roi_divisors


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `model` (only those with requires_grad if `trainable_only`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def network_summary(name: str, in_channels: int = 4, out_channels: int = 1, **kwargs: Any) -> dict[str, Any]:
    """Build network `name` with YAML `kwargs` and report what a user sizing a run needs:
    the resolved kwargs, parameter count, ROI divisors and the smallest trainable ROI."""
    spec = network_spec(name)
    model = build_network(spec.name, in_channels, out_channels, **kwargs)
    full = network_kwargs(spec.name, **kwargs)
    return {
        "name": spec.name,
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "kwargs": spec.summary_kwargs(model, full),
        "parameters": count_parameters(model),
        "roi_divisors": roi_divisors(spec.name, **kwargs),
        "deep_supervision": spec.deep_supervision(full),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as readable lines (for the CLI and benchmarks)."""
    lines = [f"{summary['name']}: {summary['parameters'] / 1e6:.2f} M parameters, "
             f"in {summary['in_channels']} -> out {summary['out_channels']}, "
             f"ROI multiple of {list(summary['roi_divisors'])}"
             + (", deep supervision" if summary["deep_supervision"] else "")]
    lines += [f"  {k}: {v}" for k, v in summary["kwargs"].items() if v is not None]
    return "\n".join(lines)
