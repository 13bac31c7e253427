"""DiNTS architecture search (Yu et al., CVPR 2021) with MONAI's TopologySearch.

The search space is a DiNTS network over a ``TopologySearch`` (every path and every cell
operation present, weighted by learnable ``log_alpha_a`` (paths) and ``log_alpha_c`` (cell
operations)). As in the paper and MONAI's DiNTS tutorial:

1. warm-up epochs update only the network weights (SGD, polynomial learning-rate decay);
2. then each step alternates a weight update on one batch with an architecture update on another
   (Adam on ``log_alpha_a``/``log_alpha_c``), whose loss is the segmentation loss plus, ramped in
   linearly, the entropies of the path and cell probabilities, the topology entropy (0.001x) and
   ``|ram_cost_factor - expected RAM / full RAM|`` (the memory budget);
3. ``TopologySearch.decode()`` (Dijkstra over block-wise child topologies) gives the code.

The result is a plain dict (see :mod:`petclick.networks.dints_arch`) that
``build_network("dints", arch_code=...)`` and ``save_arch_code`` accept.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from petclick.core.errors import InputError
from petclick.networks.dints_arch import validate_arch_code

log = logging.getLogger(__name__)


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, label) from a dict batch {"image", "label"} or a (image, label) pair."""
    if isinstance(batch, Mapping):
        if "image" not in batch or "label" not in batch:
            raise InputError("dints search batch", f"dict batches need 'image' and 'label', got {sorted(batch)}")
        image, label = batch["image"], batch["label"]
    elif isinstance(batch, (list, tuple)) and len(batch) == 2:
        image, label = batch
    else:
        raise InputError("dints search batch", f"expected a dict or an (image, label) pair, got {type(batch).__name__}")
    image, label = torch.as_tensor(image), torch.as_tensor(label)
    if image.ndim != 5 or label.ndim != 5 or image.shape[2:] != label.shape[2:] or image.shape[0] != label.shape[0]:
        raise InputError(
            "dints search batch",
            f"image and label must be (B, C, X, Y, Z) with equal B and X, Y, Z; got {tuple(image.shape)}, {tuple(label.shape)}",
        )
    return image, label


def _crop(image: torch.Tensor, label: torch.Tensor, roi: Sequence[int], gen: torch.Generator):
    """A random ROI crop (same for image and label); the batch must be at least the ROI."""
    shape = image.shape[2:]
    if any(s < r for s, r in zip(shape, roi)):
        raise InputError("dints search batch", f"spatial shape {tuple(shape)} is smaller than the ROI {tuple(roi)}")
    start = [int(torch.randint(0, s - r + 1, (1,), generator=gen)) for s, r in zip(shape, roi)]
    sl = (slice(None), slice(None)) + tuple(slice(b, b + r) for b, r in zip(start, roi))
    return image[sl], label[sl]


def _default_loss(out_channels: int) -> Callable:
    from monai.losses import DiceCELoss

    if out_channels == 1:
        return DiceCELoss(sigmoid=True)
    return DiceCELoss(softmax=True, to_onehot_y=True)


