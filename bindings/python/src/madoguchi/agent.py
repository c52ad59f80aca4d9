"""The support agent's live-chat client (madoguchi.h: mdg_agent_*, libmadoguchi 1.3 or later;
docs/client.md "The agent client").

    with madoguchi.AgentClient("ws://127.0.0.1:8080/v1/agent", "sato", password) as agent:
        agent.connect()
        queue = agent.wait_for(lambda ev: ev.kind is AgentEventKind.QUEUE and ev.queue)
        agent.take(queue.queue[0].conversation)
        conv = agent.wait_for(lambda ev: ev.kind is AgentEventKind.CONVERSATION)
        print(conv.handoff["reason"], [t.text for t in conv.transcript])
        agent.send(conv.conversation, "担当の佐藤です。")

Events reach Python as the visitor's Client hands them out (on_event on the network thread,
on_event in poll(), or events() / wait_for()); each AgentEvent is a frozen copy.
"""

from __future__ import annotations

import ctypes
import enum
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence

from . import _native
from ._native import check, cstring, enum_or_int, lib, opt_cstring, take_buf, utf8
from .bot import LogLevel, Logger, Text
from .client import AttachmentLike, Attachment, Event, State, _attachment_array, _LiveClient


class AgentEventKind(enum.IntEnum):
    """mdg_agent_event_kind."""

    STATE = 0
    WELCOME = 1
    QUEUE = 2
    CONVERSATION = 3
    MESSAGE = 4
    EVENT = 5
    ACK = 6
    TYPING = 7
    READ = 8
    ERROR = 9


class QueueEntry(NamedTuple):
    """One conversation of the hub's queue: handed off and waiting, or with an agent."""

    conversation: str
    state: str        # "waiting" or "agent"
    priority: float   # higher first
    locale: str
    reason: str       # why the bot handed off
    since: int        # ms since the epoch: when it was handed off
    agent: str        # who has it; "" while waiting


@dataclass(frozen=True)
class AgentEvent:
    """One thing that happened to the agent client. Plain data, safe to keep."""

    kind: AgentEventKind
    state: State
    conversation: str = ""        # the conversation it is about, if any
    frame: Optional[Event] = None  # message, event, ack, typing, read, error: the frame, read as a visitor's
    agent: str = ""               # welcome: the agent's name
    queue: "tuple[QueueEntry, ...]" = ()  # queue: the whole queue
    conversation_state: str = ""  # conversation: bot, waiting, agent, closed
    handoff: Optional[Dict[str, Any]] = None  # conversation: the bot's hand-off package ({} if none)
    transcript: "tuple[Event, ...]" = ()      # conversation: stored messages and events, by seq
    resumed: bool = False         # conversation: delivered before (a take again, a reconnect)
    raw: Optional[Dict[str, Any]] = field(default=None, repr=False)  # the protocol frame

    @classmethod
    def _from_c(cls, ev: _native.mdg_agent_event) -> "AgentEvent":
        s = _native.cstr
        queue = tuple(
            QueueEntry(s(q.conversation), s(q.state), q.priority, s(q.locale), s(q.reason), q.since, s(q.agent))
            for q in (ev.queue[i].contents for i in range(ev.queue_count)))
        transcript = tuple(Event._from_c(ev.transcript[i].contents) for i in range(ev.transcript_count))
        kind = enum_or_int(AgentEventKind, ev.kind)
        handoff = json.loads(ev.handoff_json.decode("utf-8")) if kind == AgentEventKind.CONVERSATION else None
        return cls(
            kind=kind, state=enum_or_int(State, ev.state), conversation=s(ev.conversation),
            frame=Event._from_c(ev.frame.contents) if ev.frame else None, agent=s(ev.agent), queue=queue,
            conversation_state=s(ev.conversation_state), handoff=handoff, transcript=transcript,
            resumed=bool(ev.resumed), raw=json.loads(ev.frame_json.decode("utf-8")) if ev.frame_json else None)


