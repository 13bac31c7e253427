"""MONAI Auto3DSeg glue: the BundleAlgo every template uses and its config filling (algo.py), the
PET data analysis (analysis.py), the dints template's search-stage algo (dints_algo.py) and
AutoRunner's ensemble weighted per algorithm (ensemble.py). Sits on training and inference."""
