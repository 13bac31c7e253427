"""The dints template's BundleAlgo: with `search.enabled`, train() first runs the bundle's
scripts/search.py (petclick.training.dints_search, a subprocess like training), once."""

from __future__ import annotations

import subprocess
from pathlib import Path

from petclick.auto3dseg.algo import PetclickBundleAlgo
from petclick.training.dints_search import search_pending


class DintsSearchAlgo(PetclickBundleAlgo):
    """petclick's BundleAlgo with the optional search stage: train() first runs
    `scripts/search.py run` (same interpreter prefix and config files as training) when
    `search.enabled` is true and the code file is missing, then trains as usual."""

    def train(self, train_params: None | dict = None, device_setting: None | dict = None):
        if search_pending(self.output_path):
            self._search(device_setting)
        return super().train(train_params, device_setting)

    def _search(self, device_setting: None | dict) -> None:
        """Run scripts/search.py in one process (the first visible GPU, if any)."""
        import os

        from monai.apps.auto3dseg.bundle_gen import _prepare_cmd_default

        settings = {**self.device_setting, **(device_setting or {})}
        configs = sorted(str(p) for p in Path(self.output_path, "configs").iterdir() if p.suffix in (".yaml", ".json"))
        cmd = _prepare_cmd_default(f"{Path(self.output_path, 'scripts', 'search.py')} run",
                                   cmd_prefix=str(settings.get("CMD_PREFIX") or ""), config_file=configs)
        env = os.environ.copy()
        visible = str(settings.get("CUDA_VISIBLE_DEVICES") or "")
        if visible:
            env["CUDA_VISIBLE_DEVICES"] = visible.split(",")[0]
        done = subprocess.run(cmd.split(), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"dints architecture search failed ({cmd}):\n{done.stderr[-4000:]}")
