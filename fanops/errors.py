"""Every error the product raises on purpose.

    FanopsError                  base: carries a message that says what to do
    +-- RedisUnavailable         cannot reach (or start) the Redis server
    |   +-- RedisAuthFailed      it answered, and refused the password (no wait fixes it)
    +-- EmbeddedServerError      the embedded server binary failed to start
    +-- BadSettings              a settings value or template was rejected
    +-- TaskError                a follow-up action cannot be done
    |   +-- TaskNotFound
    |   +-- TaskClaimedByOther   another operator holds the task
    |   +-- TaskStateError       the task is not in a state that allows the action
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
