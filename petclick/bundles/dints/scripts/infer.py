"""Auto3DSeg's InferClass of this bundle: petclick.inference.bundle.BundleInferer."""

from petclick.inference.bundle import BundleInferer as InferClass

__all__ = ["InferClass"]
