"""The one training loop of every petclick bundle: repeats (seeds) of one fold, validation with the
official metrics, best/last checkpoints, resume, progress.yaml, TensorBoard, DDP.

Layout under `ckpt_path` (`<bundle>/model`):
    train.log                      this process's log (AutoRunner shows a script's output only on failure)
    progress.yaml                  fold score = mean of the repeats' best scores (Auto3DSeg get_score)
    repeat<r>/model.pt             best validation checkpoint (self-describing; what inference uses)
    repeat<r>/last.pt              end-of-epoch resume state (a kill loses at most the running epoch)
    repeat<r>/progress.yaml        one entry per validation
    repeat<r>/tb/                  TensorBoard: loss, learning rate, validation metrics
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from monai.optimizers import WarmupCosineSchedule
from monai.utils import set_determinism

from petclick.runtime.checkpoint import BEST_NAME, LAST_NAME, save_checkpoint
from petclick.runtime.clickinput import click_channels
from petclick.runtime.preprocess import preprocess_config
from petclick.runtime.window import autocast, infer_config
from petclick.config.bundle import iterations_per_epoch, load_bundle_config
from petclick.training.data import fold_files, train_dataset, train_loader, val_dataset
from petclick.training.distributed import DistContext, close_distributed, init_distributed, unwrap
from petclick.training.loss import build_loss
from petclick.training.progress import PROGRESS, read_progress, update_fold_progress, write_progress
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
    return {"network": {"name": name, "kwargs": resolve_network_kwargs(name, cfg["network"].get("kwargs") or {})},
            "in_channels": IMAGE_CHANNELS + click_channels(clicks.get("encoding")), "out_channels": 1,
            "preprocess": pre, "infer": infer_config(cfg.get("infer"), cfg["data"]["roi"]),
            "algo": cfg.get("algo", name), "fold": int(cfg.get("fold", 0))}


def _build_model(cfg: Mapping[str, Any], desc: Mapping[str, Any]) -> torch.nn.Module:
    from petclick.networks.factory import build_network

    model = build_network(desc["network"]["name"], desc["in_channels"], 1, **desc["network"]["kwargs"])
    init = cfg["network"].get("init_checkpoint")
    if init:  # fine-tune from a checkpoint with fewer input channels (click channels start at zero)
        from petclick.networks import expand_input_channels

        expanded = expand_input_channels(model, init, int(cfg["network"].get("image_channels", IMAGE_CHANNELS)))
        log.info("initialised from %s (input channels expanded in %s)", init, expanded or "none")
        if cfg["network"].get("output_prior") is not None:
            log.warning("network.output_prior ignored: the weights come from init_checkpoint %s", init)
    elif cfg["network"].get("output_prior") is not None:
        from petclick.networks.output_prior import init_output_prior

        heads = init_output_prior(model, cfg["network"]["output_prior"])
        log.info("output bias initialised to logit(%s) in %s", cfg["network"]["output_prior"], ", ".join(heads))
    return model


class RepeatTrainer:
    """Trains one repeat (seed) of a fold; resumable from `<out_dir>/last.pt`."""

    def __init__(self, cfg: Mapping[str, Any], repeat: int, out_dir: Path, ctx: DistContext, train_ds, val_ds):
        self.cfg, self.repeat, self.out_dir, self.ctx = cfg, int(repeat), Path(out_dir), ctx
        self.train_ds, self.val_ds = train_ds, val_ds
        self.desc = describe(cfg)
        tr = cfg["training"]
        self.epochs = int(tr["num_epochs"])
        self.iters = iterations_per_epoch(cfg, len(train_ds))
        self.val_every = max(1, int(tr.get("val_every", 1)))
        self.seed = int(tr.get("seed", 0)) + 1000 * self.repeat
        set_determinism(self.seed)
        self.model = _build_model(cfg, self.desc).to(ctx.device)
        self.net = ctx.wrap(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=float(tr["lr"]), weight_decay=float(tr["weight_decay"]))
        total = self.epochs * self.iters
        self.sched = WarmupCosineSchedule(self.opt, warmup_steps=int(tr.get("warmup_epochs", 0)) * self.iters,
                                          t_total=max(1, total), warmup_multiplier=0.1)
        self.amp = bool(tr.get("amp", False)) and ctx.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loss_fn = build_loss(tr)
        self.grad_clip = tr.get("grad_clip")
        self.start_epoch, self.best, self.finished = 0, -math.inf, False
        self.losses: list[float] = []  # mean training loss of each epoch run by this object
        self.progress = read_progress(self.out_dir / PROGRESS)
        self._resume()

    # -- state -------------------------------------------------------------------------------
    def _resume(self) -> None:
        last = self.out_dir / LAST_NAME
        if not last.is_file():
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

    def _payload(self, epoch: int, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {**self.desc, "state_dict": unwrap(self.model).state_dict(), "repeat": self.repeat, "epoch": epoch,
                "best_metric": float(self.best), "metrics": dict(metrics or {}), "seed": self.seed}

    def _save_last(self, epoch: int, finished: bool) -> None:
        payload = self._payload(epoch)
        payload.update(optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict(),
                       scaler=self.scaler.state_dict() if self.amp else {}, finished=finished)
        save_checkpoint(self.out_dir / LAST_NAME, payload)

    # -- loop --------------------------------------------------------------------------------
    def _epoch(self, epoch: int) -> float:
        self.net.train()
        loader = train_loader(self.cfg, self.train_ds, self.seed * 7919 + epoch)
        losses, it = [], 0
        while it < self.iters:
            for batch in loader:
                x = batch["image"].to(self.ctx.device, non_blocking=True)
                y = batch["label"].to(self.ctx.device, non_blocking=True)
                with autocast(self.ctx.device, self.amp):
                    loss = self.loss_fn(self.net(x), y)
                self.opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if self.grad_clip:
                    self.scaler.unscale_(self.opt)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.grad_clip))
                self.scaler.step(self.opt)
                self.scaler.update()
                self.sched.step()
                losses.append(float(loss.detach()))
                it += 1
                if it >= self.iters:
                    break
        return float(np.mean(losses))

    def _validate(self, epoch: int, writer) -> None:
        clicks = self.cfg["clicks"]
        steps = [int(s) for s in clicks.get("val_steps", (0, 5, 10))]
        t0 = time.time()
        m = validate(unwrap(self.model), self.val_ds, self.desc["infer"], clicks.get("encoding"), steps, self.ctx.device)
        improved = m["score"] > self.best
        if improved:
            self.best = m["score"]
            save_checkpoint(self.out_dir / BEST_NAME, self._payload(epoch, m))
        entry = {"epoch": epoch, "avg_dice_score": float(m["score"]), "best_avg_dice_score": float(self.best),
                 "dice": _num(m["dice"]), "fpv_ml": _num(m["fpv_ml"]), "fnv_ml": _num(m["fnv_ml"]),
                 "per_step_dice": {s: _num(v["dice"]) for s, v in m["per_step"].items()},
                 "time_s": round(time.time() - t0, 2)}
        self.progress.append(entry)
        write_progress(self.out_dir / PROGRESS, self.progress)
        log.info("repeat %d epoch %d: validation score %.4f (dice %s, fpv %.2f mL) best %.4f%s", self.repeat, epoch,
                 m["score"], f"{m['dice']:.4f}", m["fpv_ml"], self.best, " (saved)" if improved else "")
        if writer is not None:
            writer.add_scalar("val/score", m["score"], epoch)
            for s, v in m["per_step"].items():
                for k, val in v.items():
                    if not math.isnan(val):
                        writer.add_scalar(f"val/{k}_step{s}", val, epoch)

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
            log.info("repeat %d epoch %d/%d: loss %.4f lr %.2e (%.1f s)", self.repeat, done, self.epochs, loss,
                     self.opt.param_groups[0]["lr"], time.time() - t0)
            if writer is not None:
                writer.add_scalar("train/loss", loss, done)
                writer.add_scalar("train/lr", self.opt.param_groups[0]["lr"], done)
            if done % self.val_every == 0 or done == self.epochs:
                if self.ctx.is_main:
                    self._validate(done, writer)
                self.ctx.barrier()
            if self.ctx.is_main:
                self._save_last(done, finished=done == self.epochs)
        if writer is not None:
            writer.close()
        return self.best


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


def train_fold(cfg: Mapping[str, Any]) -> dict[int, float]:
    """Train every repeat of the config's fold (or `repeats: [..]` only); returns {repeat: best score}."""
    ctx = init_distributed(cfg["training"].get("device"))
    ckpt_path = Path(cfg["ckpt_path"])
    handler = _log_to_file(ckpt_path / "train.log") if ctx.is_main else None
    try:
        files = fold_files(cfg["datalist"], cfg["dataroot"], int(cfg["fold"]))
        log.info("fold %s: %d training / %d validation cases, device %s, world size %d", cfg["fold"], len(files.train),
                 len(files.val), ctx.device, ctx.world_size)
        train_ds = train_dataset(cfg, files.train, cfg["data"]["roi"], ctx.rank, ctx.world_size)
        val_ds = val_dataset(cfg, files.val) if ctx.is_main else None
        repeats = cfg.get("repeats") or list(range(int(cfg.get("num_repeats", 1))))
        scores: dict[int, float] = {}
        for r in repeats:
            t0 = time.time()
            scores[int(r)] = RepeatTrainer(cfg, int(r), ckpt_path / f"repeat{int(r)}", ctx, train_ds, val_ds).run()
            log.info("repeat %d done in %.1f s: best %.4f", r, time.time() - t0, scores[int(r)])
            if ctx.is_main:
                update_fold_progress(ckpt_path, scores)
        return scores
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
