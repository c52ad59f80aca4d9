"""ctypes declarations of madoguchi.h, and the loading of libmadoguchi.so.1.

Private: the rest of the package goes through `lib()`. Every function gets its argtypes and
restype here, so that sizes (size_t, int64_t) and pointers cross the boundary correctly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_int,
    c_int64,
    c_size_t,
    c_uint,
    c_void_p,
)
from typing import Optional

from .errors import Closed, Error, raise_for

#: The C ABI major version this package speaks (the soname: libmadoguchi.so.1).
ABI_MAJOR = 1
#: The oldest libmadoguchi.so.1 this package works with (MDG_VERSION_NUMBER: 0xMMmmpp).
MIN_VERSION_NUMBER = 0x010100
ENV_LIBRARY = "MADOGUCHI_LIBRARY"

MDG_NTS = ctypes.c_size_t(-1).value


class mdg_buf(Structure):
    _fields_ = [("ptr", c_void_p), ("size", c_size_t)]


class mdg_candidate(Structure):
    _fields_ = [("entry", c_char_p), ("confidence", c_double), ("score", c_double), ("bm25", c_double)]


class mdg_option(Structure):
    _fields_ = [("label", c_void_p), ("label_size", c_size_t), ("entry", c_char_p)]


class mdg_attachment(Structure):
    _fields_ = [("name", c_char_p), ("type", c_char_p), ("size", c_int64), ("url", c_char_p)]


class mdg_event(Structure):
    _fields_ = [
        ("kind", c_int),
        ("state", c_int),
        ("conversation", c_char_p),
        ("conversation_state", c_char_p),
        ("id", c_char_p),
        ("seq", c_int64),
        ("last_seq", c_int64),
        ("at", c_int64),
        ("from_", c_char_p),
        ("agent", c_char_p),
        ("text", c_void_p),
        ("text_size", c_size_t),
        ("attachments", POINTER(POINTER(mdg_attachment))),
        ("attachment_count", c_size_t),
        ("bot_json", c_char_p),
        ("event", c_char_p),
        ("data_json", c_char_p),
        ("duplicate", c_int),
        ("typing", c_int),
        ("error", c_char_p),
        ("error_message", c_char_p),
        ("frame_json", c_char_p),
    ]


LOG_CB = CFUNCTYPE(None, c_int, c_char_p, c_void_p)
EVENT_CB = CFUNCTYPE(None, POINTER(mdg_event), c_void_p)

BOT_OPTIONS_VERSION = 1
CLIENT_OPTIONS_VERSION = 1


class mdg_bot_options(Structure):
    _fields_ = [
        ("version", c_uint),
        ("mecab_dicdir", c_char_p),
        ("max_message_bytes", c_size_t),
        ("settings", POINTER(c_char_p)),
        ("log_cb", LOG_CB),
        ("log_level", c_int),
        ("userdata", c_void_p),
    ]


class mdg_client_options(Structure):
    _fields_ = [
        ("version", c_uint),
        ("url", c_char_p),
        ("state_path", c_char_p),
        ("locale", c_char_p),
        ("visitor", POINTER(c_char_p)),
        ("backoff_ms", POINTER(c_int)),
        ("backoff_count", c_size_t),
        ("jitter_percent", c_int),
        ("dispatch", c_int),
        ("on_event", EVENT_CB),
        ("log_cb", LOG_CB),
        ("log_level", c_int),
        ("userdata", c_void_p),
    ]


class mdg_message_id(Structure):
    _fields_ = [("str", c_char * 72)]


class mdg_queue_entry(Structure):
    _fields_ = [
        ("conversation", c_char_p),
        ("state", c_char_p),
        ("priority", c_double),
        ("locale", c_char_p),
        ("reason", c_char_p),
        ("since", c_int64),
        ("agent", c_char_p),
    ]


class mdg_agent_event(Structure):
    _fields_ = [
        ("kind", c_int),
        ("state", c_int),
        ("conversation", c_char_p),
        ("frame", POINTER(mdg_event)),
        ("agent", c_char_p),
        ("queue", POINTER(POINTER(mdg_queue_entry))),
        ("queue_count", c_size_t),
        ("conversation_state", c_char_p),
        ("handoff_json", c_char_p),
        ("transcript", POINTER(POINTER(mdg_event))),
        ("transcript_count", c_size_t),
        ("resumed", c_int),
        ("frame_json", c_char_p),
    ]


AGENT_EVENT_CB = CFUNCTYPE(None, POINTER(mdg_agent_event), c_void_p)
AGENT_OPTIONS_VERSION = 1


class mdg_agent_options(Structure):
    _fields_ = [
        ("version", c_uint),
        ("url", c_char_p),
        ("agent", c_char_p),
        ("password", c_char_p),
        ("state_path", c_char_p),
        ("backoff_ms", POINTER(c_int)),
        ("backoff_count", c_size_t),
        ("jitter_percent", c_int),
        ("dispatch", c_int),
        ("on_event", AGENT_EVENT_CB),
        ("log_cb", LOG_CB),
        ("log_level", c_int),
        ("userdata", c_void_p),
    ]


_P = c_void_p  # opaque handles
_PP = POINTER(c_void_p)

# name: (restype, argtypes)
_SIGNATURES = {
    "mdg_version": (c_char_p, []),
    "mdg_version_number": (c_uint, []),
    "mdg_features": (c_uint, []),
    "mdg_error_last": (c_char_p, []),
    "mdg_error_last_code": (c_int, []),
    "mdg_error_clear": (None, []),
    "mdg_strerror": (c_char_p, [c_int]),
    "mdg_buf_dispose": (None, [POINTER(mdg_buf)]),
    # bot
    "mdg_bot_options_init": (c_int, [POINTER(mdg_bot_options), c_uint]),
    "mdg_bot_open_file": (c_int, [_PP, c_char_p, POINTER(mdg_bot_options)]),
    "mdg_bot_open_string": (c_int, [_PP, c_char_p, c_size_t, c_int, c_char_p, POINTER(mdg_bot_options)]),
    "mdg_bot_reload_file": (c_int, [_P, c_char_p]),
    "mdg_bot_reload_string": (c_int, [_P, c_char_p, c_size_t, c_int, c_char_p]),
    "mdg_bot_info_json": (c_int, [POINTER(mdg_buf), _P]),
    "mdg_bot_free": (None, [_P]),
    "mdg_bot_ask": (c_int, [_PP, _P, _P, c_char_p, c_size_t]),
    "mdg_conversation_new": (c_int, [_PP]),
    "mdg_conversation_free": (None, [_P]),
    "mdg_conversation_set_locale": (c_int, [_P, c_char_p]),
    "mdg_conversation_set_fallback_locale": (c_int, [_P, c_char_p]),
    "mdg_conversation_set_visitor": (c_int, [_P, c_char_p, c_char_p]),
    "mdg_conversation_set_slot": (c_int, [_P, c_char_p, c_char_p]),
    "mdg_conversation_slot": (c_int, [POINTER(mdg_buf), _P, c_char_p]),
    "mdg_conversation_hand_back": (c_int, [_P]),
    "mdg_conversation_add_turn": (c_int, [_P, c_char_p, c_char_p, c_size_t]),
    "mdg_conversation_turn": (c_int, [_P]),
    "mdg_conversation_handed_off": (c_int, [_P]),
    "mdg_conversation_json": (c_int, [POINTER(mdg_buf), _P]),
    "mdg_reply_decision": (c_int, [_P]),
    "mdg_decision_name": (c_char_p, [c_int]),
    "mdg_reply_text": (c_void_p, [_P, POINTER(c_size_t)]),
    "mdg_reply_entry": (c_char_p, [_P]),
    "mdg_reply_locale": (c_char_p, [_P]),
    "mdg_reply_reason": (c_char_p, [_P]),
    "mdg_reply_candidate_count": (c_size_t, [_P]),
    "mdg_reply_candidate": (POINTER(mdg_candidate), [_P, c_size_t]),
    "mdg_reply_option_count": (c_size_t, [_P]),
    "mdg_reply_option": (POINTER(mdg_option), [_P, c_size_t]),
    "mdg_reply_json": (c_int, [POINTER(mdg_buf), _P]),
    "mdg_reply_handoff_json": (c_int, [POINTER(mdg_buf), _P]),
    "mdg_reply_explain": (c_int, [POINTER(mdg_buf), _P]),
    "mdg_reply_free": (None, [_P]),
    # client
    "mdg_client_options_init": (c_int, [POINTER(mdg_client_options), c_uint]),
    "mdg_client_new": (c_int, [_PP, POINTER(mdg_client_options)]),
    "mdg_client_connect": (c_int, [_P]),
    "mdg_client_send": (c_int, [POINTER(mdg_message_id), _P, c_char_p, c_size_t]),
    "mdg_client_choose": (c_int, [POINTER(mdg_message_id), _P, c_char_p, c_char_p]),
    "mdg_client_send_attachments": (
        c_int, [POINTER(mdg_message_id), _P, c_char_p, c_size_t, POINTER(POINTER(mdg_attachment)), c_size_t]),
    "mdg_client_typing": (c_int, [_P, c_int]),
    "mdg_client_mark_read": (c_int, [_P, c_int64]),
    "mdg_client_poll": (c_int, [_P, c_int, c_size_t]),
    "mdg_client_state": (c_int, [POINTER(c_int), _P]),
    "mdg_client_conversation": (c_int, [POINTER(mdg_buf), _P]),
    "mdg_client_last_seq": (c_int, [POINTER(c_int64), _P]),
    "mdg_client_pending": (c_int, [POINTER(c_size_t), _P]),
    "mdg_client_close": (c_int, [_P, c_int]),
    "mdg_client_free": (None, [_P]),
    # agent (1.3)
    "mdg_agent_options_init": (c_int, [POINTER(mdg_agent_options), c_uint]),
    "mdg_agent_new": (c_int, [_PP, POINTER(mdg_agent_options)]),
    "mdg_agent_connect": (c_int, [_P]),
    "mdg_agent_refresh_queue": (c_int, [_P]),
    "mdg_agent_take": (c_int, [_P, c_char_p]),
    "mdg_agent_transfer": (c_int, [_P, c_char_p, c_char_p]),
    "mdg_agent_hand_back": (c_int, [_P, c_char_p]),
    "mdg_agent_close_conversation": (c_int, [_P, c_char_p]),
    "mdg_agent_send": (c_int, [POINTER(mdg_message_id), _P, c_char_p, c_char_p, c_size_t]),
    "mdg_agent_send_attachments": (
        c_int, [POINTER(mdg_message_id), _P, c_char_p, c_char_p, c_size_t, POINTER(POINTER(mdg_attachment)), c_size_t]),
    "mdg_agent_typing": (c_int, [_P, c_char_p, c_int]),
    "mdg_agent_mark_read": (c_int, [_P, c_char_p, c_int64]),
    "mdg_agent_poll": (c_int, [_P, c_int, c_size_t]),
    "mdg_agent_state": (c_int, [POINTER(c_int), _P]),
    "mdg_agent_pending": (c_int, [POINTER(c_size_t), _P]),
    "mdg_agent_queue_json": (c_int, [POINTER(mdg_buf), _P]),
    "mdg_agent_conversations_json": (c_int, [POINTER(mdg_buf), _P]),
    "mdg_agent_close": (c_int, [_P, c_int]),
    "mdg_agent_free": (None, [_P]),
}

#: Functions newer than MIN_VERSION_NUMBER: the version that brought them.
_SINCE = {"mdg_client_choose": 0x010100}
_SINCE.update({name: 0x010300 for name in _SIGNATURES if name.startswith("mdg_agent_")})

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def _candidates(path: Optional[str]):
    if path:
        yield path, "the path given to madoguchi.load_library()"
        return
    env = os.environ.get(ENV_LIBRARY)
    if env:
        yield env, "$" + ENV_LIBRARY
        return
    yield "libmadoguchi.so.%d" % ABI_MAJOR, "the dynamic loader's search path (LD_LIBRARY_PATH, ld.so.conf)"
    found = ctypes.util.find_library("madoguchi")
    if found:
        yield found, "ctypes.util.find_library('madoguchi')"
    for prefix in ("/usr/local/lib", "/usr/lib", "/usr/local/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"):
        yield os.path.join(prefix, "libmadoguchi.so.%d" % ABI_MAJOR), "the installed location " + prefix


def load_library(path: Optional[str] = None) -> ctypes.CDLL:
    """Loads libmadoguchi (once per process) and returns it.

    Where it looks, first match wins: `path`; else $MADOGUCHI_LIBRARY; else
    libmadoguchi.so.1 through the dynamic loader (LD_LIBRARY_PATH, the installed location
    registered with ldconfig), ctypes.util.find_library, /usr/local/lib and /usr/lib.
    Raises madoguchi.LibraryNotFound when none loads, or when the library's major version is
    not the one this package speaks."""
    global _lib
    with _lock:
        if _lib is not None:
            if path is not None and os.path.realpath(path) != os.path.realpath(_lib._name):
                raise LibraryNotFound("libmadoguchi is already loaded from %s" % _lib._name)
            return _lib
        tried = []
        for candidate, where in _candidates(path):
            try:
                lib = ctypes.CDLL(candidate)
            except OSError as e:
                tried.append("%s (%s): %s" % (candidate, where, e))
                continue
            lib.mdg_version_number.restype = c_uint
            lib.mdg_version_number.argtypes = []
            lib.mdg_version.restype = c_char_p
            lib.mdg_version.argtypes = []
            number = lib.mdg_version_number()
            if number >> 16 != ABI_MAJOR or number < MIN_VERSION_NUMBER:
                raise LibraryNotFound(
                    "%s is libmadoguchi %s; this package needs %d.x, at least %d.%d" % (
                        candidate, lib.mdg_version().decode(), ABI_MAJOR, MIN_VERSION_NUMBER >> 16,
                        (MIN_VERSION_NUMBER >> 8) & 0xFF))
            _declare(lib, number)
            _lib = lib
            return lib
        raise LibraryNotFound(
            "libmadoguchi.so.%d was not found. Build it (cmake --build --preset dev --target mdg_c) "
            "and set %s to its path, or install it. Tried:\n  %s" % (ABI_MAJOR, ENV_LIBRARY, "\n  ".join(tried)))


def _declare(lib: ctypes.CDLL, number: int) -> None:
    for name, (restype, argtypes) in _SIGNATURES.items():
        if _SINCE.get(name, 0) > number:
            continue  # the library is older: the function is not there (see require())
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def lib() -> ctypes.CDLL:
    return _lib if _lib is not None else load_library()


def require(version_number: int, what: str) -> None:
    """Raises madoguchi.NotSupported when the library loaded is older than `version_number`."""
    number = lib().mdg_version_number()
    if number < version_number:
        from .errors import NotSupported
        raise NotSupported(-10, "%s needs libmadoguchi %d.%d or later; the one loaded is %s" % (
            what, version_number >> 16, (version_number >> 8) & 0xFF, lib().mdg_version().decode()))


class LibraryNotFound(Error):
    """libmadoguchi.so.1 cannot be loaded (or is of another major version)."""

    def __init__(self, message: str):
        super().__init__(0, message)


# ---- helpers used by the other modules ---------------------------------------------------------

def check(rc: int) -> int:
    """Raises the madoguchi.Error for a negative return code, with mdg_error_last()."""
    if rc < 0:
        raise_for(rc, lib().mdg_error_last().decode("utf-8", "replace"))
    return rc


def utf8(text, what: str = "text") -> bytes:
    """str -> UTF-8 bytes; bytes pass as they are (the library checks them). For text passed
    with its size, which may hold NUL bytes."""
    if isinstance(text, str):
        return text.encode("utf-8", "surrogatepass")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError("%s must be str or bytes, not %s" % (what, type(text).__name__))


def cstring(text, what: str) -> bytes:
    """As utf8(), for a NUL-terminated argument (an id, key, locale, path, URL): a NUL byte
    inside would cut it short without a word, so it raises ValueError."""
    data = utf8(text, what)
    if b"\0" in data:
        raise ValueError("%s contains a NUL character (at index %d); it cannot be passed to the library"
                         % (what, data.index(b"\0")))
    return data


def opt_cstring(text, what: str) -> Optional[bytes]:
    return None if text is None else cstring(text, what)


def path_cstring(path, what: str) -> bytes:
    """A file path (str, bytes or os.PathLike) as the library takes it: bytes as they are, str
    encoded as the file system does (os.fsencode); ValueError for a NUL inside."""
    try:
        data = os.fsencode(path)
    except TypeError:
        raise TypeError("%s must be a path (str, bytes or os.PathLike), not %s" % (what, type(path).__name__)) from None
    return cstring(data, what)


def opt_path_cstring(path, what: str) -> Optional[bytes]:
    return None if path is None else path_cstring(path, what)


def integer(value, what: str, bits: int, signed: bool = True) -> int:
    """int(value), or OverflowError when the C type (`bits` wide) cannot hold it: ctypes would
    cut it down without a word (2**64 + 5 passed as 5)."""
    n = int(value)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= n <= high:
        raise OverflowError("%s is %d; it must be within %d..%d" % (what, n, low, high))
    return n


def millis(seconds: Optional[float]) -> int:
    """A timeout in seconds as the library's int milliseconds: None waits for ever (-1); longer
    than an int holds (about 24 days) is clamped to it, negative to 0."""
    if seconds is None:
        return -1
    return max(0, min(INT_MAX, int(seconds * 1000)))


INT_MAX = 2 ** 31 - 1


def enum_or_int(enum_type, value: int):
    """value as a member of `enum_type`, or the plain int when this package does not know it
    (a newer library's addition, which the C ABI counts as compatible)."""
    try:
        return enum_type(value)
    except ValueError:
        return value


def take_buf(buf: mdg_buf) -> str:
    """The text of an owned mdg_buf, which is disposed of."""
    try:
        return ctypes.string_at(buf.ptr, buf.size).decode("utf-8") if buf.ptr else ""
    finally:
        lib().mdg_buf_dispose(ctypes.byref(buf))


def text_at(ptr, size: int) -> str:
    return ctypes.string_at(ptr, size).decode("utf-8") if ptr and size else ""


class Handle:
    """A C handle that several threads may use at once, and the function that frees it.

    Every call into the library goes through `with handle as h:`. ctypes releases the GIL
    during a call, so another thread may close the object meanwhile: release() then only marks
    it closed (later calls raise madoguchi.Closed), and the C object is freed by whichever
    call leaves last. Nothing is ever freed under a thread still inside the library, and
    release() never waits (so it may run inside the object's own callback, or at garbage
    collection). `keepalive` (callbacks the C object may still call) is referenced until the
    C object is freed."""

    def __init__(self, function: str, handle, what: str, *keepalive, interrupt: Optional[str] = None) -> None:
        self._function = function
        self._handle = handle
        self._what = what
        self._keepalive = keepalive
        # For a client: mdg_*_close, called with timeout 0 when release() has to wait for a
        # call in progress, so that one blocked in poll() returns (from inside the client's own
        # callback it answers MDG_EBUSY and does nothing).
        self._interrupt = interrupt
        self._lock = threading.Lock()
        self._users = 0
        self._released = False
        self._freed = False

    def __enter__(self):
        with self._lock:
            if self._released:
                raise Closed(-5, "the %s is closed (freed)" % self._what)
            self._users += 1
        return self._handle

    def __exit__(self, *_exc) -> bool:
        with self._lock:
            self._users -= 1
            free = self._released and self._users == 0 and not self._freed
            self._freed = self._freed or free
        if free:
            self._free()
        return False

    @property
    def alive(self) -> bool:
        return not self._released

    def release(self) -> None:
        """Closes the object: at once when no call is inside the library, else when the last
        one returns. Idempotent."""
        with self._lock:
            if self._released:
                return
            self._released = True
            free = self._users == 0
            self._freed = self._freed or free
            interrupt = not free and self._interrupt is not None
            if interrupt:
                self._users += 1  # the interrupting call is one more: the last to leave frees
        if free:
            self._free()
        elif interrupt:
            try:
                getattr(lib(), self._interrupt)(self._handle, 0)
            finally:
                self.__exit__(None, None, None)

    def _free(self) -> None:
        getattr(lib(), self._function)(self._handle)
        self._keepalive = ()


def cstr(value: Optional[bytes]) -> str:
    return value.decode("utf-8") if value else ""
