"""Server TLS and mTLS from settings: the port's credentials, and client certificates' principals.

grpc Python (`ssl_server_credentials`) either does not ask for a client certificate at all
(`require_client_auth=False`, even with root certificates: a presented certificate is never
seen) or requires and verifies one. So a client CA only works with every client presenting
a certificate; `TLS_REQUIRE_CLIENT_CERT=true` says so explicitly, and a client CA without it
is refused instead of silently ignored. On such a port a bearer key still works and decides
who the caller is; a call without one is the principal its certificate's subject maps to.
"""

from __future__ import annotations

import grpc

from server.core.apikeys import check_scopes, check_tenants
from server.core.auth import Principal
from server.core.config import Settings


class TlsSettingsError(ValueError):
    """TLS settings that cannot work together."""


def check(settings: Settings) -> None:
    """Raise TlsSettingsError, naming the variables, for settings that cannot work."""
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise TlsSettingsError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")
    client_tls = (
        settings.tls_client_ca_file is not None
        or settings.tls_require_client_cert
        or bool(settings.tls_client_principals)
    )
    if client_tls and settings.tls_cert_file is None:
        raise TlsSettingsError(
            "client certificates (TLS_CLIENT_CA_FILE, TLS_REQUIRE_CLIENT_CERT, "
            "TLS_CLIENT_PRINCIPALS) need server TLS: set TLS_CERT_FILE and TLS_KEY_FILE"
        )
    if settings.tls_require_client_cert and settings.tls_client_ca_file is None:
        raise TlsSettingsError("TLS_REQUIRE_CLIENT_CERT needs TLS_CLIENT_CA_FILE")
    if settings.tls_client_ca_file is not None and not settings.tls_require_client_cert:
        raise TlsSettingsError(
            "TLS_CLIENT_CA_FILE needs TLS_REQUIRE_CLIENT_CERT=true: grpc verifies client "
            "certificates only when it requires them, so every client of the port must then "
            "present one (API keys still work on top)"
        )
    if settings.tls_client_principals and settings.tls_client_ca_file is None:
        raise TlsSettingsError("TLS_CLIENT_PRINCIPALS needs TLS_CLIENT_CA_FILE")
    for subject, principal in settings.tls_client_principals.items():
        try:
            check_scopes(principal.scopes)
            check_tenants(principal.tenants)
        except ValueError as error:
            raise TlsSettingsError(f"TLS_CLIENT_PRINCIPALS[{subject!r}]: {error}") from None
    for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise TlsSettingsError(f"{name.upper()}: no such file: {path}")


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The port's credentials, or None to serve plaintext."""
    check(settings)
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=None if client_ca is None else client_ca.read_bytes(),
        require_client_auth=client_ca is not None,
    )


def client_principals(settings: Settings) -> dict[str, Principal]:
    """Verified certificate subject -> principal (TLS_CLIENT_PRINCIPALS)."""
    return {
        subject: Principal(
            name=f"certificate {subject}",
            scopes=frozenset(given.scopes),
            tenants=tuple(given.tenants),
        )
        for subject, given in settings.tls_client_principals.items()
    }
