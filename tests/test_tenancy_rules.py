"""The tenancy rule's pieces: which object a path names, which ids a body names or an answer
carries, form fields read as they stream, and list pages filled with the caller's objects."""

from __future__ import annotations

from typing import Any

import pytest

from genai_api.errors import InvalidRequest
from genai_api.tenancy.catalogue import classify
from genai_api.tenancy.forms import FormIds
from genai_api.tenancy.ids import answer_ids, referenced_ids
from genai_api.tenancy.lists import MAX_PAGES, own_page


@pytest.mark.parametrize(
    ("method", "path", "kind", "object_id", "below"),
    [
        ("GET", "files", "file", None, ()),
        ("GET", "files/file-1/content", "file", "file-1", ("content",)),
        ("DELETE", "vector_stores/vs_1/files/file-2", "vector_store", "vs_1", ("files", "file-2")),
        ("POST", "fine_tuning/jobs/ftjob-1/cancel", "fine_tuning.job", "ftjob-1", ("cancel",)),
        ("GET", "videos/characters/char_1", "video.character", "char_1", ()),
        ("GET", "videos/video_1/content", "video", "video_1", ("content",)),
        (
            "GET",
            "threads/thread_1/runs/run_1/steps",
            "thread",
            "thread_1",
            ("runs", "run_1", "steps"),
        ),
        ("DELETE", "models/ft:gpt-4o-mini:org::abc", "model", "ft:gpt-4o-mini:org::abc", ()),
        # An id is whatever sits after the collection, however it looks.
        ("GET", "files/anything", "file", "anything", ()),
    ],
)
def test_a_path_names_its_collection_and_object(
    method: str, path: str, kind: str, object_id: str | None, below: tuple[str, ...]
) -> None:
    target = classify(method, tuple(path.split("/")))
    assert (target.kind, target.object_id, target.below) == (kind, object_id, below)
    assert not target.refused


def test_collection_actions_are_not_object_ids() -> None:
    run = classify("POST", ("threads", "runs"))
    assert (run.object_id, run.action, run.creates) == (None, "runs", True)
    count = classify("POST", ("responses", "input_tokens"))
    assert (count.object_id, count.action) == (None, "input_tokens")


def test_lists_creations_and_deletions_are_told_apart() -> None:
    assert classify("GET", ("batches",)).is_list
    assert not classify("GET", ("batches", "batch_1")).is_list
    assert classify("POST", ("files",)).creates
    assert classify("DELETE", ("files", "file-1")).deletes_object
    # Detaching a file from a vector store does not delete the file.
    assert not classify("DELETE", ("vector_stores", "vs_1", "files", "file-1")).deletes_object


def test_stateless_routes_are_relayed_and_unknown_ones_refused() -> None:
    for path in ("moderations", "images/generations", "audio/speech", "realtime/client_secrets"):
        target = classify("POST", tuple(path.split("/")))
        assert not target.stateful and not target.refused
    for path in ("organization/users", "projects/p/roles", "a_future_api/x"):
        assert classify("GET", tuple(path.split("/"))).refused


def test_reference_keys_name_objects_whatever_they_look_like() -> None:
    body = {
        "input_file_id": "file-a",
        "training_file": "custom-id-without-prefix",
        "tool_resources": {
            "code_interpreter": {"file_ids": ["file-b", "file-c"]},
            "file_search": {
                "vector_store_ids": ["vs_1"],
                "vector_stores": [{"file_ids": ["file-d"]}],
            },
        },
        "previous_response_id": "resp_1",
    }
    assert referenced_ids(body) == [  # top-level keys first
        ("file-a", "input_file_id"),
        ("custom-id-without-prefix", "training_file"),
        ("resp_1", "previous_response_id"),
        ("file-b", "tool_resources.code_interpreter.file_ids"),
        ("file-c", "tool_resources.code_interpreter.file_ids"),
        ("vs_1", "tool_resources.file_search.vector_store_ids"),
        ("file-d", "tool_resources.file_search.vector_stores.file_ids"),
    ]


def test_other_id_keys_name_objects_by_their_prefix() -> None:
    body = {
        "conversation": {"id": "conv_1"},
        "video": {"id": "video_1"},
        "input": [
            {"type": "message", "id": "msg_1", "content": "hi"},  # an item below a response
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
            {"type": "message", "content": [{"type": "input_file", "file_id": "file-x"}]},
            {"annotations": [{"type": "container_file_citation", "file_id": "cfile_1"}]},
        ],
        "tools": [
            {"type": "function", "parameters": {"properties": {"file_id": {"type": "string"}}}}
        ],
        "instructions": "file-not-an-id",
    }
    assert sorted(referenced_ids(body)) == [
        ("conv_1", "conversation.id"),
        ("file-x", "input.content.file_id"),
        ("video_1", "video.id"),
    ]


def test_metadata_is_never_read() -> None:
    assert referenced_ids({"metadata": {"file_id": "file-a", "input_file_id": "file-b"}}) == []
    assert answer_ids({"metadata": {"file_id": "file-a"}}) == []


