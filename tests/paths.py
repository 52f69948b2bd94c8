"""Where the tests' fixtures live (importable from any test module)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TOY_CONFIGS = TESTS / "models" / "config"
TAX_INPUTS = REPO / "examples" / "tax-cruncher" / "inputs.json"
