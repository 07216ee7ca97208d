"""Sending follow-ups on real channels: email (SMTP), WhatsApp (Cloud API), SMS (Twilio).

Shared by ``python -m scoring tasks send`` and the queue screen, so it lives in ``fanops``
(neither side imports the other for it), beside the task state machine it records into
(``fanops.queue``). Modules:

- ``compose``: pure: who may be sent to, the email and payloads, the service window, tokens;
- ``smtp``, ``web``: the senders (smtplib; httpx for WhatsApp and Twilio);
- ``send``: ``send_task``, the one path from a task to a provider and back into the task;
- ``unsubscribe``: an unsubscribe (link, STOP reply) as a ``consent`` event.
"""

from __future__ import annotations

from fanops.channels.send import Sent, send_task, why_not, with_secrets

__all__ = ["Sent", "send_task", "why_not", "with_secrets"]
