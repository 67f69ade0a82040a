"""What a pass-through path touches, as the tenancy rule sees it.

OpenAI's stateful APIs share one shape: a collection (`/files`, `/vector_stores`,
`/fine_tuning/jobs`...), an object in it (`/files/{id}`), and anything below the object
(`/files/{id}/content`, `/vector_stores/{id}/files/{file_id}`). Access to anything below an
object is decided by the object (the upstream scopes sub-objects by their parent), so one
table of collections covers every route of those APIs:

- `GET /{collection}` lists, `POST /{collection}` creates;
- `/{collection}/{segment}/...`: `segment` is an action of the collection when the table
  names it (`/threads/runs`, `/responses/input_tokens`), else the id of an object, checked
  whatever its shape (a server whose ids look unlike OpenAI's is still covered).

Stateless APIs are named too; any other first segment (`/organization/...`, an API newer
than this table) is `refused` while tenancy is enforced: the gateway cannot tell whose
objects such a route would reach, so it does not guess.

    >>> classify("GET", ("files", "file-abc", "content")).object_id
    'file-abc'
"""

from __future__ import annotations

from dataclasses import dataclass

# (collection path, kind, actions): longest paths first, so `videos/characters` wins over
# `videos`. The kind names the objects a collection holds (used in records and messages).
COLLECTIONS: tuple[tuple[tuple[str, ...], str, frozenset[str]], ...] = (
    (("fine_tuning", "jobs"), "fine_tuning.job", frozenset()),
    (("fine_tuning", "checkpoints"), "fine_tuning.checkpoint", frozenset()),
    (("chat", "completions"), "chat.completion", frozenset()),
    (("videos", "characters"), "video.character", frozenset()),
    (("realtime", "calls"), "realtime.call", frozenset()),
    (("chatkit", "sessions"), "chatkit.session", frozenset()),
    (("chatkit", "threads"), "chatkit.thread", frozenset()),
    (("files",), "file", frozenset()),
    (("uploads",), "upload", frozenset()),
    (("batches",), "batch", frozenset()),
    (("vector_stores",), "vector_store", frozenset()),
    (("assistants",), "assistant", frozenset()),
    (("threads",), "thread", frozenset({"runs"})),
    (("conversations",), "conversation", frozenset()),
    (("responses",), "response", frozenset({"input_tokens", "compact"})),
    (("containers",), "container", frozenset()),
    (("evals",), "eval", frozenset()),
    (("videos",), "video", frozenset({"edits", "extensions"})),
    (("skills",), "skill", frozenset()),
    # GET /v1/models[/{id}] is the gateway's own route; what reaches the pass-through is
    # DELETE /v1/models/{id} (a fine-tuned model), checked like any object.
    (("models",), "model", frozenset()),
)

# Routes that keep no state upstream: relayed as they are (their JSON bodies are still
# checked for object ids: an image edit may name a file).
STATELESS: tuple[tuple[str, ...], ...] = (
    ("moderations",),
    ("images",),
    ("audio",),
    ("embeddings",),
    ("completions",),
    ("realtime", "client_secrets"),
    ("realtime", "sessions"),
    ("realtime", "transcription_sessions"),
    ("fine_tuning", "alpha"),
    ("content_provenance_checks",),
)


@dataclass(frozen=True, slots=True)
class Target:
    """One pass-through request's place in the table.

    `kind` is None for a stateless route; `object_id` names the object the path is about
    (None for the collection itself); `below` is what follows the object; `action` is a
    collection action (`runs` of `/threads/runs`); `refused` marks a route outside the table.
    """

    method: str
    kind: str | None
    object_id: str | None = None
    below: tuple[str, ...] = ()
    action: str | None = None
    refused: bool = False

    @property
    def stateful(self) -> bool:
        return self.kind is not None

    @property
    def is_list(self) -> bool:
        """`GET /{collection}`: the upstream's answer holds every tenant's objects."""
        return (
            self.method == "GET"
            and self.kind is not None
            and not self.object_id
            and (self.action is None)
        )

    @property
    def creates(self) -> bool:
        """`POST /{collection}` or one of its actions: the answer's `id` is a new object."""
        return self.method == "POST" and self.kind is not None and self.object_id is None

    @property
    def deletes_object(self) -> bool:
        """`DELETE /{collection}/{id}`: the object itself goes (not something below it)."""
        return self.method == "DELETE" and self.object_id is not None and not self.below


def classify(method: str, segments: tuple[str, ...]) -> Target:
    """Where `segments` (the path below `/v1`, split on '/') sits in the table."""
    for path, kind, actions in COLLECTIONS:
        n = len(path)
        if segments[:n] != path:
            continue
        rest = segments[n:]
        if not rest:
            return Target(method, kind)
        if rest[0] in actions:
            return Target(method, kind, action=rest[0], below=rest[1:])
        return Target(method, kind, object_id=rest[0], below=rest[1:])
    for path in STATELESS:
        if segments[: len(path)] == path:
            return Target(method, None)
    return Target(method, None, refused=True)
