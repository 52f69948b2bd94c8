"""Where the tests' fixtures live (importable from any test module)."""

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# Argo v4.0.5's CRDs and schema.json, data the tests check against (csflow itself
# ships no copy): $CSFLOW_ARGO_SCHEMA_DIR, else the folder beside the checkout.
ARGO_SCHEMA = Path(
    os.environ.get("CSFLOW_ARGO_SCHEMA_DIR") or REPO.parent / "shared" / "argo-schema" / "v4.0.5"
)
TOY_CONFIGS = TESTS / "models" / "config"
TAX_INPUTS = REPO / "examples" / "tax-cruncher" / "inputs.json"
