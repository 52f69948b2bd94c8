"""The real example: Tax-Cruncher on Tax-Calculator, end to end."""

from __future__ import annotations

import csv
import io

import pytest

pytestmark = pytest.mark.slow


def _table(outputs, title):
    data = next(o["data"] for o in outputs["downloadable"] if o["title"] == title)
    return {row[0]: row[1:] for row in csv.reader(io.StringIO(data))}


def test_married_couple_anchor(tax, tax_inputs):
    """Checked against Tax-Calculator itself: 8,032 under current law, 6,736 with
    the joint standard deduction raised to 40,000."""
    run = tax.simulate("PSLmodels/Tax-Cruncher", tax_inputs)
    assert run.status == "SUCCESS", run.reason
    outputs = tax.results(run.id)
    basic = _table(outputs, "Basic Liabilities")
    assert basic["Individual Income Tax"][:2] == ["8032.00", "6736.00"]
    assert basic["Payroll Tax"][:2] == ["15300.00", "15300.00"]
    detail = _table(outputs, "Calculation of Liabilities")
    assert detail["Taxable Income"][:2] == ["70800.00", "60000.00"]
    kinds = [(o["media_type"], o["title"]) for o in outputs["renderable"]]
    assert kinds == [
        ("table", "Basic Liabilities"),
        ("table", "Calculation of Liabilities"),
        ("bokeh", "Income Tax Across Wages"),
    ]
    assert "taxcalc 6.8.5" in run.model_version


def test_flat_meta_param_shape_gives_the_same_answer(tax, tax_inputs):
    tax_inputs["meta_param_dict"] = {"year": 2024}
    run = tax.simulate("PSLmodels/Tax-Cruncher", tax_inputs)
    assert run.status == "SUCCESS", run.reason
    assert _table(tax.results(run.id), "Basic Liabilities")["Individual Income Tax"][0] == "8032.00"


def test_out_of_range_year_is_invalid_not_a_crash(tax, tax_inputs):
    tax_inputs["meta_param_dict"] = {"year": 1999}
    run = tax.simulate("PSLmodels/Tax-Cruncher", tax_inputs)
    assert run.status == "INVALID"
    assert "meta_parameters.year" in run.errors_warnings["API"]["errors"]


def test_bad_adjustment_reports_errors_per_section(tax):
    bad = {
        "meta_param_dict": {"year": 2024},
        "adjustment": {
            "Tax Information": {"mstat": [{"value": "Married"}]},
            "Policy": {"STD": [{"MARS": "mjoint", "year": 2024, "value": -1}]},
        },
    }
    run = tax.simulate("PSLmodels/Tax-Cruncher", bad)
    assert run.status == "INVALID"
    assert run.errors_warnings["Tax Information"]["errors"]["mstat"]
    assert "STD" in run.errors_warnings["Policy"]["errors"]
