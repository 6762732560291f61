from __future__ import annotations

import pytest

from headcount import InputError, Policy, default_schema
from headcount.core.schema import load_schema_file


def test_defaults_follow_the_reference_documents():
    s = default_schema()
    assert s.attendance == {"check_in": Policy.EARLIEST, "check_out": Policy.LATEST}
    assert s.participant["name"] is Policy.LWW
    assert s.participant["allergies"] is Policy.CRITICAL
    assert s.participant["medical_notes"] is Policy.CRITICAL
    assert s.config_policy("anything") is Policy.AUTHORITY


def test_an_event_extends_and_overrides():
    s = default_schema().extend(
        {
            "participant": {"company": "lww", "phone": "critical"},
            "attendance": {"check_in": "latest"},
            "config": {"theme": "lww"},
        }
    )
    assert s.participant["company"] is Policy.LWW
    assert s.participant["phone"] is Policy.CRITICAL
    assert s.attendance["check_in"] is Policy.LATEST
    assert s.config_policy("theme") is Policy.LWW
    assert s.config_policy("other") is Policy.AUTHORITY


@pytest.mark.parametrize(
    "ext, message",
    [
        ({"people": {}}, "unknown schema section"),
        ({"participant": {"x": "newest"}}, "unknown policy"),
        ({"participant": {"Bad Name": "lww"}}, "field names"),
        ({"participant": {"id": "lww"}}, "reserved"),
        ({"attendance": {"seat": "lww"}}, "only check_in and check_out"),
        ({"attendance": {"check_in": "critical"}}, "earliest, latest or lww"),
        ({"participant": "lww"}, "must be a table"),
        ({"config": {"bad key!": "lww"}}, "invalid configuration key"),
    ],
)
def test_invalid_extensions_are_rejected(ext, message):
    with pytest.raises(InputError, match=message):
        default_schema().extend(ext)


def test_schema_files(tmp_path):
    good = tmp_path / "s.toml"
    good.write_text('[participant]\ncompany = "lww"\n')
    assert load_schema_file(good) == {"participant": {"company": "lww"}}
    bad = tmp_path / "bad.toml"
    bad.write_text("[participant\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_schema_file(bad)
    with pytest.raises(InputError, match="not found"):
        load_schema_file(tmp_path / "missing.toml")
