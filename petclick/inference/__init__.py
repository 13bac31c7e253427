"""Inference of trained petclick models.

- preprocess.py: the deterministic preprocessing shared with training and validation
- clickinput.py: clicks (PET voxel indices) -> network input channels
- window.py: SlidingWindowInfererAdapt, AMP on GPU, mirror TTA; cpu.py: fast CPU Conv3d
- grid.py: predictions back onto the PET grid (same shape and affine)
- checkpoint.py: self-describing checkpoints, finding them under folders
- predictor.py: EnsemblePredictor / load_model_predictor (streamed mean of sigmoids, optionally weighted per algorithm)
- bundle.py: a bundle's InferClass and `monai.bundle run inference`
"""