def test_an_answer_gives_its_owner_what_the_upstream_created() -> None:
    batch = {
        "id": "batch_1",
        "input_file_id": "file-in",
        "output_file_id": "file-out",
        "error_file_id": None,
        "metadata": {"note_id": "file-theirs"},
    }
    assert answer_ids(batch, created="batch") == [
        ("batch_1", "batch"),
        ("file-in", "file"),
        ("file-out", "file"),
    ]
    job = {"id": "ftjob-1", "result_files": ["file-r"], "fine_tuned_model": "ft:m:org::x"}
    assert answer_ids(job) == [
        ("ftjob-1", "fine_tuning.job"),
        ("file-r", "file"),
        ("ft:m:org::x", "model"),
    ]
    # A create answer's own id is the new object's, whatever it looks like.
    assert answer_ids({"id": "0042"}, created="file") == [("0042", "file")]
    assert answer_ids({"id": "0042"}) == []


def _form(fields: list[tuple[str, bytes, str | None]]) -> bytes:
    out = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (
            b"--XyZ\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + value + b"\r\n"
        )
    return out + b"--XyZ--\r\n"


def test_form_fields_are_read_as_the_body_streams_and_uploads_are_not() -> None:
    upload = b"file-inside-the-upload " * 4096  # an upload's bytes are never taken for ids
    body = _form([
        ("purpose", b"assistants", None),
        ("file", upload, "notes.txt"),
        ("file_id", b"file-a", None),
        ("file_ids[]", b"file-b", None),
    ])  # fmt: skip
    form = FormIds("multipart/form-data; boundary=XyZ")
    found: list[tuple[str, str]] = []
    for start in range(0, len(body), 1000):
        found += form.feed(body[start : start + 1000])
    found += form.close()
    assert found == [("file-a", "file_id"), ("file-b", "file_ids[]")]


def test_a_form_without_a_boundary_or_not_following_it_is_a_400() -> None:
    with pytest.raises(InvalidRequest):
        FormIds("multipart/form-data")
    with pytest.raises(InvalidRequest):
        FormIds("multipart/form-data; boundary=XyZ").feed(b"not a multipart body\r\n\r\n")


class Upstream:
    """List pages of `count` objects (newest first), `mine` of them the caller's."""

    def __init__(self, count: int, mine: set[str]) -> None:
        self.ids = [f"file-{n:04d}" for n in range(count)]
        self.mine_ids = mine
        self.pages: list[dict[str, str]] = []

    async def fetch(self, query: list[tuple[str, str]]) -> dict[str, Any]:
        params = dict(query)
        self.pages.append(params)
        start = self.ids.index(params["after"]) + 1 if "after" in params else 0
        size = int(params["limit"])
        data = [{"id": i, "object": "file"} for i in self.ids[start : start + size]]
        return {"object": "list", "data": data, "has_more": start + size < len(self.ids)}

    async def mine(self, ids: list[str]) -> list[bool]:
        return [i in self.mine_ids for i in ids]


async def _pages(up: Upstream, limit: int) -> list[list[str]]:
    """Every page a client following `after=<last item>` (as the SDK does) gets."""
    pages: list[list[str]] = []
    query = [("limit", str(limit))]
    while True:
        page = await own_page(up.fetch, up.mine, query, "batch")
        pages.append([item["id"] for item in page["data"]])
        if not page["has_more"] or not page["data"]:
            return pages
        query = [("limit", str(limit)), ("after", page["data"][-1]["id"])]


async def test_pages_are_filled_with_the_callers_objects_across_upstream_pages() -> None:
    mine = {f"file-{n:04d}" for n in range(0, 1000, 7)}  # 143 of 1,000
    up = Upstream(1000, mine)
    pages = await _pages(up, limit=20)
    assert [len(p) for p in pages] == [20] * 7 + [3]
    assert [i for page in pages for i in page] == sorted(mine)
    assert all(p["limit"] == "100" for p in up.pages)  # the upstream's largest page


async def test_a_page_says_has_more_exactly_when_objects_remain() -> None:
    up = Upstream(300, {"file-0005", "file-0290"})
    first = await own_page(up.fetch, up.mine, [("limit", "1")], "batch")
    assert [i["id"] for i in first["data"]] == ["file-0005"] and first["has_more"]
    assert (first["first_id"], first["last_id"]) == ("file-0005", "file-0005")
    rest = await own_page(up.fetch, up.mine, [("limit", "5"), ("after", "file-0005")], "batch")
    assert [i["id"] for i in rest["data"]] == ["file-0290"] and not rest["has_more"]


async def test_a_scan_stops_after_max_pages_and_says_where_it_stopped() -> None:
    up = Upstream(100 * (MAX_PAGES + 5), set())
    page = await own_page(up.fetch, up.mine, [], "batch")
    assert page["data"] == [] and page["has_more"]
    assert page["last_id"] == up.ids[100 * MAX_PAGES - 1]
    assert len(up.pages) == MAX_PAGES


async def test_a_bad_limit_is_a_400() -> None:
    up = Upstream(3, set())
    with pytest.raises(InvalidRequest):
        await own_page(up.fetch, up.mine, [("limit", "0")], "batch")
