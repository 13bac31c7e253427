"""MONAI Label's app folder for petclick (`--app` of `monailabel start_server`): thin wiring.

MONAI Label loads the MONAILabelApp subclass of this file; everything lives in
petclick.workflows.label.labelapp. `petclick label` starts the server with this folder as its app.
"""

from petclick.workflows.label.labelapp import PetclickLabelApp

__all__ = ["PetclickLabelApp"]
