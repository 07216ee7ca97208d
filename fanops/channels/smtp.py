"""Email over SMTP with the standard library: TLS from the start for ``smtps://``, STARTTLS where
the server offers it for ``smtp://``, login when the URL carries a user."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from fanops.channels.compose import DEFAULT_RETRY_S
from fanops.errors import ChannelRefused, ProviderError, ProviderRateLimited

CHANNEL = "email"


def _reason(code: int, msg: bytes | str) -> ProviderError:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    text = " ".join(text.split()) or "no reason given"
    if 400 <= code < 500:  # transient: the server asks to come back later, and says not when
        return ProviderRateLimited(CHANNEL, code, f"the mail server said to try later: {text}", DEFAULT_RETRY_S)
    return ProviderError(CHANNEL, code, f"the mail server refused the message: {text}")


def send_email(url: str, msg: EmailMessage, timeout_s: float, tls: ssl.SSLContext | None = None) -> None:
    """Deliver ``msg`` to the server of ``url``; raises ``ProviderError`` (its code and words) or
    ``ProviderRateLimited`` (a 4xx answer) when it is not accepted for every recipient."""
    u = urlsplit(url)
    if u.scheme not in ("smtp", "smtps") or not u.hostname:
        raise ChannelRefused(CHANNEL, "FANOPS_SMTP_URL must be smtp://user:pass@host:port or smtps://...")
    ctx = tls or ssl.create_default_context()
    host = u.hostname
    port = u.port or (465 if u.scheme == "smtps" else 587)
    try:
        server = (smtplib.SMTP_SSL(host, port, timeout=timeout_s, context=ctx) if u.scheme == "smtps"
                  else smtplib.SMTP(host, port, timeout=timeout_s))
        with server:
            server.ehlo()
            if u.scheme == "smtp" and server.has_extn("starttls"):
                server.starttls(context=ctx)
                server.ehlo()
            if u.username:
                server.login(unquote(u.username), unquote(u.password or ""))
            refused = server.send_message(msg)
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        raise _reason(code, text) from e
    except smtplib.SMTPResponseException as e:  # sender refused, data refused, auth failed, ...
        raise _reason(e.smtp_code, e.smtp_error) from e
    except (smtplib.SMTPException, OSError) as e:
        raise ProviderError(CHANNEL, 0, f"cannot reach the mail server {host}:{port} ({e or type(e).__name__}): "
                                        "check FANOPS_SMTP_URL") from e
    if refused:
        code, text = next(iter(refused.values()))
        raise _reason(code, text)