def search_dints_topology(
    train_loader_or_batches: Iterable[Any],
    in_channels: int,
    out_channels: int,
    roi: Sequence[int],
    num_epochs: int,
    *,
    arch_loader: Iterable[Any] | None = None,
    num_warmup_epochs: int | None = None,
    num_blocks: int = 12,
    num_depths: int = 4,
    channel_mul: float = 0.5,
    use_downsample: bool = True,
    learning_rate: float = 0.025,
    learning_rate_arch: float = 1e-3,
    weight_decay: float = 4e-5,
    ram_cost_factor: float = 0.8,
    loss_fn: Callable | None = None,
    device: str | torch.device = "cpu",
    amp: bool = False,
    seed: int = 0,
    max_steps_per_epoch: int | None = None,
) -> dict[str, Any]:
    """Search a DiNTS topology on `train_loader_or_batches` and return its architecture code.

    Batches are dicts ``{"image": (B, in_channels, X, Y, Z), "label": (B, 1, X, Y, Z)}`` or
    ``(image, label)`` pairs at least `roi` large (a random `roi` crop is taken). Without
    `arch_loader`, even batches update the weights and odd ones the architecture (the paper's
    two disjoint halves of the training data); with it, every weight step is followed by an
    architecture step on its next batch. `num_warmup_epochs` defaults to half the epochs.
    `channel_mul` is the search network's width (the trained network may be wider).
    """
    from monai.networks.nets import DiNTS, TopologySearch

    from petclick.networks.roi import check_roi

    roi = check_roi(roi, "dints", num_depths=num_depths, num_blocks=num_blocks, use_downsample=use_downsample)
    if num_epochs < 1:
        raise InputError("dints search", f"num_epochs must be >= 1, got {num_epochs}")
    warmup = num_epochs // 2 if num_warmup_epochs is None else int(num_warmup_epochs)
    if not 0 <= warmup < num_epochs:
        raise InputError("dints search", f"need 0 <= num_warmup_epochs < num_epochs, got {warmup}, {num_epochs}")
    device = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # MONAI prints a patch-size hint
        space = TopologySearch(
            channel_mul=channel_mul,
            num_blocks=num_blocks,
            num_depths=num_depths,
            use_downsample=use_downsample,
            device=str(device),
        )
    model = DiNTS(dints_space=space, in_channels=in_channels, num_classes=out_channels, use_downsample=use_downsample)
    model.to(device)
    loss_fn = loss_fn or _default_loss(out_channels)
    weights = model.weight_parameters()
    weights = [p for p in weights if p is not space.log_alpha_a and p is not space.log_alpha_c]
    opt_w = torch.optim.SGD(weights, lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
    opt_a = torch.optim.Adam([space.log_alpha_a], lr=learning_rate_arch, betas=(0.5, 0.999), weight_decay=0.0)
    opt_c = torch.optim.Adam([space.log_alpha_c], lr=learning_rate_arch, betas=(0.5, 0.999), weight_decay=0.0)
    use_amp = bool(amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def prepare(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = _crop(*_split_batch(batch), roi, gen)
        if image.shape[1] != in_channels:
            raise InputError("dints search batch", f"image has {image.shape[1]} channels, expected {in_channels}")
        label = label.float() if out_channels == 1 else label
        return image.float().to(device), label.to(device)

    def set_trainable(arch: bool) -> None:
        for p in weights:
            p.requires_grad_(not arch)
        space.log_alpha_a.requires_grad_(arch)
        space.log_alpha_c.requires_grad_(arch)

    def weight_step(batch: Any) -> float:
        image, label = prepare(batch)
        set_trainable(arch=False)
        opt_w.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=use_amp):
            loss = loss_fn(model(image), label)
        scaler.scale(loss).backward()
        scaler.step(opt_w)
        scaler.update()
        return float(loss.detach())

    def arch_step(batch: Any, reg_weight: float) -> float:
        image, label = prepare(batch)
        set_trainable(arch=True)
        opt_a.zero_grad(set_to_none=True)
        opt_c.zero_grad(set_to_none=True)
        probs_child, _ = space.get_prob_a(child=True)
        ent_a = -(torch.sigmoid(space.log_alpha_a) * F.logsigmoid(space.log_alpha_a)).mean()
        ent_c = -(F.softmax(space.log_alpha_c, dim=-1) * F.log_softmax(space.log_alpha_c, dim=-1)).mean()
        topology_ent = space.get_topology_entropy(probs_child)
        ram_full = space.get_ram_cost_usage(image.shape, full=True)
        ram_used = space.get_ram_cost_usage(image.shape)
        ram_loss = torch.abs(ram_cost_factor - ram_used / ram_full)
        with torch.autocast(device.type, enabled=use_amp):
            seg = loss_fn(model(image), label)
        loss = seg + reg_weight * (ent_a + ent_c + ram_loss + 0.001 * topology_ent)
        scaler.scale(loss).backward()
        scaler.step(opt_a)
        scaler.step(opt_c)
        scaler.update()
        return float(seg.detach())

    history: list[dict[str, float]] = []
    arch_iter = None
    model.train()
    for epoch in range(num_epochs):
        for group in opt_w.param_groups:  # the DiNTS tutorial's polynomial decay
            group["lr"] = learning_rate * (1 - epoch / num_epochs) ** 0.9
        searching = epoch >= warmup
        # ramps to 1 at the last epoch, so short searches still see the regularisers
        reg_weight = (epoch - warmup + 1) / (num_epochs - warmup) if searching else 0.0
        w_losses: list[float] = []
        a_losses: list[float] = []
        for step, batch in enumerate(train_loader_or_batches):
            if max_steps_per_epoch is not None and step >= max_steps_per_epoch:
                break
            if searching and arch_loader is None and step % 2 == 1:
                a_losses.append(arch_step(batch, reg_weight))
                continue
            w_losses.append(weight_step(batch))
            if searching and arch_loader is not None:
                arch_batch = next(arch_iter, None) if arch_iter is not None else None
                if arch_batch is None:  # first use, or the architecture loader ran out: cycle it
                    arch_iter = iter(arch_loader)
                    arch_batch = next(arch_iter)
                a_losses.append(arch_step(arch_batch, reg_weight))
        if not w_losses:
            raise InputError("dints search", "the training loader gave no batch")
        row = {"epoch": epoch, "weight_loss": sum(w_losses) / len(w_losses)}
        if a_losses:
            row["arch_loss"] = sum(a_losses) / len(a_losses)
        history.append(row)
        log.info("dints search %s", row)

    node_a, code_a, code_c, code_a_max = space.decode()
    code = validate_arch_code(
        {
            "num_blocks": num_blocks,
            "num_depths": num_depths,
            "node_a": node_a,
            "arch_code_a": code_a,
            "arch_code_c": code_c,
            "arch_code_a_max": code_a_max,
            "source": "search",
        },
        source="dints search result",
    )
    code["search"] = {
        "num_epochs": num_epochs,
        "num_warmup_epochs": warmup,
        "roi": list(roi),
        "channel_mul": channel_mul,
        "use_downsample": use_downsample,
        "ram_cost_factor": ram_cost_factor,
        "history": history,
    }
    return code
