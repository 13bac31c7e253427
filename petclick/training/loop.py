"""The one training loop of every petclick bundle: repeats (seeds) of one fold, validation with the
official metrics, best/last checkpoints, resume, progress.yaml, TensorBoard, DDP. How repeats
relate (independent, snapshot cycles, warm starts) is YAML `training.repeats` (repeats.py).

Layout under `ckpt_path` (`<bundle>/model`):
    train.log                      this process's log (AutoRunner shows a script's output only on failure)
    progress.yaml                  fold score = mean of the repeats' best scores (Auto3DSeg get_score)
    repeat<r>/model.pt             best validation checkpoint, or the repeat's end in snapshot/warmstart
                                   modes (self-describing; what inference uses)
    repeat<r>/last.pt              end-of-epoch resume state (a kill loses at most the running epoch)
    repeat<r>/progress.yaml        one entry per validation
    repeat<r>/tb/                  TensorBoard: loss, learning rate, validation metrics
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from monai.optimizers import WarmupCosineSchedule
from monai.utils import set_determinism

from petclick.core.errors import InputError
from petclick.runtime.checkpoint import BEST_NAME, LAST_NAME, save_checkpoint
from petclick.runtime.clickinput import click_channels
from petclick.runtime.preprocess import preprocess_config
from petclick.runtime.window import infer_config
from petclick.config.bundle import iterations_per_epoch, load_bundle_config
from petclick.training.budget import budget_settings, plan_budget, process_elapsed, time_steps
from petclick.training.data import batch_stage, fold_files, train_dataset, train_loader, val_dataset
from petclick.training.distributed import DistContext, close_distributed, init_distributed, unwrap
from petclick.networks.organ_head import LesionOutput, split_output
from petclick.training.loss import build_loss, build_organ_loss
from petclick.training.organs import organ_head, organ_target
from petclick.training.repeats import repeat_epochs, repeat_mode
from petclick.training.threads import apply_threads
from petclick.training.progress import PROGRESS, FoldStatus, read_progress, update_fold_progress, write_progress
from petclick.training.validation import validate

log = logging.getLogger("petclick.training")
IMAGE_CHANNELS = 2  # CT, PET


def describe(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The self-describing part of every checkpoint of this config (network, input, inference)."""
    from petclick.networks.factory import resolve_network_kwargs

    clicks = cfg["clicks"]
    pre = preprocess_config(cfg["data"])
    pre.update(roi=[int(r) for r in cfg["data"]["roi"]], encoding=dict(clicks.get("encoding") or {}),
               max_clicks=int(clicks["max_clicks"]))
    name = cfg["network"]["name"]
    desc = {"network": {"name": name, "kwargs": resolve_network_kwargs(name, cfg["network"].get("kwargs") or {})},
            "in_channels": IMAGE_CHANNELS + click_channels(clicks.get("encoding")), "out_channels": 1,
            "preprocess": pre, "infer": infer_config(cfg.get("infer"), cfg["data"]["roi"]),
            "algo": cfg.get("algo", name), "fold": int(cfg.get("fold", 0))}
    head = organ_head(cfg["network"])
    if head:  # the network has organ channels after the lesion one: inference loads it as LesionOutput
        desc["organ_head"] = head
    return desc


def _build_model(cfg: Mapping[str, Any], desc: Mapping[str, Any]) -> torch.nn.Module:
    from petclick.networks.factory import build_network

    organ_classes = int(desc["organ_head"]["classes"]) if desc.get("organ_head") else 0
    model = build_network(desc["network"]["name"], desc["in_channels"], 1, organ_classes=organ_classes,
                          **desc["network"]["kwargs"])
    init = cfg["network"].get("init_checkpoint")
    if init and organ_classes:
        raise InputError("network.init_checkpoint", "fine-tuning from a checkpoint is not supported with an organ "
                                                    "head (network.organ_head): its output layers differ")
    if init:  # fine-tune from a checkpoint with fewer input channels (click channels start at zero)
        from petclick.networks import expand_input_channels

        expanded = expand_input_channels(model, init, int(cfg["network"].get("image_channels", IMAGE_CHANNELS)))
        log.info("initialised from %s (input channels expanded in %s)", init, expanded or "none")
        if cfg["network"].get("output_prior") is not None:
            log.warning("network.output_prior ignored: the weights come from init_checkpoint %s", init)
    elif cfg["network"].get("output_prior") is not None:
        from petclick.networks.output_prior import init_output_prior

        heads = init_output_prior(model, cfg["network"]["output_prior"], 1 + organ_classes, channels=1)
        log.info("output bias initialised to logit(%s) in %s", cfg["network"]["output_prior"], ", ".join(heads))
    return model


