"""The visitor's live-chat client (madoguchi.h: mdg_client_*; docs/client.md).

    with madoguchi.Client("ws://127.0.0.1:8080/v1/visitor", state_path="chat.json") as client:
        client.connect()
        mid = client.send("送料はいくらですか")
        for ev in client.events(timeout=10):
            if ev.kind is EventKind.MESSAGE and ev.sender == "bot":
                print(ev.text)
                break

Events reach Python in one of three ways:
  - on_event=callable with dispatch="callback": called on the client's network thread, one
    event at a time (keep it short; it must be thread-safe with the rest of your program);
  - on_event=callable with dispatch="poll": called inside client.poll(), on your thread;
  - no on_event: events are queued and client.events() / client.wait_for() hand them out, on
    your thread, in either dispatch mode.
Each Event is a frozen copy made during the C callback, so it stays valid. An exception raised
by on_event never reaches the library: it is logged (logger "madoguchi") and kept in
client.callback_errors.
"""

from __future__ import annotations

import collections
import ctypes
import enum
import json
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Union

from . import _native
from ._native import check, cstring, enum_or_int, lib, millis, opt_cstring, take_buf, utf8
from .bot import LogLevel, Logger, Text, _log_trampoline
from .errors import Busy

_log = logging.getLogger("madoguchi")


class State(enum.IntEnum):
    """The connection state (mdg_state)."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2
    CLOSED = 3


class EventKind(enum.IntEnum):
    STATE = 0
    WELCOME = 1
    MESSAGE = 2
    EVENT = 3
    ACK = 4
    TYPING = 5
    READ = 6
    ERROR = 7


class Attachment(NamedTuple):
    """An attachment's metadata (the hub stores no file)."""

    name: str
    type: str
    size: int
    url: str


@dataclass(frozen=True)
class Event:
    """One thing that happened to the client. Plain data, safe to keep and pass between threads."""

    kind: EventKind
    state: State
    conversation: str = ""
    conversation_state: str = ""  # welcome: bot, waiting, agent, closed
    id: str = ""                  # message/ack: the message id; error: the id it is about
    seq: int = 0
    last_seq: int = 0
    at: int = 0                   # ms since the epoch
    sender: str = ""              # "from" in the protocol: visitor, bot or agent
    agent: str = ""
    text: str = ""
    attachments: "tuple[Attachment, ...]" = ()
    bot: Optional[Dict[str, Any]] = None   # a bot message's decision, entry, follow_ups, options
    event: str = ""               # handoff_started, agent_joined, ...
    data: Optional[Dict[str, Any]] = None  # the event's data
    duplicate: bool = False       # ack of a resend
    typing: bool = False          # typing started (True) or stopped
    error: str = ""               # error code: unauthorized, rate_limited, internal, ...
    error_message: str = ""
    frame: Optional[Dict[str, Any]] = field(default=None, repr=False)  # the protocol frame

    @classmethod
    def _from_c(cls, ev: _native.mdg_event) -> "Event":
        s = _native.cstr
        attachments = tuple(
            Attachment(s(a.contents.name), s(a.contents.type), a.contents.size, s(a.contents.url))
            for a in (ev.attachments[i] for i in range(ev.attachment_count)))

        def obj(raw: Optional[bytes]) -> Optional[Dict[str, Any]]:
            return json.loads(raw.decode("utf-8")) if raw else None

        return cls(
            kind=enum_or_int(EventKind, ev.kind), state=enum_or_int(State, ev.state), conversation=s(ev.conversation),
            conversation_state=s(ev.conversation_state), id=s(ev.id), seq=ev.seq, last_seq=ev.last_seq, at=ev.at,
            sender=s(ev.from_), agent=s(ev.agent), text=_native.text_at(ev.text, ev.text_size),
            attachments=attachments, bot=obj(ev.bot_json), event=s(ev.event), data=obj(ev.data_json),
            duplicate=bool(ev.duplicate), typing=bool(ev.typing), error=s(ev.error),
            error_message=s(ev.error_message), frame=obj(ev.frame_json))


AttachmentLike = Union[Attachment, Mapping[str, Any]]


