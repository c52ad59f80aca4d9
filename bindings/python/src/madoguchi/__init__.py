"""madoguchi (窓口): the Python binding of libmadoguchi's C ABI (madoguchi.h).

A pure-Python ctypes package: nothing is compiled. It needs libmadoguchi.so.1 at run time,
found through (first match wins) madoguchi.load_library(path), $MADOGUCHI_LIBRARY, or the
dynamic loader's search path (LD_LIBRARY_PATH, an installed /usr/local/lib/libmadoguchi.so.1).

    import madoguchi
    with madoguchi.Bot.open("samples/kb/shop.json") as bot:
        reply = bot.ask("送料はいくらですか")
        print(reply.decision, reply.entry, reply.text)

See bindings/python/README.md and docs/c-api.md.
"""

from ._native import ABI_MAJOR, ENV_LIBRARY, LibraryNotFound, load_library
from .agent import AgentClient, AgentEvent, AgentEventKind, QueueEntry
from .bot import Bot, Candidate, Conversation, Decision, LogLevel, Option, Reply
from .client import Attachment, Client, Event, EventKind, State
from .errors import (
    Busy,
    Closed,
    DeadlineExceeded,
    Error,
    InternalError,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    NotSupported,
    OutOfMemory,
    Unavailable,
    VersionMismatch,
)

__version__ = "1.3.0"

FEATURE_BOT = 0x1
FEATURE_CLIENT = 0x2


def library_version() -> str:
    """The version of the libmadoguchi loaded ("1.1.0")."""
    from ._native import lib

    return lib().mdg_version().decode("ascii")


def features() -> int:
    """FEATURE_BOT | FEATURE_CLIENT, or FEATURE_CLIENT alone for a chat-only build."""
    from ._native import lib

    return int(lib().mdg_features())


__all__ = [
    "ABI_MAJOR", "ENV_LIBRARY", "FEATURE_BOT", "FEATURE_CLIENT", "AgentClient", "AgentEvent", "AgentEventKind",
    "Attachment", "Bot", "Busy", "Candidate",
    "Client", "Closed", "Conversation", "DeadlineExceeded", "Decision", "Error", "Event", "EventKind",
    "InternalError", "InvalidArgument", "LibraryNotFound", "LimitExceeded", "LogLevel", "NotFound",
    "NotSupported", "Option", "OutOfMemory", "QueueEntry", "Reply", "State", "Unavailable", "VersionMismatch", "features",
    "library_version", "load_library",
]
