"""Email over TLS to an SMTP server on loopback with a certificate made for the test: STARTTLS then
login on ``smtp://``, TLS from the first byte on ``smtps://``; a certificate the client does not trust
is refused, and so is a wrong password."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from fanops.channels import compose
from fanops.channels.smtp import send_email
from fanops.errors import ProviderError
from tests.scoring.test_channels import Mailbox, free_port


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


def server_ctx(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*map(str, cert))
    return ctx


def check_login(server, session, envelope, mechanism, auth_data):  # aiosmtpd's authenticator
    return AuthResult(success=(auth_data.login, auth_data.password) == (b"shop", b"p@ss word"), handled=False)


@pytest.fixture
def starttls(cert) -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    c = Controller(box, hostname="127.0.0.1", port=port, tls_context=server_ctx(cert), require_starttls=True,
                   authenticator=check_login, auth_required=True, auth_exclude_mechanism=["LOGIN"])
    c.start()
    try:
        yield box, port
    finally:
        c.stop()


@pytest.fixture
def smtps(cert) -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    c = Controller(box, hostname="127.0.0.1", port=port, ssl_context=server_ctx(cert))
    c.start()
    try:
        yield box, port
    finally:
        c.stop()


def mail() -> compose.EmailMessage:
    return compose.email_message("Hi Ana! Thanks for coming.", "Shop <hi@shop.example>", "ana@example.com",
                                 compose.unsubscribe_links("hi@shop.example", "", ""))


def trusting(cert) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


def test_starttls_then_login(starttls, cert):
    box, port = starttls
    send_email(f"smtp://shop:p%40ss%20word@127.0.0.1:{port}", mail(), 10, tls=trusting(cert))
    assert [(f, to, m["Subject"]) for f, to, m in box.got] == [("hi@shop.example", ["ana@example.com"], "Hi Ana!")]
    with pytest.raises(ProviderError, match="status 535"):
        send_email(f"smtp://shop:wrong@127.0.0.1:{port}", mail(), 10, tls=trusting(cert))
    assert len(box.got) == 1


def test_smtps_and_a_certificate_not_trusted(smtps, cert):
    box, port = smtps
    send_email(f"smtps://127.0.0.1:{port}", mail(), 10, tls=trusting(cert))
    assert len(box.got) == 1
    with pytest.raises(ProviderError, match="CERTIFICATE_VERIFY_FAILED"):
        send_email(f"smtps://127.0.0.1:{port}", mail(), 10)  # the system's trust: not this certificate
    assert len(box.got) == 1
