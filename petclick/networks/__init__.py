"""petclick's segmentation networks (SegResNetDS, DiNTS, SwinUNETR), one module and NetworkSpec
each (segresnet.py, dints.py, swinunetr.py; registry in spec.py): building from YAML kwargs, ROI
rules derived from each network, DiNTS architecture search and codes, and loading checkpoints
trained with fewer input channels."""

from petclick.networks.channel_expansion import expand_input_channels, load_state_dict
from petclick.networks.dints_arch import default_arch_code, load_arch_code, save_arch_code, validate_arch_code
from petclick.networks.factory import (
    DEFAULT_KWARGS,
    NETWORK_NAMES,
    as_list,
    build_network,
    network_kwargs,
    network_spec,
    resolve_network_kwargs,
)
from petclick.networks.roi import check_roi, cover_roi, fit_roi, roi_divisor, roi_divisors
from petclick.networks.summary import count_parameters, format_summary, network_summary


def search_dints_topology(*args, **kwargs):
    """See :func:`petclick.networks.dints_search.search_dints_topology` (imported lazily)."""
    from petclick.networks.dints_search import search_dints_topology as _search

    return _search(*args, **kwargs)


__all__ = [
    "DEFAULT_KWARGS",
    "NETWORK_NAMES",
    "as_list",
    "build_network",
    "check_roi",
    "count_parameters",
    "default_arch_code",
    "expand_input_channels",
    "cover_roi",
    "fit_roi",
    "format_summary",
    "load_arch_code",
    "load_state_dict",
    "network_kwargs",
    "network_spec",
    "network_summary",
    "resolve_network_kwargs",
    "roi_divisor",
    "roi_divisors",
    "save_arch_code",
    "search_dints_topology",
    "validate_arch_code",
]
