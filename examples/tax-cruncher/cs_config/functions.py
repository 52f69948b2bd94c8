"""Tax-Cruncher for csflow: one filing unit's taxes under current law and a reform.

A C/S model module written on the real Tax-Calculator (``taxcalc``). Its
inputs keep Tax-Cruncher's own names, so inputs saved by C/S users still work:
the meta parameter ``year``; a "Tax Information" section describing the
household; a "Policy" section of Tax-Calculator parameters in ParamTools form,
e.g. ``{"STD": [{"MARS": "mjoint", "year": 2024, "value": 40000}]}``.
"""

from __future__ import annotations

import copy
import io

import paramtools
import taxcalc as tc

FIRST_YEAR = 2013
LAST_YEAR = 2035
DEFAULT_YEAR = 2024


class MetaParameters(paramtools.Parameters):
    array_first = True
    defaults = {
        "year": {
            "title": "Tax year",
            "description": "Year for which taxes are calculated.",
            "type": "int",
            "value": DEFAULT_YEAR,
            "validators": {"range": {"min": FIRST_YEAR, "max": LAST_YEAR}},
        }
    }


def _amount(title: str, description: str) -> dict:
    return {
        "title": title,
        "description": description,
        "type": "float",
        "value": 0.0,
        "validators": {"range": {"min": 0, "max": 9e99}},
    }


def _count(title: str, description: str, value: int = 0, maximum: int = 20) -> dict:
    return {
        "title": title,
        "description": description,
        "type": "int",
        "value": value,
        "validators": {"range": {"min": 0, "max": maximum}},
    }


MTR_OPTIONS = {
    "Taxpayer Earnings": "e00200p",
    "Spouse Earnings": "e00200s",
    "Qualified Dividends": "e00650",
    "Long Term Capital Gains": "p23250",
    "Don't Bother": None,
}


class TaxInformation(paramtools.Parameters):
    array_first = True
    defaults = {
        "mstat": {
            "title": "Marital status",
            "description": "Filing status of the unit: Single or Joint.",
            "type": "str",
            "value": "Single",
            "validators": {"choice": {"choices": ["Single", "Joint"]}},
        },
        "page": _count("Age of taxpayer", "Age of the primary taxpayer.", 40, 120),
        "sage": _count("Age of spouse", "Age of the spouse (0 if none).", 0, 120),
        "depx": _count("Number of dependents", "Dependents claimed on the return."),
        "dep13": _count("Dependents under 13", "Dependents under 13 (child care credit)."),
        "dep17": _count("Dependents under 17", "Dependents under 17 (child tax credit)."),
        "dep18": _count("Dependents under 18", "Dependents under 18."),
        "pwages": _amount("Wages, taxpayer", "Wage and salary income of the taxpayer."),
        "swages": _amount("Wages, spouse", "Wage and salary income of the spouse."),
        "dividends": _amount("Dividends", "Dividend income (treated as qualified)."),
        "intrec": _amount("Interest", "Taxable interest received."),
        "stcg": _amount("Short-term capital gains", "Net short-term capital gains."),
        "ltcg": _amount("Long-term capital gains", "Net long-term capital gains."),
        "otherprop": _amount("Other property income", "Rents, royalties and other property income."),
        "nonprop": _amount("Other non-property income", "Other income subject to tax."),
        "pensions": _amount("Taxable pensions", "Taxable pension and annuity income."),
        "gssi": _amount("Social Security benefits", "Gross Social Security benefits."),
        "ui": _amount("Unemployment compensation", "Unemployment insurance benefits."),
        "proptax": _amount("Property taxes", "Real estate taxes paid (itemizable)."),
        "otheritem": _amount("Other itemized deductions", "Other itemizable expenses."),
        "childcare": _amount("Child care expenses", "Child and dependent care expenses."),
        "mortgage": _amount("Mortgage interest", "Home mortgage interest paid."),
        "businc": _amount("Business income", "Qualified business income (Schedule C)."),
        "sstb": {
            "title": "Specified service business",
            "description": "Is the business income from a specified service trade or business?",
            "type": "bool",
            "value": False,
        },
        "w2paid": _amount("W-2 wages paid by business", "W-2 wages paid by the business."),
        "qualprop": _amount("Qualified property", "Unadjusted basis of qualified property."),
        "mtr_options": {
            "title": "Marginal tax rate with respect to",
            "description": "Income item for the marginal tax rates reported.",
            "type": "str",
            "value": "Taxpayer Earnings",
            "validators": {"choice": {"choices": list(MTR_OPTIONS)}},
        },
    }