class AgentClient(_LiveClient):
    """A support agent's live-chat client: one connection to a hub's /v1/agent, logged in with
    the agent's name and password, with the visitor client's network thread, outbox (replies,
    in state_path when set), back-off and dispatch. Wrong credentials are final: an ERROR event
    "unauthorized", then State.CLOSED.

    Actions (take, transfer, hand_back, close_conversation, refresh_queue) need a connection:
    otherwise they raise madoguchi.Unavailable. Their answers are events (CONVERSATION, EVENT,
    QUEUE) or an ERROR event (conflict, forbidden, not_found). Every method may be called from
    any thread."""

    _prefix = "mdg_agent_"
    _what = "agent client"

    def __init__(self, url: str, agent: str, password: str, *, state_path=None,
                 backoff_ms: Optional[Sequence[int]] = None, jitter_percent: int = 30, dispatch: str = "callback",
                 on_event: Optional[Callable[[AgentEvent], None]] = None, logger: Optional[Logger] = None,
                 log_level: int = LogLevel.INFO):
        _native.require(0x010300, "madoguchi.AgentClient")
        self._start(dispatch, on_event)
        opts = _native.mdg_agent_options()
        check(lib().mdg_agent_options_init(ctypes.byref(opts), _native.AGENT_OPTIONS_VERSION))
        opts.url = cstring(url, "url")
        opts.agent = cstring(agent, "agent")
        opts.password = cstring(password, "password")
        opts.state_path = _native.opt_path_cstring(state_path, "state_path")
        self._open(opts, _native.AGENT_EVENT_CB, AgentEvent._from_c, backoff_ms, jitter_percent, logger, log_level)

    def refresh_queue(self) -> None:
        """Asks the hub for the queue again (it also comes by itself at every change)."""
        self._call("refresh_queue")

    def take(self, conversation: str) -> None:
        """Assigns the conversation to this agent; a CONVERSATION event brings the hand-off
        package and the transcript."""
        self._call("take", cstring(conversation, "conversation"))

    def transfer(self, conversation: str, to: str) -> None:
        """Gives the conversation to another agent, by name."""
        self._call("transfer", cstring(conversation, "conversation"), cstring(to, "to"))

    def hand_back(self, conversation: str) -> None:
        """Gives the conversation back to the bot."""
        self._call("hand_back", cstring(conversation, "conversation"))

    def close_conversation(self, conversation: str) -> None:
        """Closes the conversation (not the connection: that is close())."""
        self._call("close_conversation", cstring(conversation, "conversation"))

    def send(self, conversation: str, text: Text, attachments: Iterable[AttachmentLike] = ()) -> str:
        """Queues a reply to the visitor of `conversation` (in the outbox, and in state_path,
        when this returns) and returns its id, which the ACK event names. Works offline."""
        conv = cstring(conversation, "conversation")
        data = utf8(text)
        out = _native.mdg_message_id()
        atts = [a if isinstance(a, Attachment) else Attachment(**a) for a in attachments]
        if not atts:
            with self._handle as h:
                check(lib().mdg_agent_send(ctypes.byref(out), h, conv, data, len(data)))
        else:
            ptrs, count = _attachment_array(atts)
            with self._handle as h:
                check(lib().mdg_agent_send_attachments(ctypes.byref(out), h, conv, data, len(data), ptrs, count))
        return out.str.decode("ascii")

    def typing(self, conversation: str, active: bool = True) -> None:
        """Typing indicator for the visitor (ignored while not connected)."""
        self._call("typing", cstring(conversation, "conversation"), 1 if active else 0)

    def mark_read(self, conversation: str, seq: int) -> None:
        """Read receipt for the visitor, up to `seq` (ignored while not connected)."""
        self._call("mark_read", cstring(conversation, "conversation"), _native.integer(seq, "seq", 64))

    @property
    def queue(self) -> List[QueueEntry]:
        """The last queue the hub sent."""
        buf = _native.mdg_buf()
        self._out("queue_json", buf)
        return [QueueEntry(q["conversation"], q["state"], q["priority"], q["locale"], q["reason"], q["since"],
                           q["agent"]) for q in json.loads(take_buf(buf))]

    @property
    def conversations(self) -> List[str]:
        """The conversations this agent holds, as far as the client knows."""
        buf = _native.mdg_buf()
        self._out("conversations_json", buf)
        return json.loads(take_buf(buf))


__all__ = ["AgentClient", "AgentEvent", "AgentEventKind", "QueueEntry"]
