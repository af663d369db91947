"""docs/operations.md documents every setting exactly as settings.py declares it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic.fields import FieldInfo

from signing_gateway.settings import Settings
from signing_gateway.settings_doc import (
    BEGIN_MARKER,
    END_MARKER,
    _type_name,
    main,
    render_table,
    setting_docs,
    setting_variables,
    splice,
    table_in,
)

OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
REGENERATE = "run: python -m signing_gateway.settings_doc --write docs/operations.md"


def test_operations_guide_table_matches_the_settings_model():
    """The configuration table in the guide is the one generated from the current model."""
    document = OPERATIONS.read_text(encoding="utf-8")
    assert table_in(document) == render_table(), REGENERATE


def test_the_table_gives_each_setting_its_bounds():
    """Pin that a bound shows beside its type, the tightest of each kind, an optional one too.

    Before, pydantic's bounds of `PositiveInt` or `Field(le=10)` were left out: the table said
    `int` of settings refusing 0 and 11, and a bound could change without the table changing.
    """
    types = {d.env_var.removeprefix("SIGNING_GATEWAY_"): d.type_name for d in setting_docs()}
    assert types["EU_SIGNER__RESILIENCE__MAX_ATTEMPTS"] == "int, > 0, <= 10"
    assert types["EU_SIGNER__RESILIENCE__RETRY_BUDGET_RATIO"] == "float, >= 0, <= 1"
    assert types["EU_SIGNER__RESILIENCE__MAX_WAIT_SECONDS"] == "float, >= 0"
    assert types["LIMITS__MAX_HEADER_FIELDS"] == "int, >= 32"
    assert types["LOOP_LAG__GC_THRESHOLD0"] == "int | None, > 0"
    assert types["AUTH__SCOPE_CLAIM"] == "str, length >= 1"
    assert types["AUTH__JWKS_FILE"] == "Path | None"
    assert types["LOG_FORMAT"] == "Literal['json', 'console']"


def test_a_path_is_named_path_whichever_module_python_keeps_it_in():
    """Path's class lives in `pathlib._local` from Python 3.13 on: the table says `Path` still.

    Its module name left in, the table generated on 3.13 said `_local.Path` and differed from
    the one generated on 3.11, where `pathlib.Path` is the class's own name.
    """
    path_from_3_13 = type("Path", (), {"__module__": "pathlib._local"})
    assert repr(path_from_3_13) == "<class 'pathlib._local.Path'>"
    assert _type_name(FieldInfo.from_annotation(path_from_3_13)) == "Path"
    assert _type_name(FieldInfo.from_annotation(path_from_3_13 | None)) == "Path | None"
    assert _type_name(FieldInfo.from_annotation(Path | None)) == "Path | None"


def test_every_setting_has_a_description():
    """No setting reaches the reference without a sentence saying what it does."""
    undocumented = [d.env_var for d in setting_docs() if not d.description]
    assert undocumented == []


def test_table_names_every_leaf_setting_with_its_env_var():
    """Each leaf field, nested groups included, appears under its SIGNING_GATEWAY_ name."""
    env_vars = {d.env_var for d in setting_docs()}
    assert "SIGNING_GATEWAY_LOG_LEVEL" in env_vars
    assert "SIGNING_GATEWAY_EU_SIGNER__URL" in env_vars
    assert "SIGNING_GATEWAY_OBSERVABILITY__ACCESS_LOG" in env_vars
    assert not any(name.endswith("__OBSERVABILITY") for name in env_vars)  # groups are expanded
    assert len(env_vars) == len(setting_docs())


def test_the_variables_read_are_the_table_and_the_groups() -> None:
    """`serve` knows each variable of the reference, and each group, which JSON can give whole."""
    variables = {v.env_var: v.json_example for v in setting_variables()}
    leaves = {d.env_var for d in setting_docs()}
    assert leaves < variables.keys()
    groups = variables.keys() - leaves
    assert {"SIGNING_GATEWAY_EU_SIGNER__RESILIENCE", "SIGNING_GATEWAY_AUDIT"} <= groups
    assert all(variables[group] == '{"setting": "value"}' for group in groups)
    assert variables["SIGNING_GATEWAY_TRUST__EU_CERTIFICATES"] == '["/path/to/file.pem"]'
    assert variables["SIGNING_GATEWAY_LOG_LEVEL"] is None


def test_documented_env_var_names_are_the_ones_settings_reads(monkeypatch: pytest.MonkeyPatch):
    """A nested variable spelled as the table spells it changes that setting."""
    monkeypatch.setenv("SIGNING_GATEWAY_OBSERVABILITY__ACCESS_LOG", "false")
    monkeypatch.setenv("SIGNING_GATEWAY_EU_SIGNER__URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("SIGNING_GATEWAY_AUTH__MODE", "disabled")
    settings = Settings()
    assert settings.observability.access_log is False
    assert settings.eu_signer.url == "http://127.0.0.1:9999"


def test_defaults_shown_are_the_group_instance_defaults():
    """Per-group defaults (each signer's own URL) are shown, not the bare class default."""
    by_name = {d.env_var: d for d in setting_docs()}
    assert by_name["SIGNING_GATEWAY_EU_SIGNER__URL"].default == '"http://127.0.0.1:9081"'
    assert by_name["SIGNING_GATEWAY_DOMESTIC_SIGNER__URL"].default == '"http://127.0.0.1:9082"'


def test_splice_replaces_only_the_marked_table():
    """Refreshing rewrites the text between the markers and keeps the rest of the guide."""
    document = f"intro\n{BEGIN_MARKER}\nold table\n{END_MARKER}\noutro\n"
    refreshed = splice(document, "| new |\n")
    assert refreshed == f"intro\n{BEGIN_MARKER}\n| new |\n{END_MARKER}\noutro\n"


def test_none_in_the_environment_unsets_an_optional_setting(monkeypatch: pytest.MonkeyPatch):
    """`none` asks for an optional setting's absence where its default is a value."""
    monkeypatch.setenv("SIGNING_GATEWAY_AUTH__MODE", "disabled")
    assert Settings().loop_lag.gc_threshold0 == 10_000
    monkeypatch.setenv("SIGNING_GATEWAY_LOOP_LAG__GC_THRESHOLD0", "none")
    assert Settings().loop_lag.gc_threshold0 is None
    monkeypatch.setenv("SIGNING_GATEWAY_LOOP_LAG__GC_THRESHOLD0", "5000")
    assert Settings().loop_lag.gc_threshold0 == 5000


def test_the_module_prints_the_table_or_refreshes_a_document(tmp_path: Path, capsys) -> None:
    """Without --write the table goes to stdout; with it, only the document's table changes."""
    assert main([]) == 0
    assert capsys.readouterr().out == render_table()
    document = tmp_path / "operations.md"
    document.write_text(f"intro\n{BEGIN_MARKER}\nold table\n{END_MARKER}\noutro\n", "utf-8")
    assert main(["--write", str(document)]) == 0
    assert document.read_text("utf-8") == splice(document.read_text("utf-8"), render_table())
    assert table_in(document.read_text("utf-8")) == render_table()
    assert document.read_text("utf-8").startswith(f"intro\n{BEGIN_MARKER}\n| Environment")
    assert capsys.readouterr().out == ""