def amp_dtype(device: torch.device, amp: Any) -> torch.dtype | None:
    """The autocast dtype of training: float16 on CUDA, bfloat16 on a CPU with native bfloat16
    (oneDNN; AVX512-BF16/AMX), None (float32) when `amp` is off or the CPU lacks it."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def train_autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for the training forward (a no-op context without an AMP dtype)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class RepeatTrainer:
    """Trains one repeat (seed) of a fold; resumable from `<out_dir>/last.pt`."""

    def __init__(self, cfg: Mapping[str, Any], repeat: int, out_dir: Path, ctx: DistContext, train_ds, val_ds,
                 status: FoldStatus | None = None):
        self.cfg, self.repeat, self.out_dir, self.ctx = cfg, int(repeat), Path(out_dir), ctx
        self.status = status if ctx.is_main else None
        self.train_ds, self.val_ds = train_ds, val_ds
        self.desc = describe(cfg)
        tr = cfg["training"]
        self.mode = repeat_mode(tr)
        self.epochs = repeat_epochs(tr, self.repeat)
        self.iters = iterations_per_epoch(cfg, len(train_ds))
        self.val_every = max(1, int(tr["val_every"]))
        self.seed = int(tr["seed"]) + 1000 * self.repeat
        set_determinism(self.seed)
        self.model = _build_model(cfg, self.desc).to(ctx.device)
        self.net = ctx.wrap(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"]))
        total = self.epochs * self.iters
        self.sched = WarmupCosineSchedule(self.opt, warmup_steps=int(tr["warmup_epochs"]) * self.iters,
                                          t_total=max(1, total), warmup_multiplier=0.1)
        self.amp_dtype = amp_dtype(ctx.device, tr["amp"])
        self.amp = self.amp_dtype == torch.float16  # a gradient scaler for float16 only (CUDA)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.channels_last = bool(tr["channels_last"])
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last_3d)
        self.loss_fn = build_loss(tr)
        self.organ_head = self.desc.get("organ_head")
        self.organ_loss_fn = build_organ_loss(tr, self.organ_head) if self.organ_head else None
        self.organ_losses: list[float] = []  # mean organ loss (before its weight) of each epoch, with an organ head
        self._organ_epoch: list[float] = []
        self.batch = batch_stage(cfg)
        self._stream = None  # the training batches (see _batches)
        self.grad_clip = tr.get("grad_clip")
        self.start_epoch, self.best, self.finished = 0, -math.inf, False
        self.losses: list[float] = []  # mean training loss of each epoch run by this object
        self.progress = read_progress(self.out_dir / PROGRESS)
        self._resume()

    # -- state -------------------------------------------------------------------------------
    def _resume(self) -> None:
        last = self.out_dir / LAST_NAME
        if not last.is_file():
            self._start_from_source()
            return
        ck = torch.load(last, map_location=self.ctx.device, weights_only=True)
        self.model.load_state_dict(ck["state_dict"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        if self.amp and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.start_epoch, self.best = int(ck["epoch"]), float(ck["best_metric"])
        self.finished = bool(ck.get("finished")) and self.start_epoch >= self.epochs
        self.progress = [e for e in self.progress if int(e.get("epoch", 0)) <= self.start_epoch]
        log.info("repeat %d: resumed from %s at epoch %d (best %.4f)", self.repeat, last, self.start_epoch, self.best)

    def _start_from_source(self) -> None:
        """Snapshot / warm-start repeats: begin from the final state of the mode's source repeat."""
        source = self.mode.source(self.repeat)
        if source is None:
            return
        path = self.out_dir.parent / f"repeat{source}" / LAST_NAME
        ck = torch.load(path, map_location=self.ctx.device, weights_only=True) if path.is_file() else None
        if ck is None or not ck.get("finished"):
            raise InputError(path, f"repeat {self.repeat} ({self.mode.name} mode) starts from repeat {source}, "
                                   "which has not finished: train the repeats in order")
        self.model.load_state_dict(ck["state_dict"])
        if self.mode.with_optimizer:
            self.opt.load_state_dict(ck["optimizer"])
            for group, lr in zip(self.opt.param_groups, self.sched.get_last_lr()):
                group["lr"] = lr  # a new cycle: the learning rate restarts where this repeat's schedule begins
        log.info("repeat %d: %s from repeat %d's end (epoch %d)%s", self.repeat, self.mode.name, source,
                 int(ck["epoch"]), " with its optimiser state" if self.mode.with_optimizer else "")

    def _payload(self, epoch: int, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**self.desc, "state_dict": unwrap(self.model).state_dict(), "repeat": self.repeat, "epoch": epoch,
                "best_metric": float(self.best), "metrics": dict(metrics or {}), "seed": self.seed,
                "repeat_mode": self.mode.name, "repeat_source": self.mode.source(self.repeat)}

    def _save_last(self, epoch: int, finished: bool) -> None:
        payload = self._payload(epoch)
        payload.update(optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict(),
                       scaler=self.scaler.state_dict() if self.amp else {}, finished=finished)
        save_checkpoint(self.out_dir / LAST_NAME, payload)

    # -- loop --------------------------------------------------------------------------------
    def batch_stage(self, batch: Mapping[str, Any]) -> Mapping[str, Any]:
        """The collated batch after the batch stage (data.batch_transforms: intensity augmentation and
        click encoding on the training device); unchanged when the loader did all of it."""
        if self.batch is None:
            return batch
        return self.batch(batch, self.ctx.device)

    def compute_loss(self, out: Any, y: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """The training loss of the network output `out` for lesion labels `y`: the lesion loss, plus
        with an organ head the organ loss of the batch's organ maps times the head's weight (samples
        without an organ map left out of it)."""
        if self.organ_loss_fn is None:
            return self.loss_fn(out, y)
        lesion, organs = split_output(out, 1)
        target = organ_target(batch, y.device)
        organ = self.organ_loss_fn(organs, target)
        if bool((target >= 0).any()):  # the epoch's organ loss: batches with an organ map only
            self._organ_epoch.append(float(organ.detach()))
        return self.loss_fn(lesion, y) + self.organ_head["weight"] * organ

    def step(self, batch: Mapping[str, Any], timer: Any = None, sync: Any = None) -> float:
        """One optimiser step on a collated batch; returns the loss. `timer(stage, fn, sync=...)`
        (benchmarks/bench_training.py) times the forward, backward and optimiser parts."""
        timer = timer or _untimed
        sync = sync or _no_sync
        x = batch["image"].to(self.ctx.device, non_blocking=True)
        y = batch["label"].to(self.ctx.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)

        def forward():
            with train_autocast(self.ctx.device, self.amp_dtype):
                out = self.net(x)
            out = [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()
            return self.compute_loss(out, y, batch)

        def backward():
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()

        def optimise():
            if self.grad_clip:
                self.scaler.unscale_(self.opt)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.grad_clip))
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()

        loss = timer("forward", forward, sync=sync)
        timer("backward", backward, sync=sync)
        timer("optimiser", optimise, sync=sync)
        return float(loss.detach())

    def _batches(self, epoch: int):
        """Endless training batches of a loader seeded by `epoch` (passes follow each other)."""
        loader = train_loader(self.cfg, self.train_ds, self.seed * 7919 + epoch)
        if self.batch is not None:
            self.batch.set_random_state(self.seed * 7919 + epoch)
        while True:
            yield from loader

    def _epoch(self, epoch: int) -> float:
        """One epoch. Without loader workers each epoch has its own loader, seeded by the epoch, so a
        resumed run sees the batches of an uninterrupted one; with workers one persistent loader serves
        the rest of the repeat (its workers start once, not every epoch), seeded by its first epoch."""
        self.net.train()
        if self._stream is None or not int(self.cfg["data"]["num_workers"]):
            self._stream = self._batches(epoch)
        self._organ_epoch = []
        losses = [self.step(self.batch_stage(next(self._stream))) for _ in range(self.iters)]
        if self.organ_head:  # NaN for an epoch whose batches had no organ map
            self.organ_losses.append(float(np.mean(self._organ_epoch)) if self._organ_epoch else float("nan"))
        return float(np.mean(losses))

    def lesion_model(self) -> torch.nn.Module:
        """The trained network as inference sees it: its lesion output only (organ channels cut)."""
        model = unwrap(self.model)
        return LesionOutput(model, 1) if self.organ_head else model

    def _validate(self, epoch: int, writer) -> float:
        clicks = self.cfg["clicks"]
        steps = [int(s) for s in clicks["val_steps"]]
        t0 = time.time()
        m = validate(self.lesion_model(), self.val_ds if self.val_ds is not None else [], self.desc["infer"],
                     clicks.get("encoding"), steps, self.ctx.device, network=self.desc["network"],
                     score=str(self.cfg["training"].get("val_score", "dice_fpv")), gather=self.ctx.all_gather)
        # independent repeats keep their best validation state; snapshot/warm-start ones their end
        improved = epoch == self.epochs if self.mode.keep_last else m["score"] > self.best
        if improved:
            self.best = m["score"]
            if self.ctx.is_main:
                save_checkpoint(self.out_dir / BEST_NAME, self._payload(epoch, m))
        entry = {"epoch": epoch, "avg_dice_score": float(m["score"]), "best_avg_dice_score": float(self.best),
                 "dice": _num(m["dice"]), "fpv_ml": _num(m["fpv_ml"]), "fnv_ml": _num(m["fnv_ml"]),
                 "negative_clean": _num(m["negative_clean"]), "n_cases": int(m["n_cases"]),
                 "per_step_dice": {s: _num(v["dice"]) for s, v in m["per_step"].items()},
                 "time_s": round(time.time() - t0, 2)}
        self.progress.append(entry)
        if self.ctx.is_main:
            write_progress(self.out_dir / PROGRESS, self.progress)
        log.info("repeat %d epoch %d: validation score %.4f (dice %s, fpv %.2f mL) best %.4f%s", self.repeat, epoch,
                 m["score"], f"{m['dice']:.4f}", m["fpv_ml"], self.best, " (saved)" if improved else "")
        if writer is not None:
            writer.add_scalar("val/score", m["score"], epoch)
            for s, v in m["per_step"].items():
                for k, val in v.items():
                    if not math.isnan(val):
                        writer.add_scalar(f"val/{k}_step{s}", val, epoch)
        return float(m["score"])

    def run(self) -> float:
        """Train the remaining epochs; returns the best validation score."""
        if self.finished:
            log.info("repeat %d: already finished (best %.4f)", self.repeat, self.best)
            return self.best
        writer = _writer(self.out_dir / "tb") if self.ctx.is_main else None
        for epoch in range(self.start_epoch, self.epochs):
            t0 = time.time()
            loss = self._epoch(epoch)
            self.losses.append(loss)
            done = epoch + 1
            organ = f" (organ loss {self.organ_losses[-1]:.4f})" if self.organ_head else ""
            log.info("repeat %d epoch %d/%d: loss %.4f%s lr %.2e (%.1f s)", self.repeat, done, self.epochs, loss,
                     organ, self.opt.param_groups[0]["lr"], time.time() - t0)
            if writer is not None:
                writer.add_scalar("train/loss", loss, done)
                if self.organ_head:
                    writer.add_scalar("train/organ_loss", self.organ_losses[-1], done)
                writer.add_scalar("train/lr", self.opt.param_groups[0]["lr"], done)
            val = None
            if done % self.val_every == 0 or done == self.epochs:
                val = self._validate(done, writer)  # every rank its share of the cases, the same score
                self.ctx.barrier()
            if self.ctx.is_main:
                self._save_last(done, finished=done == self.epochs)
            if self.status is not None:
                self.status.update(self.repeat, done, loss, val)
        if writer is not None:
            writer.close()
        return self.best


