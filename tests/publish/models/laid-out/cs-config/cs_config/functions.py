"""The C/S functions, from the model's package (as Tax-Cruncher's cs_config does)."""

from tiny_core.model import get_inputs, get_version, run_model, validate_inputs

__all__ = ["get_inputs", "get_version", "run_model", "validate_inputs"]
