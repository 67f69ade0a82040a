"""Who is calling: client keys for `/v1/*`, the admin key for admin endpoints, tenant ids.

Keys are compared in constant time. A tenant id is an HMAC of the client's key under a
server secret, so neither cache keys nor stats ever hold a raw API key, and one tenant's
id cannot be computed by another.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

from starlette.requests import Request

from genai_api.errors import AuthenticationFailed, PermissionDenied
from genai_api.keys import ANONYMOUS, SHARED_TENANT

_DEFAULT_SECRET = b"genai-api/tenant/v1"
_TENANT_ID = re.compile(r"[0-9a-f]{24}")
# Longer bearers are hashed each time instead of cached: on an open gateway anyone can send
# thousands of distinct 64 KiB tokens, and a cache of them would hold hundreds of MiB.
CACHED_TOKEN_CHARS = 256


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    def __init__(
        self,
        client_keys: tuple[str, ...],
        admin_key: str | None,
        *,
        scope: str,
        secret: str | None,
    ) -> None:
        self._client_keys = tuple(k.encode() for k in client_keys)
        self._admin_key = admin_key.encode() if admin_key else None
        self.shared = scope == "shared"
        self._secret = secret.encode() if secret else _DEFAULT_SECRET
        self._cached_tenant_id = lru_cache(maxsize=4096)(self._hmac)

    def tenant_id(self, key: str) -> str:
        """The tenant id of a client key: HMAC-SHA256 under the server secret, 24 hex."""
        if len(key) <= CACHED_TOKEN_CHARS:
            return self._cached_tenant_id(key)
        return self._hmac(key)

    def _hmac(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()[:24]

    def tenant_of(self, given: str) -> str:
        """The tenant segment an admin means by `given`: a client key or a tenant id.

        A configured client key is hashed; a tenant id (24 hex), `anon` or `shared` is taken
        as it is; anything else is a bearer of an open gateway, hashed. Only a 24-hex
        bearer on an open gateway is ambiguous, and it is read as an id.
        """
        if self._is_client_key(given):
            return self.tenant_id(given)
        if _TENANT_ID.fullmatch(given) or given in (ANONYMOUS, SHARED_TENANT):
            return given
        return self.tenant_id(given)

    def _is_client_key(self, token: str | None) -> bool:
        if token is None:
            return False
        raw = token.encode()
        # Compare against every key so timing does not reveal which one matched.
        matched = False
        for key in self._client_keys:
            matched |= hmac.compare_digest(raw, key)
        return matched

    def client(self, request: Request) -> str:
        """The caller's tenant id for cache keys; 401 when keys are required and wrong."""
        token = bearer_token(request)
        if self._client_keys and not self._is_client_key(token):
            raise AuthenticationFailed(
                "Incorrect API key provided." if token else "Missing bearer API key.",
                code="invalid_api_key",
            )
        if self.shared:
            return SHARED_TENANT
        return self.tenant_id(token) if token else ANONYMOUS

    def identity(self, request: Request, tenant: str) -> str:
        """Who is calling, whatever the cache scope (`tenant` from `client`): with
        `CACHE_SCOPE=shared` every client has the `shared` tenant, but two keys are still two
        callers (a regenerate is one caller repeating itself: `genai_api.pipeline.variants`)."""
        if not self.shared:
            return tenant
        token = bearer_token(request)
        return self.tenant_id(token) if token else ANONYMOUS

    def admin(self, request: Request) -> None:
        """Admin endpoints: ADMIN_API_KEY when set (403 for a client key). Without it they are
        as open as the rest of `/v1/*`: any client key when GATEWAY_API_KEYS is set (else
        anyone could read the stats and empty the cache of a gateway that asks for keys)."""
        if self._admin_key is None:
            self.client(request)
            return
        token = bearer_token(request)
        if token is not None and hmac.compare_digest(token.encode(), self._admin_key):
            return
        if self._is_client_key(token):
            raise PermissionDenied("This endpoint needs the admin key.", code="admin_only")
        raise AuthenticationFailed("Missing or incorrect admin API key.", code="invalid_api_key")
