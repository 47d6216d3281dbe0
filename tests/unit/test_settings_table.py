"""The README's settings table is `StoreSettings`, field for field."""

from __future__ import annotations

import re
from pathlib import Path

from eventstore.settings import StoreSettings, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_every_setting_as_the_code_defines_it() -> None:
    found = re.search(
        r"<!-- settings:[^>]*-->\n(.*?)<!-- /settings -->",
        README.read_text(),
        flags=re.DOTALL,
    )
    assert found, "README.md has no generated settings table"
    assert found.group(1) == settings_table(), (
        "README.md's settings table is stale: paste eventstore.settings.settings_table()"
    )


def test_the_table_names_every_field_with_its_default() -> None:
    table = settings_table()
    for name, field in StoreSettings.model_fields.items():
        assert f"`EVENTSTORE_{name.upper()}`" in table
        assert field.description, f"{name} has no description"
