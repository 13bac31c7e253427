"""Inference of trained petclick models, on petclick.runtime.

- predictors.py: the Predictor protocol, the `suv-threshold` baseline and `get_predictor`
- predictor.py: EnsemblePredictor / load_model_predictor (streamed mean of sigmoids, optionally weighted per algorithm)
- weights.py: per-algorithm ensemble weights (validation, interleaving, per-member shares)
- bundle.py: a bundle's InferClass and `monai.bundle run inference`
"""
