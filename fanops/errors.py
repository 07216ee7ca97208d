"""Every error the product raises on purpose.

    FanopsError                  base: carries a message that says what to do
    +-- RedisUnavailable         cannot reach (or start) the Redis server
    |   +-- RedisAuthFailed      it answered, and refused the password (no wait fixes it)
    +-- RedisEvicts              its memory policy deletes keys when full (events would be lost)
    +-- EmbeddedServerError      the embedded server binary failed to start
    +-- BadSettings              a settings value or template was rejected
    +-- TaskError                a follow-up action cannot be done
    |   +-- TaskNotFound
    |   +-- TaskClaimedByOther   another operator holds the task
    |   +-- TaskStateError       the task is not in a state that allows the action
    |   +-- SendError            a message could not go out on a channel (fanops.channels)
    |       +-- ChannelRefused   no consent or no address on it, or the provider is not set up
    |       +-- ProviderError    the provider refused or failed: its reason; the task stays claimed
    |           +-- ProviderRateLimited  it asked to wait: ``retry_after_s``
    +-- NotFound                 an unknown shop, room or viewer
    |   +-- NotArchived          the show has no archive (yet)
    +-- ArchiveError             an archived show's files cannot be written or read
    |   +-- RoomNotReady         the room's events are not all applied, or another process archives it
    |   +-- ArchiveCorrupt       a manifest is unreadable, or a file it names is missing or altered
    +-- LogWriteError            the applied-event log cannot be written (also an OSError)
    +-- ImportFileError          a customer file cannot be imported at all (its rows' faults are skipped)

Errors are converted to output only at the edges: one line on stderr and a
non-zero exit code in a CLI, ``st.error`` on a page.
"""

from __future__ import annotations


class FanopsError(Exception):
    """Base of the product's errors; ``str(e)`` is a complete one-line message."""


class RedisUnavailable(FanopsError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot reach Redis at {url} ({reason}): is the server running? "
            "set REDIS_URL or --redis, or leave both unset to use the embedded server"
        )


class RedisAuthFailed(RedisUnavailable):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        FanopsError.__init__(
            self, f"Redis at {url} refused the password ({reason}): put the right one in REDIS_URL or --redis "
            "(redis://:PASSWORD@HOST:PORT/0, rediss:// for TLS)")


class RedisEvicts(FanopsError):
    """The server would delete keys when full (``maxmemory`` with an evicting ``maxmemory-policy``)."""

    def __init__(self, url: str, policy: str, limit: int) -> None:
        self.url = url
        self.policy = policy
        super().__init__(
            f"Redis at {url} deletes keys when full (maxmemory {limit} bytes, maxmemory-policy {policy}): "
            "events would be lost or counted twice. Set maxmemory-policy to noeviction (redis-cli CONFIG SET "
            "maxmemory-policy noeviction, or your provider's parameter group); a full Redis then makes the "
            "product wait, holding the feed, and lose nothing")


class EmbeddedServerError(FanopsError):
    pass


class BadSettings(FanopsError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class NotFound(FanopsError):
    pass


class NotArchived(NotFound):
    """The show has no archive (no manifest): the message names the command that makes one."""


class ArchiveError(FanopsError):
    """An archived show's files cannot be written or read."""


class RoomNotReady(ArchiveError):
    """The room's events are not all applied yet, or another process is archiving it."""


class ArchiveCorrupt(ArchiveError):
    """The manifest is unreadable or a file it names is missing or altered."""


class LogWriteError(FanopsError, OSError):
    """The applied-event log cannot be written (disk full, folder not writable); an ``OSError``
    too, so that whoever catches the disk's errors catches this one."""


class ImportFileError(FanopsError):
    """A customer history file that cannot be read as a whole (missing, not UTF-8, no header or
    no ``viewer_id`` column); a bad row is not this: it is skipped with its reason."""


class TaskError(FanopsError):
    pass


class TaskNotFound(TaskError):
    pass


class TaskClaimedByOther(TaskError):
    def __init__(self, task: str, holder: str) -> None:
        self.task = task
        self.holder = holder
        super().__init__(f"task {task} is claimed by {holder}")


class TaskStateError(TaskError):
    def __init__(self, task: str, state: str, action: str) -> None:
        self.task = task
        self.state = state
        self.action = action
        super().__init__(f"cannot {action} task {task}: it is {state}")


class SendError(TaskError):
    """A message could not go out on ``channel``; the task is left as it was (claimed, if it was)."""

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"cannot send on {channel}: {reason}")


class ChannelRefused(SendError):
    """Nothing was sent: the viewer gave no consent or no address on the channel, or its provider
    is not set up. Nothing was claimed either."""


class ProviderError(SendError):
    """The provider answered with a refusal or could not be reached; ``status`` is its HTTP or SMTP
    code (0: no answer), ``reason`` its own words."""

    def __init__(self, channel: str, status: int, reason: str) -> None:
        self.status = status
        super().__init__(channel, f"{reason} (status {status})" if status else reason)


class ProviderRateLimited(ProviderError):
    """The provider asked to slow down: nothing was sent; try again after ``retry_after_s`` seconds."""

    def __init__(self, channel: str, status: int, reason: str, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(channel, status, f"{reason}: try again in {retry_after_s:g} s")