class _LiveClient:
    """What the visitor's Client and the AgentClient share: the C handle (mdg_client_* or
    mdg_agent_*, by `_prefix`), event delivery in the three ways of the module's docstring,
    the connection state, the outbox count, close() and free()."""

    _prefix = ""  # "mdg_client_" or "mdg_agent_"
    _what = ""    # "client" or "agent client"
    #: How long the end of a `with` block waits for the outbox (seconds).
    close_timeout = 5.0

    def _start(self, dispatch: str, on_event) -> None:
        if dispatch not in ("callback", "poll"):
            raise ValueError("dispatch must be 'callback' or 'poll', not %r" % (dispatch,))
        self._poll_mode = dispatch == "poll"
        self._on_event = on_event
        self._queue: Deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self.callback_errors: List[BaseException] = []

    def _open(self, opts, callback_type, copy, backoff_ms, jitter_percent, logger, log_level) -> None:
        """Fills in the options both kinds of client share, creates the C client with
        mdg_*_new() and owns it."""
        _backoff(opts, backoff_ms)
        opts.jitter_percent = _native.integer(jitter_percent, "jitter_percent", 32)
        opts.dispatch = 1 if self._poll_mode else 0
        event_cb = callback_type(_event_trampoline(weakref.ref(self), copy))
        log_cb = _log_trampoline(logger)
        opts.on_event = event_cb
        opts.log_cb = log_cb
        opts.log_level = _native.integer(log_level, "log_level", 32)
        handle = ctypes.c_void_p()
        check(self._fn("new")(ctypes.byref(handle), ctypes.byref(opts)))
        # The callbacks must outlive the C object: they are released with it.
        self._handle = _native.Handle(self._prefix + "free", handle, self._what, event_cb, log_cb,
                                      interrupt=self._prefix + "close")
        self._finalizer = weakref.finalize(self, self._handle.release)

    def _fn(self, name: str):
        return getattr(lib(), self._prefix + name)

    def _call(self, name: str, *args) -> int:
        fn = self._fn(name)
        with self._handle as h:
            return check(fn(h, *args))

    def _out(self, name: str, out) -> None:
        fn = self._fn(name)
        with self._handle as h:
            check(fn(ctypes.byref(out), h))

    # -- events ----------------------------------------------------------------------------------

    def _deliver(self, ev) -> None:
        if not self._handle.alive:
            return  # freed (from another thread, or by an earlier callback): no event follows
        if self._on_event is not None:
            try:
                self._on_event(ev)
            except BaseException as e:  # noqa: BLE001 - nothing may unwind into C
                if len(self.callback_errors) < 100:
                    self.callback_errors.append(e)
                _log.exception("madoguchi: on_event raised")
            return
        with self._cond:
            self._queue.append(ev)
            self._cond.notify_all()

    def poll(self, timeout: Optional[float] = 0.0, max_events: int = 0) -> int:
        """dispatch="poll": waits up to `timeout` seconds (None: until an event) and delivers the
        queued events on this thread; returns how many. With dispatch="callback": 0."""
        return self._call("poll", millis(timeout), max_events)

    def events(self, timeout: Optional[float] = None) -> Iterator[Any]:
        """Yields events as they come (without on_event), until `timeout` seconds have passed
        (None: until the client is closed and nothing is left)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                ev = self._queue.popleft() if self._queue else None
            if ev is not None:
                yield ev
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            if not self._handle.alive:
                return
            if self._poll_mode:
                step = 0.1 if left is None else min(0.1, left)
                if self.poll(step) == 0 and self.state is State.CLOSED:
                    with self._cond:
                        if not self._queue:
                            return
            else:
                with self._cond:
                    if not self._queue:
                        if self.state is State.CLOSED and left is None:
                            return
                        self._cond.wait(0.1 if left is None else min(0.1, left))

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 15.0) -> Any:
        """The first event (without on_event) for which predicate(event) holds; the events
        before it are dropped. Raises TimeoutError after `timeout` seconds."""
        for ev in self.events(timeout):
            if predicate(ev):
                return ev
        raise TimeoutError("no matching event within %.1f s" % timeout)

    # -- state and lifetime ----------------------------------------------------------------------

    def connect(self) -> None:
        """Starts the network thread, which connects and keeps reconnecting."""
        self._call("connect")

    @property
    def state(self) -> State:
        out = ctypes.c_int()
        self._out("state", out)
        return enum_or_int(State, out.value)

    @property
    def pending(self) -> int:
        """Messages in the outbox: sent or not, not acknowledged yet."""
        out = ctypes.c_size_t()
        self._out("pending", out)
        return out.value

    def close(self, timeout: float = 5.0) -> None:
        """Flushes the outbox for up to `timeout` seconds, closes the connection and stops the
        network thread. Raises madoguchi.DeadlineExceeded when messages are left (they stay in
        state_path), madoguchi.Busy from inside on_event."""
        self._call("close", millis(max(0.0, timeout)))

    def free(self) -> None:
        """Releases the client without waiting for the outbox (idempotent). Calls running on
        other threads finish first (and no event reaches Python after this returns); later
        ones raise madoguchi.Closed."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self._handle.alive:
                self.close(self.close_timeout)
        finally:
            self.free()


def _backoff(opts, backoff_ms: Optional[Sequence[int]]):
    """Sets opts.backoff_ms/backoff_count (ctypes keeps the array alive with opts)."""
    if not backoff_ms:
        return None
    arr = (ctypes.c_int * len(backoff_ms))(*[_native.integer(b, "backoff_ms", 32) for b in backoff_ms])
    opts.backoff_ms = arr
    opts.backoff_count = len(backoff_ms)
    return arr