def _untimed(stage: str, fn, *args, sync=None):
    return fn(*args)


def _no_sync() -> None:
    return None


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def _writer(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: train without its logs
        log.warning("tensorboard is not installed: no TensorBoard logs")
        return None
    return SummaryWriter(log_dir=str(path))


def _log_to_file(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for name in ("petclick",):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    return handler


BUDGET_FILE = "budget.yaml"


def fit_time_budget(cfg: Mapping[str, Any], ctx: DistContext, train_ds, val_ds, repeats: list[int],
                    ckpt_path: Path) -> Mapping[str, Any]:
    """`cfg` with `training.num_iterations_per_epoch` sized to `training.time_budget_s` (petclick.training.budget);
    `cfg` itself without a budget. The plan is measured once (rank 0, shared with the other ranks) and
    kept in <ckpt_path>/budget.yaml, so a resumed run trains the iterations it started with."""
    budget, max_scale = budget_settings(cfg["training"])
    if budget is None:
        return cfg
    from petclick.core.yamlio import read_yaml, write_yaml

    stored = ckpt_path / BUDGET_FILE
    plan = read_yaml(stored) if stored.is_file() else None
    if plan is None:
        with tempfile.TemporaryDirectory() as tmp:  # a throw-away trainer: nothing of it is kept
            probe = RepeatTrainer(cfg, 0, Path(tmp), ctx, train_ds, val_ds)
            batches = probe._batches(0)
            probe.net.train()
            step_s = time_steps(lambda: probe.step(probe.batch_stage(next(batches))))
            val_case_s = 0.0
            if ctx.is_main and val_ds is not None and len(val_ds):
                t0 = time.perf_counter()
                validate(probe.lesion_model(), [val_ds[0]], probe.desc["infer"], cfg["clicks"].get("encoding"),
                         [int(s) for s in cfg["clicks"]["val_steps"]], ctx.device)
                val_case_s = time.perf_counter() - t0
        epochs = [repeat_epochs(cfg["training"], r) for r in repeats]
        recipe = iterations_per_epoch(cfg, len(train_ds))
        plan = plan_budget(budget, process_elapsed(), step_s, val_case_s, epochs,
                           max(1, int(cfg["training"]["val_every"])), len(val_ds) if val_ds is not None else 0,
                           recipe, max_scale).to_dict()
        plan = ctx.broadcast(plan)
        if ctx.is_main:
            write_yaml(stored, plan, header="# the time budget's plan (petclick.training.budget); delete to re-plan")
    log.info("time budget %.0f s: %.3f s per step, %.2f s per validation case, %d validations -> %d of the recipe's "
             "%d iterations per epoch (predicted %.0f s)", plan["budget_s"], plan["step_s"], plan["validation_case_s"],
             plan["validations"], plan["iterations_per_epoch"], plan["recipe_iterations_per_epoch"], plan["predicted_s"])
    out = copy.deepcopy(cfg)
    out["training"]["num_iterations_per_epoch"] = int(plan["iterations_per_epoch"])
    return out


def _validation_files(cfg: Mapping[str, Any], files, rank: int, world: int) -> list[dict]:
    """This rank's share of the fold's fixed, tracer-balanced validation subset (`training.val_cases`);
    an InputError when click steps are scored on cases without click files (they would score 0 clicks)."""
    from petclick.training.data import rank_share, require_clicks, validation_subset

    subset = validation_subset(files.val, cfg["training"].get("val_cases"), int(cfg["training"].get("seed", 0)))
    require_clicks(subset, cfg["clicks"]["val_steps"], cfg["datalist"])
    return rank_share(subset, rank, world)


def _timeout(cfg: Mapping[str, Any], val_files: list[dict], world: int) -> float:
    """The collective timeout of this fold (petclick.training.plan.dist_timeout_s): a rank's share of a
    validation at the preset's recorded pass time."""
    from petclick.training.data import _header_shape
    from petclick.training.plan import STEP_TIMES, dist_timeout_s, network_voxels, validation_case_seconds

    times = STEP_TIMES.get(str(cfg.get("preset", "autopet")), STEP_TIMES["autopet"])
    spacing = cfg["data"].get("spacing") if cfg["data"].get("spacing") != "auto" else None
    vox = [network_voxels(*_header_shape(f["pet"]), spacing, cfg["data"]["roi"]) for f in val_files[:64]]
    case_s = validation_case_seconds(times, float(np.mean(vox)) if vox else 0.0, len(cfg["clicks"]["val_steps"]))
    return dist_timeout_s(cfg["training"], case_s * math.ceil(len(val_files) / max(1, world)))


def _check_gpu_fit(cfg: Mapping[str, Any], world: int) -> None:
    """Warn when the configured ROI needs more memory than this rank's GPU has free (petclick.training.gpuplan):
    a bundle generated on another machine keeps its ROI, and an out-of-memory error later says less."""
    from petclick.training.gpuplan import plan_gpu

    try:
        gpu = plan_gpu(cfg, world)
    except InputError as exc:
        log.warning("GPU plan: %s", exc)
        return
    if gpu is not None and list(gpu.roi) != [int(r) for r in cfg["data"]["roi"]]:
        log.warning("GPU plan: %s; this run keeps data.roi %s and batch_size %s as configured", gpu.line(),
                    cfg["data"]["roi"], cfg["data"]["batch_size"])


def _lost_rank(exc: BaseException) -> bool:
    """True for the errors a collective raises when a peer rank died or timed out (gloo/NCCL backend errors,
    a closed connection, a timeout), not for a bug of this rank's own."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(w in text for w in (
        "gloo", "nccl", "connection closed", "connection reset", "broken pipe", "timed out", "timeout"))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def train_fold(cfg: Mapping[str, Any]) -> dict[int, float]:
    """Train every repeat of the config's fold (or `repeats: [..]` only); returns {repeat: best score}."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    timeout = None
    if world > 1:  # the collective timeout covers a rank's share of a validation
        files = fold_files(cfg["datalist"], cfg["dataroot"], int(cfg["fold"]))
        timeout = _timeout(cfg, _validation_files(cfg, files, 0, 1), world)
    ctx = init_distributed(cfg["training"].get("device"), timeout)
    threads = apply_threads(cfg["training"], int(cfg["data"]["num_workers"]))
    ckpt_path = Path(cfg["ckpt_path"])
    handler = _log_to_file(ckpt_path / "train.log") if ctx.is_main else None
    try:
        from petclick.training.data import fold_cache_plan, rank_share

        files = fold_files(cfg["datalist"], cfg["dataroot"], int(cfg["fold"]))
        val_all = _validation_files(cfg, files, 0, 1)
        val_files = rank_share(val_all, ctx.rank, ctx.world_size)
        if ctx.device.type == "cuda":
            _check_gpu_fit(cfg, ctx.world_size)
        log.info("fold %s: %d training / %d validation cases (%d validated), device %s, world size %d, %d CPU "
                 "threads (OMP_WAIT_POLICY %s)", cfg["fold"], len(files.train), len(files.val), len(val_all),
                 ctx.device, ctx.world_size, threads, os.environ.get("OMP_WAIT_POLICY", "unset"))
        shard = rank_share(files.train, ctx.rank, ctx.world_size)  # the size of this rank's shard (for the plan)
        plan = fold_cache_plan(cfg, shard, val_files, ctx.world_size)
        t0 = time.time()
        train_ds = train_dataset(cfg, files.train, cfg["data"]["roi"], ctx.rank, ctx.world_size, plan=plan)
        t1 = time.time()
        val_ds = val_dataset(cfg, val_files, plan)
        log.info("caches filled: training %.1f s, validation %.1f s (%d thread(s); planned %.0f MB at once)",
                 t1 - t0, time.time() - t1, plan.threads, plan.load_bytes / 2**20)
        repeats = [int(r) for r in cfg.get("repeats") or range(int(cfg.get("num_repeats", 1)))]
        cfg = fit_time_budget(cfg, ctx, train_ds, val_ds, repeats, ckpt_path)
        status = FoldStatus(ckpt_path, int(cfg["fold"]), {r: repeat_epochs(cfg["training"], r) for r in repeats},
                            iterations_per_epoch(cfg, len(train_ds))) if ctx.is_main else None
        scores: dict[int, float] = {}
        for r in repeats:
            t0 = time.time()
            scores[r] = RepeatTrainer(cfg, r, ckpt_path / f"repeat{r}", ctx, train_ds, val_ds, status).run()
            log.info("repeat %d done in %.1f s: best %.4f", r, time.time() - t0, scores[int(r)])
            if ctx.is_main:
                update_fold_progress(ckpt_path, scores)
        return scores
    except Exception as exc:
        if ctx.world_size > 1 and _lost_rank(exc):
            raise RuntimeError(
                f"rank {ctx.rank} of {ctx.world_size}: lost the other ranks in a collective operation ({_first_line(exc)}): "
                f"a rank died or stalled past the collective timeout (training.dist_timeout_s, "
                f"{'torch default' if timeout is None else f'{timeout:.0f} s'}). Relaunch every rank with the same "
                f"command: each repeat resumes from its last.pt under {ckpt_path}") from exc
        raise
    finally:
        if handler is not None:
            logging.getLogger("petclick").removeHandler(handler)
            handler.close()
        close_distributed(ctx)


def run(config_file: str | list | None = None, **override: Any) -> dict[int, float]:
    """Entry of a bundle's `scripts/train.py run --config_file=... [--key#sub=value ...]`."""
    return train_fold(load_bundle_config(config_file, override))


def cli() -> None:
    """Fire entry of a bundle's train.py: `run --config_file=... [--section#key=value ...]`."""
    import fire

    fire.Fire({"run": run})
