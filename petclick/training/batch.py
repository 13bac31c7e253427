"""The training batch stage (YAML `data.batch_transforms: true`): intensity augmentation and click
encoding run on the collated batch, on the training device, instead of per patch in the loader.

Why: at the GPU check's scale (8 patches of 96x96x128 per step) Gaussian smoothing, noise and the
two click channels cost the loader workers about half of their CPU time per patch, and the
collated batch is twice as large with the click channels in it. On the device they cost little.

Both paths simulate the clicks after the spatial and before the intensity augmentation, so for
the same seed they give the same clicks and, without intensity augmentation, the same network
input (tests/test_training_batch.py). The intensity augmentation draws its own numbers on the
batch: the same transforms and distributions, another random stream (the noise is
RandGaussianNoiseTorch: MONAI's distribution drawn by torch on the device).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import RandGaussianNoise, Randomizable, RandomizableTransform

from petclick.clicks.encoding import EncodeClicks
from petclick.clicks.packing import unpack_clicks


class RandGaussianNoiseTorch(RandGaussianNoise):
    """MONAI's RandGaussianNoise (probability, std ~ U(0, std) when sample_std, N(mean, std) per voxel)
    with the noise drawn by torch on the image's device: no host array and no host-to-device copy.
    Seeded by the transform's own random state (set_random_state), so it is reproducible, but its
    stream differs from RandGaussianNoise's: the same distribution, not the same numbers."""

    def randomize(self, img: Any, mean: float | None = None) -> None:
        RandomizableTransform.randomize(self, None)
        if not self._do_transform:
            return None
        std = self.R.uniform(0, self.std) if self.sample_std else self.std
        device = img.device if isinstance(img, torch.Tensor) else torch.device("cpu")
        gen = torch.Generator(device=device)
        gen.manual_seed(int(self.R.randint(0, 2**31 - 1)))
        centre = self.mean if mean is None else mean
        self.noise = torch.randn(tuple(img.shape), generator=gen, device=device, dtype=torch.float32) * std + centre


class BatchStage(Randomizable):
    """Per-sample transforms of a collated batch on its device: `transforms` (array transforms on one
    (C, X, Y, Z) image, e.g. intensity augmentation) then `encoder` (the click channels of the
    sample's packed clicks). Returns the batch with `image` replaced by the encoded images."""

    def __init__(self, transforms: Sequence[Any], encoder: EncodeClicks, image_key: str = "image",
                 clicks_key: str = "clicks"):
        self.transforms = list(transforms)
        self.encoder, self.image_key, self.clicks_key = encoder, image_key, clicks_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> "BatchStage":
        super().set_random_state(seed, state)
        for t in self.transforms:
            if isinstance(t, Randomizable):
                t.set_random_state(int(self.R.randint(0, 2**31 - 1)))
        return self

    def randomize(self, data: Any = None) -> None:  # the member transforms draw their own numbers
        return None

    def __call__(self, batch: Mapping[str, Any], device: torch.device | str | None = None) -> dict[str, Any]:
        out = dict(batch)
        images = batch[self.image_key]
        images = images.as_tensor() if hasattr(images, "as_tensor") else torch.as_tensor(images)
        if device is not None:
            images = images.to(device, non_blocking=True)
        clicks = torch.as_tensor(batch[self.clicks_key]).to(images.device)
        encoded = []
        for b in range(images.shape[0]):
            img = images[b]
            for t in self.transforms:
                img = t(img)
            img = img.as_tensor() if hasattr(img, "as_tensor") else img
            encoded.append(self.encoder(img.float(), unpack_clicks(clicks[b])))
        out[self.image_key] = torch.stack(encoded)
        out.pop(self.clicks_key)
        return out
