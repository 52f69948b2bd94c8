"""The model registry: versions, tags and their history, and the inputs cache
(under $CSFLOW_HOME, or on GCS with generation compare-and-swap)."""
