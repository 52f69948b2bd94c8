import base64

import pytest
from pydantic import ValidationError

from csflow.sdk.core.contract import (
    JobInputs,
    ModelResult,
    Output,
    flat_meta_param_dict,
    output_filenames,
)

PNG_DATA = base64.b64encode(b"%PDF-1.4").decode()


def test_both_meta_param_shapes_become_the_paramtools_spec():
    flat = JobInputs.model_validate({"meta_param_dict": {"year": 2024}, "adjustment": {}})
    spec = JobInputs.model_validate(
        {"meta_param_dict": {"year": [{"value": 2024}]}, "adjustment": {}}
    )
    assert flat.meta_param_dict == spec.meta_param_dict == {"year": [{"value": 2024}]}
    assert flat_meta_param_dict(spec.meta_param_dict) == {"year": 2024}


def test_inputs_reject_unknown_keys_and_bad_shapes():
    with pytest.raises(ValidationError):
        JobInputs.model_validate({"meta_param_dict": {}, "adjustment": {}, "extra": 1})
    with pytest.raises(ValidationError):
        JobInputs.model_validate({"adjustment": {"Policy": [1, 2]}})
    with pytest.raises(ValidationError):
        JobInputs.model_validate({"meta_param_dict": {"year": {"nested": 1}}})


def test_binary_outputs_travel_as_base64():
    output = Output(media_type="PNG", title="p", data=b"\x89PNG\x00")
    assert output.data == base64.b64encode(b"\x89PNG\x00").decode()
    assert output.content() == b"\x89PNG\x00"
    with pytest.raises(ValidationError):
        Output(media_type="PDF", title="p", data="not base64!!")


def test_text_and_bokeh_outputs_are_checked():
    with pytest.raises(ValidationError):
        Output(media_type="CSV", title="c", data=b"bytes")
    with pytest.raises(ValidationError):
        Output(media_type="bokeh", title="b", data={"doc": float("nan")})
    Output(
        media_type="bokeh",
        title="b",
        data={"target_id": None, "root_id": "1", "doc": {}, "version": "3.4"},
    )


def test_model_result_rejects_unknown_media_types_and_keys():
    with pytest.raises(ValidationError):
        ModelResult.model_validate(
            {"renderable": [{"media_type": "movie", "title": "t", "data": ""}], "downloadable": []}
        )
    with pytest.raises(ValidationError):
        ModelResult.model_validate({"renderable": [], "downloadable": [], "extra": []})
    with pytest.raises(ValidationError):
        ModelResult.model_validate({"renderable": []})


def test_output_file_names_are_unique_when_titles_repeat_or_hold_slashes():
    outputs = [
        Output(media_type="CSV", title="Result", data="a"),
        Output(media_type="CSV", title="Result", data="b"),
        Output(media_type="CSV", title="../Result", data="c"),
        Output(media_type="table", title="Result", data="<t/>"),
    ]
    filenames = output_filenames(outputs)
    assert len(set(filenames)) == 4
    assert all("/" not in f for f in filenames)
    assert filenames[3].endswith(".html")


def test_output_file_names_are_as_c_s_made_them():
    """The title, its extension added only when missing, long stems keeping their
    last words; an empty title named after its media type and position."""
    titles = [
        ("CSV", "Total Liabilities Change by Calendar Year (Billions).csv"),
        ("PDF", "Policy Report.PDF"),
        ("bokeh", ""),
        ("CSV", "x" * 300 + " by expanded income"),
        ("CSV", "x" * 300 + " by decile"),
        ("Text", ".hidden"),
        ("Text", "result"),
        ("Text", "Result"),
    ]
    outputs = [
        Output(media_type=m, title=t, data=PNG_DATA if m == "PDF" else "d") for m, t in titles
    ]
    names = output_filenames(outputs)
    assert names[0] == "Total Liabilities Change by Calendar Year (Billions).csv"
    assert names[1] == "Policy Report.PDF"
    assert names[2] == "bokeh-3.json"
    assert names[3].endswith(" by expanded income.csv") and names[4].endswith(" by decile.csv")
    assert all(len(n.encode()) <= 255 for n in names)
    assert names[5] == "hidden.txt"
    assert names[6:] == ["result.txt", "Result-2.txt"]  # one name on a case-blind disk
    assert [o.title for o in outputs] == [t for _, t in titles]  # titles kept as given
