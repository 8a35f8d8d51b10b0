"""Reading STAPLE gold files and report records (JSON Lines), with line-accurate errors.

A STAPLE gold file is a list of blocks separated by blank lines::

    prompt_<id>|<English prompt>
    <accepted translation>|<weight>
    ...

Weights are the relative frequency with which learners typed each translation (they sum to 1
per prompt). Report records follow ARCHITECTURE.md §6, one JSON object per line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from core.errors import InvalidInput
from reports_ml.models import Prompt, ReportRecord, Translation

__all__ = [
    "course_from_path",
    "iter_records",
    "load_staple",
    "read_records",
    "write_records",
]

_WEIGHT_SUM_TOLERANCE = 1e-3
_COURSE_IN_NAME = re.compile(r"(?:^|[._-])(?P<course>[a-z]{2,3}_[a-z]{2,3})(?:[._-]|$)")


def course_from_path(path: Path | str) -> str:
    """The course a STAPLE file belongs to, from its name: ``dev.en_hu.2020-02-20.gold.txt``
    is ``en_hu``."""
    match = _COURSE_IN_NAME.search(Path(path).name)
    if match is None:
        raise InvalidInput(
            f"{path}: cannot tell the course from the file name (expected a part such as "
            "'en_hu'); name the course explicitly",
        )
    return match["course"]


def load_staple(path: Path | str) -> list[Prompt]:
    """Prompts of a STAPLE gold file, translations in file order (most frequent first).

    Raises ``InvalidInput`` naming the file and line of the first malformed line, a prompt
    without translations, a repeated prompt id or weights that do not sum to 1.
    """
    where = Path(path)
    try:
        lines = where.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{where}: cannot read STAPLE file: {error}") from error
    prompts: list[Prompt] = []
    seen: dict[str, int] = {}
    block: list[tuple[int, str]] = []
    for number, line in enumerate([*lines, ""], start=1):
        if line.strip():
            block.append((number, line))
        elif block:
            prompt = _parse_block(where, block)
            if prompt.prompt_id in seen:
                raise InvalidInput(
                    f"{where}:{block[0][0]}: prompt {prompt.prompt_id} already appeared on "
                    f"line {seen[prompt.prompt_id]}",
                )
            seen[prompt.prompt_id] = block[0][0]
            prompts.append(prompt)
            block = []
    if not prompts:
        raise InvalidInput(f"{where}: no prompts found (expected blocks 'prompt_<id>|<text>')")
    return prompts


def _parse_block(where: Path, block: list[tuple[int, str]]) -> Prompt:
    header_line, header = block[0]
    prompt_id, bar, text = header.partition("|")
    if not bar or not prompt_id.startswith("prompt_") or len(prompt_id) <= len("prompt_"):
        raise InvalidInput(
            f"{where}:{header_line}: expected 'prompt_<id>|<English prompt>', got {header[:80]!r}",
        )
    if len(block) == 1:
        raise InvalidInput(f"{where}:{header_line}: prompt {prompt_id} has no translations")
    translations = [_parse_translation(where, number, line) for number, line in block[1:]]
    total = math.fsum(translation.weight for translation in translations)
    if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
        raise InvalidInput(
            f"{where}:{header_line}: weights of prompt {prompt_id} sum to {total:.4f}, not 1",
        )
    return Prompt(prompt_id=prompt_id, text=text.strip(), translations=tuple(translations))


def _parse_translation(where: Path, number: int, line: str) -> Translation:
    text, bar, weight_text = line.rpartition("|")
    if not bar or not text.strip():
        raise InvalidInput(
            f"{where}:{number}: expected '<translation>|<weight>', got {line[:80]!r}",
        )
    try:
        weight = float(weight_text)
    except ValueError:
        raise InvalidInput(
            f"{where}:{number}: weight {weight_text[:40]!r} is not a number",
        ) from None
    if not 0.0 <= weight <= 1.0:
        raise InvalidInput(f"{where}:{number}: weight {weight} is outside 0..1")
    return Translation(text=text.strip(), weight=weight)


def iter_records(
    path: Path | str, *, on_invalid: Callable[[InvalidInput], None] | None = None
) -> Iterator[ReportRecord]:
    """Report records of a JSON Lines file, validated line by line.

    Blank lines are skipped. The first malformed line raises ``InvalidInput`` with the file,
    the line number and what is wrong; a repeated ``report_id`` is malformed too. With
    ``on_invalid``, each malformed line is handed to it instead and left out. Records with
    equal accepted lists share one tuple in memory.
    """
    where = Path(path)
    seen: dict[str, int] = {}
    context: dict[str, Any] = {"shared_accepted": {}}
    try:
        with where.open(encoding="utf-8-sig") as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    record = _parse_record(where, number, line, context)
                    first = seen.setdefault(record.report_id, number)
                    if first != number:
                        raise InvalidInput(
                            f"{where}:{number}: report_id {record.report_id!r} already used on "
                            f"line {first}",
                            line=number,
                        )
                except InvalidInput as invalid:
                    if on_invalid is None:
                        raise
                    on_invalid(invalid)
                    continue
                yield record
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{where}: cannot read report records: {error}") from error


def read_records(
    path: Path | str, *, on_invalid: Callable[[InvalidInput], None] | None = None
) -> list[ReportRecord]:
    """All records of a JSON Lines file (see ``iter_records``)."""
    return list(iter_records(path, on_invalid=on_invalid))


def _parse_record(where: Path, number: int, line: str, context: dict[str, Any]) -> ReportRecord:
    try:
        return ReportRecord.model_validate_json(line, context=context)
    except ValidationError as error:
        raise InvalidInput(f"{where}:{number}: {_describe(error)}", line=number) from None


def _describe(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return f"not valid JSON ({first['ctx'].get('error', first['msg'])})"
    field = ".".join(str(part) for part in first["loc"]) or "record"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    more = len(error.errors()) - 1
    return f"{field}: {message}" + (f" (and {more} more problems)" if more else "")


def write_records(records: Iterable[ReportRecord], stream: IO[str]) -> int:
    """Write records as JSON Lines (``score`` only when set); returns how many were written."""
    count = 0
    for record in records:
        stream.write(_record_json(record))
        stream.write("\n")
        count += 1
    return count


def _record_json(record: ReportRecord) -> str:
    data: dict[str, Any] = record.model_dump(exclude_none=False)
    if data["score"] is None:
        del data["score"]
    return json.dumps(data, ensure_ascii=False)
