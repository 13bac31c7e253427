"""Training curricula by name, and the MONAI transforms that apply one to every training patch.

`clicks.curriculum.kind` chooses the curriculum (the CURRICULA registry, `curriculum_from_config`):
`clicks` (the default, petclick.clicks.click_curriculum.ClickCurriculum) or `scribbles` (autoPET V
corrective scribbles on the patch, petclick.clicks.scribble_curriculum, with its own keys).
`SimulateTrainingClicksd` applies a curriculum to each training patch after augmentation and writes
data["clicks"] = {"tumor": (N, 3) float64, "background": (M, 3) float64} in the patch's voxel
coordinates; `BackgroundThresholdd` computes the whole case's background threshold before cropping.

Importing this module imports the scribble curriculum, and so scikit-image and networkx (about
0.3 s); code that needs only click curricula imports petclick.clicks.click_curriculum.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import numpy as np
from monai.transforms import MapTransform, Randomizable, Transform

from petclick.clicks.click_curriculum import SOURCE, ClickCurriculum
from petclick.clicks.scribble_curriculum import ScribbleCurriculum
from petclick.clicks.simulate import background_threshold
from petclick.config.presets import MAX_CLICKS
from petclick.core.registry import Registry


#: Training curricula by YAML name (`clicks.curriculum.kind`): builders (config, max_clicks) -> curriculum.
CURRICULA: Registry = Registry("click curriculum")
CURRICULA.register("clicks", ClickCurriculum.from_config)
CURRICULA.register("scribbles", ScribbleCurriculum.from_config)


def curriculum_from_config(config: Mapping[str, Any] | Any = None, max_clicks: int = MAX_CLICKS):
    """The curriculum a `clicks.curriculum` mapping names by `kind` (default clicks); a built
    curriculum passes through. Every curriculum has sample_clicks(label, pet, rng, threshold=...),
    `background` (patch | case) and `capacity` (points of a kind at most)."""
    if config is not None and not isinstance(config, Mapping):
        return config
    config = dict(config or {})
    return CURRICULA.get(config.get("kind", "clicks"), SOURCE)(config, max_clicks)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class SimulateTrainingClicks(Randomizable, Transform):
    """Array version: `transform(label, pet) -> {"tumor": (N, 3), "background": (M, 3)}` float64 voxel
    coordinates, for a label and a PET patch of one spatial shape, each (X, Y, Z) or (1, X, Y, Z),
    numpy or torch (CPU or GPU). Deterministic after set_random_state."""

    def __init__(self, curriculum: Mapping[str, Any] | ClickCurriculum | None = None, max_clicks: int = MAX_CLICKS):
        self.curriculum = curriculum_from_config(curriculum, max_clicks)
        self._rng = np.random.default_rng(0)

    def randomize(self, data: Any = None) -> None:
        self._rng = np.random.default_rng(int(self.R.randint(0, 2**31 - 1)))

    def __call__(self, label, pet) -> dict[str, np.ndarray]:  # type: ignore[override]
        self.randomize()
        label, pet = _to_numpy(label), _to_numpy(pet)
        label = label[0] if label.ndim == 4 else label
        pet = pet[0] if pet.ndim == 4 and pet.shape[0] == 1 else pet
        return self.curriculum.sample_clicks(label, pet, self._rng)


class SimulateTrainingClicksd(Randomizable, MapTransform):
    """Draw clicks for a training patch by a curriculum and store them as data[clicks_key].

    label_key: the patch label (C=1, X, Y, Z) or (X, Y, Z), torch or numpy; pet_key: the key holding
    the PET, or an int = the PET channel of data["image"]; pet_channel: the PET's channel in
    data[pet_key] when that array has a channel axis (CT, PET, ...); curriculum: a config mapping
    or ClickCurriculum; max_clicks: the count distribution's upper end; threshold_key: where
    BackgroundThresholdd left the whole case's threshold (used when the curriculum's `background`
    is `case`; missing there -> KeyError). Apply after the spatial augmentation so clicks land
    where the final patch's label is; set_random_state makes it deterministic.
    """

    def __init__(self, label_key: str = "label", pet_key: str | int = "image", pet_channel: int = 1,
                 clicks_key: str = "clicks", curriculum: Mapping[str, Any] | ClickCurriculum | None = None,
                 max_clicks: int = MAX_CLICKS, allow_missing_keys: bool = False,
                 threshold_key: str = "pet_threshold"):
        if isinstance(pet_key, (int, np.integer)) and not isinstance(pet_key, bool):
            pet_key, pet_channel = "image", int(pet_key)
        MapTransform.__init__(self, [label_key, pet_key], allow_missing_keys)
        self.label_key, self.pet_key, self.pet_channel, self.clicks_key = label_key, pet_key, int(pet_channel), clicks_key
        self.curriculum = curriculum_from_config(curriculum, max_clicks)
        self.threshold_key = threshold_key
        self._rng = np.random.default_rng(0)

    def randomize(self, data: Any = None) -> None:
        self._rng = np.random.default_rng(int(self.R.randint(0, 2**31 - 1)))

    def _pet(self, data: Mapping[Hashable, Any], shape: tuple[int, ...]) -> np.ndarray:
        pet = _to_numpy(data[self.pet_key])
        if pet.ndim == 4:
            if not 0 <= self.pet_channel < pet.shape[0]:
                raise ValueError(f"PET channel {self.pet_channel} missing: '{self.pet_key}' has {pet.shape[0]} channels")
            pet = pet[self.pet_channel]
        if pet.shape != shape:
            raise ValueError(f"PET {pet.shape} and label {shape} patches differ in shape")
        return pet

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if self.label_key not in d and self.allow_missing_keys:
            return d
        label = _to_numpy(d[self.label_key])
        if label.ndim == 4:
            label = label[0]
        threshold = None
        if self.curriculum.background == "case":
            if self.threshold_key not in d:
                raise KeyError(f"curriculum background 'case' needs data[{self.threshold_key!r}] (BackgroundThresholdd)")
            threshold = float(np.asarray(_to_numpy(d[self.threshold_key])).reshape(-1)[0])
        d[self.clicks_key] = self.curriculum.sample_clicks(label, self._pet(d, label.shape), self._rng, threshold=threshold)
        return d


class BackgroundThresholdd(MapTransform):
    """data[threshold_key] = the official background threshold of the whole case: the 99.75th
    percentile of non-lesion PET (petclick.clicks.simulate.background_threshold), from the PET
    channel `pet_channel` of data[image_key] and data[label_key]. Put it before the random crop,
    so every patch's background clicks use the case's threshold, as the official simulator does."""

    def __init__(self, image_key: str = "image", label_key: str = "label", pet_channel: int = 1,
                 threshold_key: str = "pet_threshold"):
        MapTransform.__init__(self, [image_key, label_key])
        self.image_key, self.label_key, self.pet_channel, self.threshold_key = image_key, label_key, int(pet_channel), threshold_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        pet = _to_numpy(d[self.image_key])[self.pet_channel].astype(np.float32)
        label = _to_numpy(d[self.label_key])
        label = label[0] if label.ndim == 4 else label
        d[self.threshold_key] = float(background_threshold(pet, label > 0.5))
        return d
