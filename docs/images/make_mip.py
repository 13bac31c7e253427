"""Make docs/images/phantom_mip.png, the README's picture, with petclick's own code: one FDG phantom
(petclick.phantoms), the `suv-threshold` baseline through the official click protocol on an
interactive session that post-processes as `petclick predict` ships masks, and the report's MIP
picture (petclick.metrics.plots.save_case_mip) of steps 0 and 10 with their clicks.

    python docs/images/make_mip.py            # from the repository root, a few seconds on a CPU
"""

from __future__ import annotations

from pathlib import Path

from petclick.inference.predictors import SuvThresholdPredictor
from petclick.inference.protocol import run_protocol
from petclick.io.images import CaseVolumes, Volume
from petclick.metrics.plots import save_case_mip
from petclick.phantoms.case import generate_case
from petclick.postprocess import make_config

OUT = Path(__file__).with_name("phantom_mip.png")
CASE_ID, SEED, SHAPE = "fdg_readme_2026", 11, (96, 96, 128)


def main() -> Path:
    ph = generate_case(CASE_ID, SEED, shape=SHAPE, tracer="fdg")
    case = CaseVolumes(Volume(ph.ct, ph.affine), Volume(ph.pet, ph.affine), Volume(ph.label, ph.affine))
    masks, used = {}, {}

    def keep(step, mask, clicks):
        if step in (0, 10):
            masks[f"step {step}"], used[f"step {step}"] = mask, clicks.to_dict()

    rows = run_protocol(SuvThresholdPredictor(), case, ph.clicks, case_id=CASE_ID, tracer="fdg", on_step=keep,
                        session={"postprocess": make_config(), "tracer": "fdg"})
    title = (f"phantom {CASE_ID}: suv-threshold, post-processed; Dice {rows[0]['dice']:.2f} at step 0, "
             f"{rows[10]['dice']:.2f} at step 10")
    return save_case_mip(OUT, ph.pet, ph.affine, ph.label, masks, clicks=used, tracer="fdg", title=title)


if __name__ == "__main__":
    print(main())
