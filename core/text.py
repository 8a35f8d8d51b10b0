"""Text from requests that every supported database can store.

PostgreSQL refuses NUL (U+0000) in text, and neither PostgreSQL nor SQLite can encode a lone
surrogate (U+D800–U+DFFF, which JSON's ``\\ud800`` escapes and percent-decoding can produce)
as UTF-8. ``StorableText`` is ``str`` refused at the model layer, with error type
``unstorable_input`` (422 ``unstorable_input``, see ``core.handlers``), so such a string never
reaches a query. Every text field of a request model and every text query or path parameter
uses it; ``tests/core/test_text.py`` walks the published schema to keep it so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

# Error type of the refusal, and the problem code it becomes (core.errors.UnstorableInput).
UNSTORABLE = "unstorable_input"
# pydantic's own refusal of a lone surrogate in raw JSON is the same fault to a client.
UNSTORABLE_ERROR_TYPES = frozenset({UNSTORABLE, "string_unicode"})
# Marks a string schema as checked here, in the published OpenAPI document.
SCHEMA_MARK = "x-storable-text"
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def find_unstorable(text: str) -> int | None:
    """Index of the first character no supported database can store, or None."""
    found = _UNSTORABLE_CHARS.search(text)
    return None if found is None else found.start()


def _refuse_unstorable(text: str) -> str:
    position = find_unstorable(text)
    if position is not None:
        # The character's position and kind only: the text itself may be learner data.
        raise PydanticCustomError(
            UNSTORABLE,
            "contains a NUL or a lone surrogate at position {position}",
            {"position": position},
        )
    return text


@dataclass(frozen=True)
class _Storable:
    """Annotated metadata: validate as the wrapped type, then refuse unstorable characters."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(_refuse_unstorable, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema[SCHEMA_MARK] = True
        return json_schema


StorableText = Annotated[str, _Storable()]
