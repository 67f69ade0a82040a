"""FastAPI dependencies as `Annotated` aliases, used straight in route signatures.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread,
and two thread hand-offs per request cost more CPU than the rest of a cache hit.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from genai_api.gateway import Gateway


async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_tenant(request: Request) -> str:
    gateway: Gateway = request.app.state.gateway
    return gateway.auth.client(request)


async def require_admin(request: Request) -> None:
    gateway: Gateway = request.app.state.gateway
    gateway.auth.admin(request)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
TenantDep = Annotated[str, Depends(get_tenant)]
AdminDep = Annotated[None, Depends(require_admin)]
