"""Tenancy of upstream objects (CONTRACT §3): who created which file, batch, vector store,
stored response..., and who may reach it.

- `guard.Tenancy`: the rule, in four calls (`check`, `record`, `owner_of`, `forget`);
- `owners`: the records (Redis, shared by every replica; or this process's memory);
- `kept`: what each process keeps of them against a full or evicting Redis (CONTRACT §6);
- `catalogue`: which object a pass-through path is about;
- `ids`, `forms`: the object ids a request body names and an answer carries;
- `lists`: list answers filtered to the caller's objects, paginated.
"""

from genai_api.tenancy.guard import Tenancy, not_found
from genai_api.tenancy.owners import Owner

__all__ = ["Owner", "Tenancy", "not_found"]
