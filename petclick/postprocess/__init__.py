"""Post-processing of the ensemble's probability map on the PET grid: one module per rule plus a pipeline.

- small.py: remove components smaller than V mL
- suv_filter.py: drop components whose SUVmax is under the tracer's level (FDG 1.5, PSMA 1.0)
- tracer.py: FDG/PSMA from the coronal PET MIP when the metadata does not say
- merge.py: join components closer than d mm with their convex bridge
- recovery.py: add hot components of the sub-threshold probability map (false-negative recovery)
- clicks.py: click consistency (tumour clicks inside the output, background clicks outside)
- pipeline.py: `postprocess(prob_or_mask, case, clicks, tracer, config) -> mask`, configured by a dict/YAML
- predictor.py: `PostprocessedPredictor(predictor, config)`: a Predictor whose output is post-processed
- transforms.py: MONAI `PostProcess` / `PostProcessd` (imported from there: it pulls in MONAI)
"""

from petclick.postprocess.clicks import enforce_clicks
from petclick.postprocess.merge import merge_close_components
from petclick.postprocess.pipeline import DEFAULT_CONFIG, RULES, describe_config, make_config, postprocess, resolve_tracer
from petclick.postprocess.predictor import PostprocessedPredictor
from petclick.postprocess.recovery import recover_false_negatives
from petclick.postprocess.small import remove_small_components
from petclick.postprocess.suv_filter import TRACER_SUV_MIN, suv_filter
from petclick.postprocess.tracer import TracerGuess, classify_tracer

__all__ = ["DEFAULT_CONFIG", "PostprocessedPredictor", "RULES", "TRACER_SUV_MIN", "TracerGuess", "classify_tracer", "describe_config", "enforce_clicks",
           "make_config", "merge_close_components", "postprocess", "recover_false_negatives",
           "remove_small_components", "resolve_tracer", "suv_filter"]
