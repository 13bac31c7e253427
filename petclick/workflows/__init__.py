"""Jobs a user runs, each composed from the layers below: the demo, interactive evaluation,
prediction (predict/), the grand-challenge container (gc.py) and hyper-parameter search (hpo/).
The `petclick` commands (petclick.commands) are thin argument parsing over these."""
