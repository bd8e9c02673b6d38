"""Server TLS and mTLS: certificates from trustme, clients through grpc and grpcurl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from cryptography import x509
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from bench import credentials
from server.core import tls
from server.core.config import Settings
from tests.core.test_auth import own_server, whoami_of
from tests.core.test_grpcurl import grpcurl
from tests.harness import Backing, ServerThread
from tests.helpers import error_reason, new_profile


@dataclass
class Pki:
    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path
    folder: Path

    def client(
        self, name: str, ca: trustme.CA | None = None, stem: str = ""
    ) -> tuple[Path, Path, str]:
        """(certificate, key, subject as grpc reports it) of a client certificate."""
        issued = (ca or self.ca).issue_cert(f"{name}@example.org", common_name=name)
        cert, key = self.folder / f"{stem or name}.pem", self.folder / f"{stem or name}.key"
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        subject = x509.load_pem_x509_certificate(cert.read_bytes()).subject.rfc4514_string()
        return cert, key, subject


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    pki = Pki(ca, tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key", tmp_path)
    ca.cert_pem.write_to_path(str(pki.ca_file))
    pki.cert_file.write_bytes(b"".join(pem.bytes() for pem in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(pki.key_file))
    return pki


def _secure(
    server: ServerThread, pki: Pki, client: tuple[Path, Path, str] | None = None
) -> grpc.Channel:
    chain = {} if client is None else {"certificate_chain": client[0].read_bytes()}
    key = {} if client is None else {"private_key": client[1].read_bytes()}
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes(), **chain, **key)
    return grpc.secure_channel(server.address, creds)


def _get_profile(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        ProfileServiceStub(channel).GetProfile(
            profile_pb2.GetProfileRequest(name="profiles/1"), timeout=10
        )
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


@pytest.fixture
def tls_server(backing: Backing, pki: Pki) -> Iterator[ServerThread]:
    with own_server(backing, tls_cert_file=pki.cert_file, tls_key_file=pki.key_file) as server:
        yield server


def test_server_tls_serves_keys_over_tls_and_refuses_plaintext(
    backing: Backing, tls_server: ServerThread, pki: Pki
) -> None:
    with credentials.authorized(_secure(tls_server, pki), backing.admin_key) as channel:
        assert _get_profile(channel) == grpc.StatusCode.NOT_FOUND  # past authentication
    with _secure(tls_server, pki) as channel:
        assert _get_profile(channel) == grpc.StatusCode.UNAUTHENTICATED
    with backing.channel(tls_server.address) as plaintext:
        assert _get_profile(plaintext) == grpc.StatusCode.UNAVAILABLE


def test_grpcurl_over_tls(backing: Backing, tls_server: ServerThread, pki: Pki) -> None:
    tls_flags = ("-cacert", str(pki.ca_file))
    assert "socialhub.v1.ProfileService" in grpcurl(tls_server, "list", transport=tls_flags)
    created = json.loads(
        grpcurl(
            tls_server,
            "socialhub.v1.ProfileService/CreateProfile",
            data='{"profile": {"display_name": "Grace Hopper", "x": {"handle": "grace"}}}',
            key=backing.admin_key,
            transport=tls_flags,
        )
    )
    assert created["name"].startswith("profiles/")


@dataclass
class Clients:
    reader: tuple[Path, Path, str]
    admin: tuple[Path, Path, str]
    unmapped: tuple[Path, Path, str]
    stranger: tuple[Path, Path, str]


@pytest.fixture
def mtls(backing: Backing, pki: Pki) -> Iterator[tuple[ServerThread, Clients]]:
    clients = Clients(
        reader=pki.client("billing"),
        admin=pki.client("operator"),
        unmapped=pki.client("nobody"),
        # Same name, signed by a CA the server does not trust.
        stranger=pki.client("billing", ca=trustme.CA(), stem="stranger"),
    )
    principals = {
        clients.reader[2]: {"scopes": ["profiles.read"], "tenants": ["businesses/3"]},
        clients.admin[2]: {"scopes": ["admin"]},
    }
    with own_server(
        backing,
        tls_cert_file=pki.cert_file,
        tls_key_file=pki.key_file,
        tls_client_ca_file=pki.ca_file,
        tls_require_client_cert=True,
        tls_client_principals=principals,
    ) as server:
        yield server, clients


def test_a_verified_client_certificate_is_the_principal_its_subject_maps_to(
    mtls: tuple[ServerThread, Clients], pki: Pki
) -> None:
    server, clients = mtls
    with _secure(server, pki, clients.reader) as channel:
        assert _get_profile(channel) == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as caught:
            ProfileServiceStub(channel).CreateProfile(
                profile_pb2.CreateProfileRequest(profile=new_profile())
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with _secure(server, pki, clients.admin) as channel:
        who = whoami_of(channel)
        assert who["name"] == f"certificate {clients.admin[2]}"
        assert who["scopes"] == ["admin"]
    # The subject is RFC 4514 as the cryptography package and `openssl x509 -noout -subject
    # -nameopt RFC2253` print it: most specific first.
    assert clients.admin[2].startswith("CN=operator,OU=")


def test_a_bearer_key_decides_over_a_client_certificate(
    backing: Backing, mtls: tuple[ServerThread, Clients], pki: Pki
) -> None:
    server, clients = mtls
    key = backing.issue_key("tenant bound", ["admin"], tenants=["businesses/9"])
    with credentials.authorized(_secure(server, pki, clients.reader), key) as channel:
        assert whoami_of(channel)["tenants"] == ["businesses/9"]
    with credentials.authorized(_secure(server, pki, clients.admin), "not-a-key") as channel:
        assert _get_profile(channel) == grpc.StatusCode.UNAUTHENTICATED


def test_unmapped_unverified_and_missing_client_certificates_get_no_principal(
    mtls: tuple[ServerThread, Clients], pki: Pki
) -> None:
    server, clients = mtls
    with _secure(server, pki, clients.unmapped) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            ProfileServiceStub(channel).GetProfile(
                profile_pb2.GetProfileRequest(name="profiles/1"), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(caught.value) == "CLIENT_CERTIFICATE_UNKNOWN"
    # The handshake itself fails: the call never reaches the service.
    with _secure(server, pki, clients.stranger) as channel:
        assert _get_profile(channel) == grpc.StatusCode.UNAVAILABLE
    with _secure(server, pki) as channel:
        assert _get_profile(channel) == grpc.StatusCode.UNAVAILABLE


def test_grpcurl_with_a_client_certificate(mtls: tuple[ServerThread, Clients], pki: Pki) -> None:
    server, clients = mtls
    cert, key, _ = clients.reader
    flags = ("-cacert", str(pki.ca_file), "-cert", str(cert), "-key", str(key))
    summary = json.loads(
        grpcurl(server, "socialhub.v1.ProfileService/SummarizeProfiles", transport=flags)
    )
    assert summary == {}


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"tls_cert_file": "server.pem"}, "TLS_CERT_FILE and TLS_KEY_FILE"),
        ({"tls_client_ca_file": "ca.pem"}, "need server TLS"),
        (
            {
                "tls_cert_file": "server.pem",
                "tls_key_file": "server.key",
                "tls_client_ca_file": "ca.pem",
            },
            "TLS_REQUIRE_CLIENT_CERT=true",
        ),
        (
            {
                "tls_cert_file": "server.pem",
                "tls_key_file": "server.key",
                "tls_require_client_cert": True,
            },
            "needs TLS_CLIENT_CA_FILE",
        ),
        (
            {
                "tls_cert_file": "server.pem",
                "tls_key_file": "server.key",
                "tls_client_ca_file": "ca.pem",
                "tls_require_client_cert": True,
                "tls_client_principals": {"CN=x": {"scopes": ["profiles.delete"]}},
            },
            "profiles.delete",
        ),
        ({"tls_cert_file": "missing.pem", "tls_key_file": "server.key"}, "no such file"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    pki: Pki, settings: dict[str, Any], complaint: str
) -> None:
    given = {
        name: pki.folder / value if name.endswith("_file") else value
        for name, value in settings.items()
    }
    with pytest.raises(tls.TlsSettingsError, match=complaint):
        tls.check(Settings(**given))


def test_serve_refuses_a_client_ca_it_could_not_verify_with(backing: Backing, pki: Pki) -> None:
    env = (
        os.environ
        | backing.serve_env()
        | {
            "PORT": "0",
            "TLS_CERT_FILE": str(pki.cert_file),
            "TLS_KEY_FILE": str(pki.key_file),
            "TLS_CLIENT_CA_FILE": str(pki.ca_file),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "TLS_REQUIRE_CLIENT_CERT" in done.stderr
