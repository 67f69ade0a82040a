"""Object ids inside JSON: those a request names (checked) and those an answer carries (claimed).

**Requests.** Rather than a list of fields per route, which would miss the next field OpenAI
adds, one rule reads every JSON body sent through the pass-through:

- a string (or each string of a list) under a *reference key* (`REFERENCE_KEYS`: a batch's
  `input_file_id`, fine-tuning's `training_file`, a vector store's `file_ids`, an
  assistant's `tool_resources.*.vector_store_ids`, `previous_response_id`, a response's
  `conversation`...) is an object id whatever it looks like;
- a string under any other key named `id` or ending in `_id`/`_ids` is an object id when it
  has the prefix of a tracked kind (`PREFIXES`: `file-`, `vs_`, `asst_`...), which catches
  `{"conversation": {"id": "conv_..."}}` and a video edit's `{"video": {"id": ...}}`, while
  a tool call's `call_id` or a message item's `msg_...` id pass (they live below objects
  whose access the path already decided);
- `metadata` is never read (the client's own notes, which the upstream never acts on).

**Answers.** Ids the upstream puts in an answer to its owner become that owner's: the `id`
of what a `POST /{collection}` created, and below it every tracked-prefix id under an id key
(a batch's `output_file_id`, an upload's `file.id`, a run's `thread_id`, a fine-tuning job's
`result_files`) and a fine-tuning job's `fine_tuned_model`. The request rule above is what
makes this safe: a client can only make an answer echo ids it was allowed to send.

    >>> referenced_ids({"input_file_id": "file-a", "metadata": {"file_id": "file-b"}})
    [('file-a', 'input_file_id')]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

# OpenAI's id prefixes of the kinds the gateway tracks.
PREFIXES: dict[str, str] = {
    "file-": "file",
    "upload_": "upload",
    "batch_": "batch",
    "vs_": "vector_store",
    "ftjob-": "fine_tuning.job",
    "asst_": "assistant",
    "thread_": "thread",
    "conv_": "conversation",
    "resp_": "response",
    "cntr_": "container",
    "eval_": "eval",
    "video_": "video",
    "skill_": "skill",
}
_PREFIXES = tuple(PREFIXES)

# Keys whose string values are object references in OpenAI's request bodies.
REFERENCE_KEYS = frozenset(
    {
        "file_id",
        "file_ids",
        "input_file_id",
        "training_file",
        "validation_file",
        "vector_store_id",
        "vector_store_ids",
        "assistant_id",
        "thread_id",
        "previous_response_id",
        "response_id",
        "conversation",
        "conversation_id",
        "container",
        "container_id",
        "upload_id",
        "batch_id",
        "eval_id",
        "video_id",
        "skill_id",
    }
)
# Ids of objects living below another one (a container's files, `cfile_...`, echoed back in a
# response's citations): the parent decides access to them, so they are not checked alone.
SUB_OBJECT_PREFIXES = ("cfile_",)
# Keys naming fine-tuned models (`ft:...`) in fine-tuning answers.
MODEL_KEYS = frozenset({"fine_tuned_model", "fine_tuned_model_checkpoint"})
SKIPPED = frozenset({"metadata"})


def kind_of(object_id: str) -> str | None:
    """The tracked kind an id's prefix says, else None."""
    if object_id.startswith(_PREFIXES):
        for prefix, kind in PREFIXES.items():
            if object_id.startswith(prefix):
                return kind
    return None


def _is_id_key(key: str) -> bool:
    return key == "id" or key.endswith(("_id", "_ids")) or key == "result_files"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _entries(body: Any) -> Iterator[tuple[str, str, Any]]:
    """(key, its dotted path, value) of every object entry in `body`, outside `metadata`,
    breadth first (top-level keys first), without recursion (an answer may nest deep)."""
    queue: deque[tuple[Any, str]] = deque([(body, "")])
    while queue:
        node, path = queue.popleft()
        if isinstance(node, list):
            queue.extend((item, path) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if not isinstance(key, str) or key in SKIPPED:
                continue
            where = f"{path}.{key}" if path else key
            yield key, where, value
            if isinstance(value, dict | list):
                queue.append((value, where))


def references(key: str, where: str, value: Any) -> list[tuple[str, str]]:
    """The `(object id, where)` a request's `key: value` names, by the rule above."""
    if key in REFERENCE_KEYS:
        return [
            (text, where) for text in _strings(value) if not text.startswith(SUB_OBJECT_PREFIXES)
        ]
    if _is_id_key(key):
        return [(text, where) for text in _strings(value) if kind_of(text)]
    return []


def may_reference(key: str) -> bool:
    """Whether a value under `key` can name an object (a form field worth reading)."""
    return key in REFERENCE_KEYS or _is_id_key(key)


def referenced_ids(body: Any) -> list[tuple[str, str]]:
    """Each object id a request body names, with the dotted path of the key naming it."""
    found: list[tuple[str, str]] = []
    for key, where, value in _entries(body):
        found += references(key, where, value)
    return list(dict.fromkeys(found))


def answer_ids(answer: Any, *, created: str | None = None) -> list[tuple[str, str]]:
    """`(id, kind)` of each object id an answer carries; `created`: the kind of the object a
    create route made, whose top-level `id` is taken whatever its shape."""
    found: list[tuple[str, str]] = []
    if created is not None and isinstance(answer, dict) and isinstance(answer.get("id"), str):
        found.append((answer["id"], created))
    for key, _, value in _entries(answer):
        if key in MODEL_KEYS:
            found += [(text, "model") for text in _strings(value)]
        elif _is_id_key(key) or key in REFERENCE_KEYS:
            found += [(text, kind) for text in _strings(value) if (kind := kind_of(text))]
    return list(dict.fromkeys(found))