def _year(meta_param_dict) -> int:
    meta = MetaParameters()
    meta.adjust(meta_param_dict or {})
    return int(meta.year)


def get_version():
    return f"taxcruncher-csflow 1.0 (taxcalc {tc.__version__})"


def get_inputs(meta_param_dict):
    year = _year(meta_param_dict)
    policy = tc.Policy()
    spec = policy.specification(meta_data=True, serializable=True, year=year)
    # Without Tax-Calculator's operators: extending values across years needs its
    # index rates, so a plain ParamTools Parameters could not load the section.
    schema = {k: v for k, v in policy.dump()["schema"].items() if k != "operators"}
    policy_defaults = {"schema": schema, **spec}
    return {
        "meta_parameters": MetaParameters().dump(),
        "model_parameters": {
            "Tax Information": TaxInformation().dump(),
            "Policy": policy_defaults,
        },
    }


def validate_inputs(meta_param_dict, adjustment, errors_warnings):
    sections = {"Tax Information": TaxInformation(), "Policy": tc.Policy()}
    for name, params in sections.items():
        params.adjust(adjustment.get(name) or {}, raise_errors=False)
        # ParamTools files unknown names under "schema"; show them under the section.
        errors_warnings[name]["errors"].update(params.errors)
    return {"errors_warnings": errors_warnings}


def _household(info: TaxInformation, year: int, wages_override=None):
    """One-row (or, with wages_override, one row per wage level) taxcalc Records."""
    import pandas as pd

    joint = info.mstat == "Joint"
    pwages = list(wages_override) if wages_override is not None else [float(info.pwages)]
    rows = len(pwages)
    swages = float(info.swages) if joint else 0.0
    data = {
        "RECID": list(range(1, rows + 1)),
        "FLPDYR": [year] * rows,
        "MARS": [2 if joint else 1] * rows,
        "XTOT": [1 + int(joint) + int(info.depx)] * rows,
        "age_head": [int(info.page)] * rows,
        "age_spouse": [int(info.sage) if joint else 0] * rows,
        "EIC": [min(int(info.depx), 3)] * rows,
        "n24": [int(info.dep17)] * rows,
        "nu13": [int(info.dep13)] * rows,
        "nu18": [int(info.dep18)] * rows,
        "e00200p": pwages,
        "e00200s": [swages] * rows,
        "e00200": [w + swages for w in pwages],
        "e00600": [float(info.dividends)] * rows,
        "e00650": [float(info.dividends)] * rows,
        "e00300": [float(info.intrec)] * rows,
        "p22250": [float(info.stcg)] * rows,
        "p23250": [float(info.ltcg)] * rows,
        "e02000": [float(info.otherprop) + float(info.nonprop)] * rows,
        "e01500": [float(info.pensions)] * rows,
        "e01700": [float(info.pensions)] * rows,
        "e02400": [float(info.gssi)] * rows,
        "e02300": [float(info.ui)] * rows,
        "e18500": [float(info.proptax)] * rows,
        "e19200": [float(info.mortgage)] * rows,
        "e20400": [float(info.otheritem)] * rows,
        "e32800": [float(info.childcare)] * rows,
        "e00900p": [float(info.businc)] * rows,
        "e00900": [float(info.businc)] * rows,
        "PT_SSTB_income": [int(bool(info.sstb))] * rows,
        "PT_binc_w2_wages": [float(info.w2paid)] * rows,
        "PT_ubia_property": [float(info.qualprop)] * rows,
    }
    return tc.Records(
        data=pd.DataFrame(data), start_year=year, gfactors=None, weights=None, adjust_ratios=None
    )


