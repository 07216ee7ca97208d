"""WhatsApp (Cloud API) and SMS (Twilio Messages API) over HTTP, with httpx and a timeout.

Each returns the provider's message id, or raises ``ProviderError`` with the provider's own reason
(``ProviderRateLimited`` with the time to wait when it asks to slow down: HTTP 429, or WhatsApp's
throughput error codes). Written against the payloads of the providers' documentation; the tests run
them against a local server answering with those payloads (there is no network here).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from fanops.channels.compose import retry_after_s, whatsapp_payload
from fanops.errors import ProviderError, ProviderRateLimited

# WhatsApp error codes that mean "too many, slow down" (Cloud API error codes reference)
WA_RATE_CODES = frozenset({4, 80007, 130429, 131048, 131056})
WA_OUTSIDE_WINDOW = 131047  # "Re-engagement message": more than 24 hours since the user last wrote


def _post(client: httpx.Client, channel: str, url: str, **kw: Any) -> httpx.Response:
    try:
        return client.post(url, **kw)
    except httpx.TimeoutException as e:
        raise ProviderError(channel, 0, f"no answer from {httpx.URL(url).host} in time ({type(e).__name__})") from e
    except httpx.HTTPError as e:
        raise ProviderError(channel, 0, f"cannot reach {httpx.URL(url).host} ({e or type(e).__name__})") from e


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        got = resp.json()
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def _fail(channel: str, resp: httpx.Response, reason: str, rate: bool) -> ProviderError:
    if rate or resp.status_code == 429:
        return ProviderRateLimited(channel, resp.status_code, reason,
                                   retry_after_s(resp.headers.get("retry-after"), time.time()))
    return ProviderError(channel, resp.status_code, reason)


def _wa_error(resp: httpx.Response) -> tuple[int, str]:
    err = _json(resp).get("error") or {}
    code = int(err.get("code") or 0) if str(err.get("code") or "0").isdigit() else 0
    detail = (err.get("error_data") or {}).get("details") if isinstance(err.get("error_data"), dict) else None
    words = " ".join(str(x) for x in (err.get("message"), detail) if x) or resp.reason_phrase or "no reason given"
    return code, f"WhatsApp: {words}" + (f" (code {code})" if code else "")


def send_whatsapp(client: httpx.Client, api: str, phone_id: str, token: str, to: str, message: str,
                  name: str, lang: str | None, template: str, session: bool) -> str:
    """Send one message; a session message the API refuses as outside the service window goes again
    as the template. Returns the ``wamid`` the API gives."""
    url = f"{api.rstrip('/')}/{phone_id}/messages"
    headers = {"Authorization": f"Bearer {token}"}
    resp = _post(client, "whatsapp", url, headers=headers,
                 json=whatsapp_payload(to, message, name, lang, template, session))
    if resp.status_code >= 400 and session and _wa_error(resp)[0] == WA_OUTSIDE_WINDOW:
        resp = _post(client, "whatsapp", url, headers=headers,
                     json=whatsapp_payload(to, message, name, lang, template, False))
    if resp.status_code >= 400:
        code, reason = _wa_error(resp)
        raise _fail("whatsapp", resp, reason, code in WA_RATE_CODES)
    msgs = _json(resp).get("messages") or []
    if not msgs or not isinstance(msgs[0], dict) or not msgs[0].get("id"):
        raise ProviderError("whatsapp", resp.status_code, "WhatsApp accepted the request but gave no message id")
    return str(msgs[0]["id"])


def send_sms(client: httpx.Client, api: str, sid: str, token: str, sender: str, to: str, message: str) -> str:
    """Send one SMS through Twilio's Messages resource; returns the message SID (SM...)."""
    url = f"{api.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
    form = {"To": to, "Body": message,
            **({"MessagingServiceSid": sender} if sender.startswith("MG") else {"From": sender})}
    resp = _post(client, "sms", url, auth=(sid, token), data=form)
    body = _json(resp)
    if resp.status_code >= 400:
        code = body.get("code")
        words = body.get("message") or resp.reason_phrase or "no reason given"
        reason = f"Twilio: {words}" + (f" (code {code})" if code else "")
        raise _fail("sms", resp, reason, code == 20429)
    if not body.get("sid"):
        raise ProviderError("sms", resp.status_code, "Twilio accepted the request but gave no message SID")
    return str(body["sid"])
