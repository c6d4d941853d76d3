"""Credentials and the ARM clients built on them.

``VMJOURNAL_AZURE_STATIC_TOKEN`` replaces ``DefaultAzureCredential`` with a fixed bearer
token, for emulators. Only then may the endpoint be plain ``http://``, and only on loopback:
the SDK's own policy refuses a bearer token over http, which is right for anything else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.identity.aio import DefaultAzureCredential
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.network.aio import NetworkManagementClient
from azure.mgmt.resource.resources.aio import ResourceManagementClient
from pydantic import SecretStr

from vmjournal.config import AzureSettings
from vmjournal.net import is_loopback


class StaticTokenCredential:
    """An async credential that always answers the configured token (azure-identity has none)."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token.get_secret_value(), int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token.get_secret_value(), int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=***)"


class StaticBearerPolicy(SansIOHTTPPolicy[Any, Any]):
    """Sets the fixed token on every request, without the https check of the ARM policy."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.http_request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"


def check_endpoint(settings: AzureSettings) -> str:
    """The ARM endpoint without a trailing slash; raises ``ValueError`` for an unsafe one."""
    endpoint = settings.arm_endpoint.rstrip("/")
    url = urlparse(endpoint)
    if url.scheme == "https" and url.hostname:
        return endpoint
    if url.scheme == "http" and url.hostname and is_loopback(url.hostname):
        if settings.static_token is None:
            raise ValueError(
                "an http:// ARM endpoint is only for a loopback emulator and needs VMJOURNAL_AZURE_STATIC_TOKEN"
            )
        return endpoint
    raise ValueError(f"VMJOURNAL_AZURE_ARM_ENDPOINT must be https://, or http:// on loopback, not {endpoint!r}")


@dataclass
class Clients:
    credential: AsyncTokenCredential
    resources: ResourceManagementClient
    network: NetworkManagementClient
    compute: ComputeManagementClient

    async def close(self) -> None:
        await self.resources.close()
        await self.network.close()
        await self.compute.close()
        await self.credential.close()


def build_clients(settings: AzureSettings, *, polling_interval: float) -> Clients:
    """Async ARM clients for the configured subscription, endpoint and credential."""
    endpoint = check_endpoint(settings)
    credential: AsyncTokenCredential
    kwargs: dict[str, Any] = {
        "base_url": endpoint,
        # The token's audience is the endpoint itself (public, sovereign and emulated clouds alike).
        "credential_scopes": [f"{endpoint}/.default"],
        # A fallback only: ARM's Retry-After on each poll takes precedence.
        "polling_interval": polling_interval,
    }
    if settings.static_token is not None:
        credential = StaticTokenCredential(settings.static_token)
        kwargs["authentication_policy"] = StaticBearerPolicy(settings.static_token)
    else:
        credential = DefaultAzureCredential()
    sub = settings.subscription_id
    return Clients(
        credential=credential,
        resources=ResourceManagementClient(credential, sub, **kwargs),
        network=NetworkManagementClient(credential, sub, **kwargs),
        compute=ComputeManagementClient(credential, sub, **kwargs),
    )