class Client(_LiveClient):
    """A visitor's live-chat client: one connection to a hub's /v1/visitor, kept alive by its
    own network thread, with an outbox that never loses a message (in state_path when set).

    Every method may be called from any thread. free() (or the end of a `with` block, or the
    garbage collector) releases it; close(timeout) first flushes the outbox."""

    _prefix = "mdg_client_"
    _what = "client"

    def __init__(self, url: str, *, state_path=None, locale: Optional[str] = None,
                 visitor: Optional[Mapping[str, str]] = None, backoff_ms: Optional[Sequence[int]] = None,
                 jitter_percent: int = 30, dispatch: str = "callback",
                 on_event: Optional[Callable[[Event], None]] = None, logger: Optional[Logger] = None,
                 log_level: int = LogLevel.INFO):
        self._start(dispatch, on_event)
        opts = _native.mdg_client_options()
        check(lib().mdg_client_options_init(ctypes.byref(opts), _native.CLIENT_OPTIONS_VERSION))
        opts.url = cstring(url, "url")
        opts.state_path = _native.opt_path_cstring(state_path, "state_path")
        opts.locale = opt_cstring(locale, "locale")
        if visitor:
            flat = []
            for k, v in visitor.items():
                flat += [cstring(k, "visitor key"), cstring(v, "visitor value")]
            opts.visitor = (ctypes.c_char_p * (len(flat) + 1))(*flat, None)  # kept alive by opts
        self._open(opts, _native.EVENT_CB, Event._from_c, backoff_ms, jitter_percent, logger, log_level)

    def send(self, text: Text, attachments: Iterable[AttachmentLike] = ()) -> str:
        """Queues a message (in the outbox, and in state_path, when this returns) and returns its
        id, which the ACK event names. Works before connect() and offline."""
        data = utf8(text)
        out = _native.mdg_message_id()
        atts = [a if isinstance(a, Attachment) else Attachment(**a) for a in attachments]
        if not atts:
            with self._handle as h:
                check(lib().mdg_client_send(ctypes.byref(out), h, data, len(data)))
        else:
            ptrs, count = _attachment_array(atts)
            with self._handle as h:
                check(lib().mdg_client_send_attachments(ctypes.byref(out), h, data, len(data), ptrs, count))
        return out.str.decode("ascii")

    def choose(self, option: Mapping[str, str]) -> str:
        """Queues the visitor's pick of one of a bot message's `event.bot["options"]` (a
        clarification) or `event.bot["suggestions"]` (an answer's related questions), each
        {"label": ..., "entry": ...}: sent with the label as its text and the entry as its
        choice, so that the bot answers with that entry. The same outbox as send(); returns the
        message id."""
        entry, label = option.get("entry"), option.get("label")
        if not entry or not label:
            raise TypeError("choose() takes one of event.bot['options'] or ['suggestions']: a mapping with "
                            "'entry' and 'label'")
        out = _native.mdg_message_id()
        e, l = cstring(entry, "entry"), cstring(label, "label")
        with self._handle as h:
            check(lib().mdg_client_choose(ctypes.byref(out), h, e, l))
        return out.str.decode("ascii")

    def typing(self, active: bool = True) -> None:
        """Tells the other side the visitor is typing (ignored while not connected)."""
        self._call("typing", 1 if active else 0)

    def mark_read(self, seq: int) -> None:
        """Tells the other side the visitor has read up to `seq` (ignored while not connected)."""
        self._call("mark_read", _native.integer(seq, "seq", 64))

    @property
    def conversation(self) -> str:
        buf = _native.mdg_buf()
        self._out("conversation", buf)
        return take_buf(buf)

    @property
    def last_seq(self) -> int:
        out = ctypes.c_int64()
        self._out("last_seq", out)
        return out.value


def _attachment_array(atts: Sequence[Attachment]):
    """The attachments as the C array of pointers that mdg_*_send_attachments() takes (the
    structs are kept alive by the array's _objects)."""
    structs = [_native.mdg_attachment(cstring(a.name, "attachment name"), cstring(a.type, "attachment type"),
                                      _native.integer(a.size, "attachment size", 64), cstring(a.url, "attachment url")) for a in atts]
    ptrs = (ctypes.POINTER(_native.mdg_attachment) * len(structs))(*[ctypes.pointer(s) for s in structs])
    return ptrs, len(structs)


def _event_trampoline(client_ref: "weakref.ReferenceType[_LiveClient]", copy):
    """The C event callback: copies the event (with `copy`), then hands it to the client.
    Never raises."""

    def call(ev_ptr, _userdata) -> None:
        try:
            client = client_ref()
            if client is None:
                return
            client._deliver(copy(ev_ptr.contents))
        except BaseException:  # noqa: BLE001 - nothing may unwind into C
            _log.exception("madoguchi: could not deliver an event")

    return call


__all__ = ["Attachment", "Busy", "Client", "Event", "EventKind", "State"]