def _policies(policy_adjustment):
    """Baseline and reform policies, built once: ``Policy()`` is the slow part."""
    baseline = tc.Policy()
    reform = copy.deepcopy(baseline)
    if policy_adjustment:
        reform.adjust(policy_adjustment)
    return baseline, reform


def _calculators(info, policies, year, wages=None):
    records = _household(info, year, wages)
    calcs = []
    for policy in policies:
        calc = tc.Calculator(policy=policy, records=copy.deepcopy(records), verbose=False)
        if calc.current_year != year:
            calc.advance_to_year(year)
        calc.calc_all()
        calcs.append(calc)
    return calcs


BASIC_ROWS = [
    ("Individual Income Tax", "iitax"),
    ("Payroll Tax", "payrolltax"),
    ("Combined Payroll and Individual Income Tax", "combined"),
]
DETAIL_ROWS = [
    ("Adjusted Gross Income", "c00100"),
    ("Standard Deduction", "standard"),
    ("Itemized Deductions", "c04470"),
    ("Qualified Business Income Deduction", "qbided"),
    ("Taxable Income", "c04800"),
    ("Regular Tax", "taxbc"),
    ("Child Tax Credit", "c07220"),
    ("Earned Income Credit", "eitc"),
    ("Income Tax Before Credits", "c05800"),
    ("Individual Income Tax", "iitax"),
    ("Payroll Tax", "payrolltax"),
]


def _table(title, rows, baseline, reform, extra=()):
    import pandas as pd

    frame = pd.DataFrame(
        [
            (label, float(baseline.array(var)[0]), float(reform.array(var)[0]))
            for label, var in rows
        ]
        + list(extra),
        columns=["", "Baseline", "Reform"],
    )
    frame["Change"] = frame["Reform"] - frame["Baseline"]
    html = frame.to_html(index=False, float_format=lambda v: f"{v:,.2f}", border=0)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.2f")
    return (
        {"media_type": "table", "title": title, "data": html},
        {"media_type": "CSV", "title": title, "data": buffer.getvalue()},
    )


def _mtr_rows(info, baseline, reform):
    variable = MTR_OPTIONS.get(info.mtr_options)
    if variable is None:
        return []
    rows = []
    for label, index in (("Marginal Payroll Tax Rate", 0), ("Marginal Income Tax Rate", 1)):
        values = [float(calc.mtr(variable_str=variable, wrt_full_compensation=False)[index][0])
                  for calc in (baseline, reform)]
        rows.append((f"{label} ({info.mtr_options})", 100 * values[0], 100 * values[1]))
    return rows


def _chart(info, policies, year):
    from bokeh.embed import json_item
    from bokeh.plotting import figure

    top = max(200_000.0, 2 * float(info.pwages))
    wages = [top * i / 40 for i in range(41)]
    baseline, reform = _calculators(info, policies, year, wages)
    fig = figure(
        title=f"Income tax by taxpayer wages, {year}",
        x_axis_label="Taxpayer wages ($)",
        y_axis_label="Individual income tax ($)",
        width=700,
        height=400,
    )
    fig.line(wages, list(baseline.array("iitax")), legend_label="Baseline", line_width=2)
    fig.line(wages, list(reform.array("iitax")), legend_label="Reform", line_width=2,
             line_dash="dashed", color="firebrick")
    fig.legend.location = "top_left"
    return {"media_type": "bokeh", "title": "Income Tax Across Wages", "data": json_item(fig)}


def run_model(meta_param_dict, adjustment):
    year = _year(meta_param_dict)
    info = TaxInformation()
    info.adjust(adjustment.get("Tax Information") or {})
    policies = _policies(adjustment.get("Policy") or {})
    baseline, reform = _calculators(info, policies, year)
    basic_table, basic_csv = _table(
        "Basic Liabilities", BASIC_ROWS, baseline, reform, _mtr_rows(info, baseline, reform)
    )
    detail_table, detail_csv = _table("Calculation of Liabilities", DETAIL_ROWS, baseline, reform)
    return {
        "renderable": [basic_table, detail_table, _chart(info, policies, year)],
        "downloadable": [basic_csv, detail_csv],
    }
