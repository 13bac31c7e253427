"""The runtime that training and inference share: deterministic preprocessing, click input
channels, sliding-window execution, predictions back on the PET grid and self-describing checkpoints.

- preprocess.py: the deterministic preprocessing of training, validation and inference
- clickinput.py: clicks (PET voxel indices) -> network input channels
- window.py: SlidingWindowInfererAdapt, AMP on GPU, mirror TTA; cpu.py: fast CPU Conv3d
- grid.py: predictions back onto the PET grid (same shape and affine)
- checkpoint.py: self-describing checkpoints, finding them under folders
"""
