"""The exceptions of the madoguchi package: one per MDG_E* code of madoguchi.h.

Every failing call raises a subclass of madoguchi.Error that carries the C code (`code`,
negative, as madoguchi.h numbers it) and the library's message (`message`, what
mdg_error_last() said: what went wrong, where, and often how to fix it).
"""

from __future__ import annotations

from typing import Dict, Type


class Error(Exception):
    """A madoguchi call failed. `code` is the MDG_E* code, `message` the library's words."""

    code_name = "MDG_E?"

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(Error, ValueError):
    """MDG_EINVAL: a bad argument (invalid UTF-8, a malformed knowledge base, a bad option...)."""
    code_name = "MDG_EINVAL"


class NotFound(Error, LookupError):
    """MDG_ENOTFOUND: a file, an entry or a value does not exist."""
    code_name = "MDG_ENOTFOUND"


class Unavailable(Error):
    """MDG_EUNAVAILABLE: a file cannot be read or written, a state file is in use..."""
    code_name = "MDG_EUNAVAILABLE"


class DeadlineExceeded(Error, TimeoutError):
    """MDG_ETIMEDOUT: a deadline passed (close() with messages left in the outbox)."""
    code_name = "MDG_ETIMEDOUT"


class Closed(Error):
    """MDG_ECLOSED: the object is closed."""
    code_name = "MDG_ECLOSED"


class InternalError(Error):
    """MDG_EINTERNAL: a bug or an unexpected failure inside the library."""
    code_name = "MDG_EINTERNAL"


class OutOfMemory(Error, MemoryError):
    """MDG_ENOMEM."""
    code_name = "MDG_ENOMEM"


class LimitExceeded(Error):
    """MDG_ELIMIT: a size limit was hit."""
    code_name = "MDG_ELIMIT"


class Busy(Error):
    """MDG_EBUSY: not allowed now (close() from a callback; a conversation in use elsewhere)."""
    code_name = "MDG_EBUSY"


class NotSupported(Error):
    """MDG_ENOTSUP: not in this build of libmadoguchi (the bot, in a chat-only build)."""
    code_name = "MDG_ENOTSUP"


class VersionMismatch(Error):
    """MDG_EVERSION: an options struct of a version the library does not know."""
    code_name = "MDG_EVERSION"


BY_CODE: Dict[int, Type[Error]] = {
    -1: InvalidArgument,
    -2: NotFound,
    -3: Unavailable,
    -4: DeadlineExceeded,
    -5: Closed,
    -6: InternalError,
    -7: OutOfMemory,
    -8: LimitExceeded,
    -9: Busy,
    -10: NotSupported,
    -11: VersionMismatch,
}


def raise_for(code: int, message: str) -> None:
    raise BY_CODE.get(code, Error)(code, message or "madoguchi error %d" % code)
