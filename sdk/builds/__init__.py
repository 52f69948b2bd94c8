"""Building a model version: its uv environment (the embedded engine) and its image
(base image plus one layer, pushed with crane, on a cluster)."""
