"""The model's own package (installed from the repository's root)."""

LABEL = "tiny core"
