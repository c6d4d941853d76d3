"""Turning Azure SDK exceptions into the ``ProviderError`` a user reads on the VM record.

ARM reports the same failures through different exception classes (SkuNotAvailable and a
quota refusal are both 409, which the SDK raises as ``ResourceExistsError``; an extension
failure ends the operation with a poll answering 200), so this branches on ``error.code``,
never on the class.
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from vmjournal.providers.base import ProviderError

# Codes ARM uses for conditions that pass by themselves.
_TRANSIENT_CODES = {
    "TooManyRequests",
    "RetryableError",
    "AnotherOperationInProgress",
    "InternalServerError",
    "ServiceUnavailable",
    "GatewayTimeout",
    "OperationPreempted",
}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def _detail_codes(error: Any) -> list[str]:
    codes: list[str] = []
    for detail in getattr(error, "details", None) or []:
        code = getattr(detail, "code", None)
        if code:
            codes.append(str(code))
        codes.extend(_detail_codes(detail))
    return codes


def to_provider_error(exc: AzureError) -> ProviderError:
    """The user-facing error for ``exc``: ARM's code and message, the codes of ``details[]``."""
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        # A credential that could not get a token (no login, no managed identity): it lists what it tried.
        return ProviderError("AuthenticationFailed", f"Could not authenticate to Azure: {exc.message}")
    if isinstance(exc, HttpResponseError):
        error = exc.error
        status = exc.status_code
        code = (error.code if error is not None else None) or ("TooManyRequests" if status == 429 else f"HTTP{status}")
        message = (error.message if error is not None else None) or exc.reason or exc.message
        retryable = code in _TRANSIENT_CODES or (status in _TRANSIENT_STATUS and status != 200)
        return ProviderError(code, str(message), details=_detail_codes(error), retryable=retryable)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return ProviderError(
            "AzureUnreachable", f"Azure Resource Manager did not answer: {exc.message}", retryable=True
        )
    return ProviderError(type(exc).__name__, exc.message, retryable=True)
