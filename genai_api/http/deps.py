"""FastAPI dependencies as `Annotated` aliases, used straight in route signatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from genai_api.gateway import Gateway


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def get_tenant(request: Request) -> str:
    return get_gateway(request).auth.client(request)


def require_admin(request: Request) -> None:
    get_gateway(request).auth.admin(request)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
TenantDep = Annotated[str, Depends(get_tenant)]
AdminDep = Annotated[None, Depends(require_admin)]
