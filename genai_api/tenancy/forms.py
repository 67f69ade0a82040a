"""Object ids in the text fields of a `multipart/form-data` body, read as it streams through.

OpenAI's multipart routes (file uploads, upload parts, audio, image edits, container files,
videos) take uploads, but a form field may name an object as a JSON body would (a container
file's `file_id`): the same rule applies (`genai_api.tenancy.ids.references`). Parts with a
filename (the uploads themselves) are skipped without being held; a field whose name cannot
name an object is not kept either, so memory stays at one chunk plus the id-like fields
(each at most `MAX_FIELD_BYTES`).

    form = FormIds(request.headers["content-type"])
    for chunk in body:
        ids = form.feed(chunk)   # the fields that ended within this chunk
        ...                      # check them before the chunk goes on
    form.close()
"""

from __future__ import annotations

import re

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from genai_api.errors import InvalidRequest
from genai_api.tenancy.ids import may_reference, references

MAX_FIELD_BYTES = 64 * 1024
_INDEX = re.compile(r"(\[[^\]]*\])+$")  # `file_ids[]`, `file_ids[0]`: the field's base name


def _malformed(why: str) -> InvalidRequest:
    return InvalidRequest(f"The multipart/form-data body is malformed: {why}.", code="invalid_form")


class FormIds:
    def __init__(self, content_type: str) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise _malformed("its Content-Type names no boundary")
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )
        self._header_name = b""
        self._header_text = b""
        self._disposition = b""
        self._field: str | None = None  # the id-like field being read, else None
        self._value = bytearray()
        self._found: list[tuple[str, str]] = []

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        """Parse `chunk`; the `(object id, field)` named by the fields it completed."""
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise _malformed("it does not follow its boundary") from exc
        found, self._found = self._found, []
        return found

    def close(self) -> list[tuple[str, str]]:
        try:
            self._parser.finalize()
        except FormParserError as exc:
            raise _malformed("it does not follow its boundary") from exc
        found, self._found = self._found, []
        return found

    def _part_begin(self) -> None:
        self._disposition = b""
        self._field = None
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_text += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_text
        self._header_name = self._header_text = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._disposition)
        if b"filename" in params:
            return  # an upload: streamed on, never read
        name = params.get(b"name", b"").decode("utf-8", errors="replace")
        if may_reference(_INDEX.sub("", name)):
            self._field = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._field is not None and len(self._value) <= MAX_FIELD_BYTES:
            self._value += data[start:end]

    def _part_end(self) -> None:
        if self._field is None or len(self._value) > MAX_FIELD_BYTES:
            return
        value = self._value.decode("utf-8", errors="replace")
        self._found += references(_INDEX.sub("", self._field), self._field, value)
