"""A small, independent client for the madoguchi live-chat protocol, version 1.

Written from docs/protocol.md alone (not from the C++ code), so that it can test the hub
against the spec and show how to write a client in another language: all it needs is a
WebSocket library (here python3-websockets 10.4, asyncio API) and a JSON parser.

    async with VisitorClient("ws://127.0.0.1:8080") as v:
        welcome = await v.hello(locale="ja")
        ack = await v.send_message("送料はいくらですか")   # stored as ack["seq"]
        reply = await v.next_message(sender="bot")       # the bot's answer
        saved_token, saved_seq = v.token, v.highest_seq
    # later, on a new connection:
    async with VisitorClient("ws://127.0.0.1:8080") as v:
        await v.hello(token=saved_token, last_seq=saved_seq)
        missed = await v.replay()                        # everything after saved_seq

Every wait takes a timeout (seconds) and raises asyncio.TimeoutError when it runs out.
Frames that arrive while the client waits for something else are kept, in order, and are
returned by later calls (recv, next_message, next_event, ...). Every frame received is also
appended to `received`, so a caller can check the order in which frames arrived.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
import uuid
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional

import websockets

PROTOCOL_VERSION = 1
SUBPROTOCOL = "madoguchi.v1"
VISITOR_PATH = "/v1/visitor"
AGENT_PATH = "/v1/agent"
DEFAULT_TIMEOUT = 10.0

Frame = Dict[str, Any]

# Close codes (RFC 6455) the spec gives to errors that close the connection.
CLOSE_GOING_AWAY = 1001  # shutting_down
CLOSE_PROTOCOL_ERROR = 1002  # unsupported_version
CLOSE_INVALID_DATA = 1007  # invalid_utf8
CLOSE_POLICY_VIOLATION = 1008  # unauthorized, rate_limited (when it goes on)
CLOSE_TOO_BIG = 1009  # too_large

ConnectionClosed = websockets.ConnectionClosed


class ProtocolError(Exception):
    """The hub answered with an `error` frame where the client expected something else."""

    def __init__(self, frame: Frame):
        self.frame = frame
        self.code = frame.get("code")
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")


def new_client_id(prefix: str = "m") -> str:
    """A fresh client message id: 1 to 64 characters of A-Z a-z 0-9 _ - (here 34)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def now_ms() -> int:
    return int(time.time() * 1000)


def has_seq(frame: Frame) -> bool:
    """Stored messages and events carry an integer `seq`; typing, read, queue_position do not."""
    seq = frame.get("seq")
    return (
        frame.get("type") in ("message", "event")
        and isinstance(seq, int)
        and not isinstance(seq, bool)
    )


class Connection:
    """One WebSocket connection to an endpoint of the hub, speaking JSON text frames."""

    path = ""

    def __init__(self, base_url: str, *, drop_duplicates: bool = False):
        """base_url: "ws://host:port" (or wss://). drop_duplicates: drop message/event frames
        whose seq is not greater than the highest seen, as the spec tells clients to do; off by
        default so that tests can see exactly what the hub sends."""
        self.url = base_url.rstrip("/") + self.path
        self.drop_duplicates = drop_duplicates
        self.ws: Optional[websockets.WebSocketClientProtocol] = None
        self.received: List[Frame] = []  # every frame, in arrival order
        self.dropped: List[Frame] = []  # duplicates dropped when drop_duplicates is on
        self.highest_seq = 0  # the highest seq seen on this connection (or given to hello)
        self._pending: Deque[Frame] = collections.deque()  # received, not yet handed out

    # -- connection ---------------------------------------------------------------------

    async def connect(self, timeout: float = DEFAULT_TIMEOUT, local_addr=None, headers=None) -> "Connection":
        """local_addr: (host, port) to connect from, e.g. ("127.0.0.2", 0) for another address.
        headers: extra HTTP headers of the opening handshake (a dict)."""
        extra = {"local_addr": local_addr} if local_addr else {}
        if headers:
            extra["extra_headers"] = headers
        self.ws = await asyncio.wait_for(
            websockets.connect(
                self.url,
                subprotocols=[SUBPROTOCOL],
                open_timeout=timeout,
                close_timeout=5,
                max_size=None,  # the hub limits what *we* send; accept whatever it sends
                **extra,
            ),
            timeout,
        )
        return self

    async def disconnect(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def __aenter__(self):
        return await self.connect()

    async def __aexit__(self, *exc):
        await self.disconnect()

    @property
    def subprotocol(self) -> Optional[str]:
        return self.ws.subprotocol if self.ws else None

    @property
    def close_code(self) -> Optional[int]:
        return self.ws.close_code if self.ws else None

    @property
    def closed(self) -> bool:
        return self.ws is None or self.ws.closed

    # -- sending ------------------------------------------------------------------------

    async def send(self, frame: Frame) -> Frame:
        """Send one frame; "v": 1 is added. Returns the frame as sent."""
        frame = {"v": PROTOCOL_VERSION, **frame}
        await self.ws.send(json.dumps(frame, ensure_ascii=False))
        return frame

    async def send_raw(self, data) -> None:
        """Send a str as a text frame or bytes as a binary frame, unchecked (for tests)."""
        await self.ws.send(data)

    # -- receiving ----------------------------------------------------------------------

    async def _read_one(self, timeout: float) -> Frame:
        """Read the next frame from the socket into the log. Raises ConnectionClosed."""
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(text, bytes):
            raise AssertionError(f"the hub sent a binary frame ({len(text)} bytes); frames are text")
        frame = json.loads(text)
        if not isinstance(frame, dict):
            raise AssertionError(f"the hub sent a frame that is not a JSON object: {text[:200]}")
        self.received.append(frame)
        return frame

    def _accept(self, frame: Frame) -> bool:
        """Track the highest seq; False if the frame is a duplicate to drop."""
        if has_seq(frame):
            if frame["seq"] <= self.highest_seq and self.drop_duplicates:
                self.dropped.append(frame)
                return False
            self.highest_seq = max(self.highest_seq, frame["seq"])
        return True

    async def wait_for(self, match: Callable[[Frame], bool], timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The first frame (kept ones first, then new ones) for which match() is true. Frames
        that do not match are kept, in order, for later calls."""
        for i, frame in enumerate(self._pending):
            if match(frame):
                del self._pending[i]
                return frame
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"no matching frame within {timeout} s on {self.url}")
            frame = await self._read_one(remaining)
            if not self._accept(frame):
                continue
            if match(frame):
                return frame
            self._pending.append(frame)

    async def recv(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next frame."""
        return await self.wait_for(lambda f: True, timeout)

    def take_pending(self, match: Callable[[Frame], bool] = lambda f: True) -> List[Frame]:
        """Remove and return the kept frames that match, without reading the socket."""
        taken = [f for f in self._pending if match(f)]
        self._pending = collections.deque(f for f in self._pending if not match(f))
        return taken

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> Optional[int]:
        """Read (and keep) frames until the hub closes the connection; returns the close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise asyncio.TimeoutError(f"the hub did not close {self.url} within {timeout} s")
                frame = await self._read_one(remaining)
                if self._accept(frame):
                    self._pending.append(frame)
        except ConnectionClosed:
            pass
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code

    async def next_error(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        return await self.wait_for(lambda f: f.get("type") == "error", timeout)

    def errors(self) -> List[Frame]:
        return [f for f in self.received if f.get("type") == "error"]

    async def ping(self, id: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """`ping`; returns the `pong` with the same id. Frames the hub sent before the pong stay
        kept, so a ping is also a barrier: whatever the hub sent earlier has arrived."""
        id = id or new_client_id("p")
        await self.send({"type": "ping", "id": id})
        return await self.wait_for(lambda f: f.get("type") == "pong" and f.get("id") == id, timeout)

    async def _send_and_wait_ack(self, frame: Frame, timeout: float) -> Frame:
        """Send a `message` frame and wait for its `ack` (matched by id). An `error` about it
        (same id, or no id at all) raises ProtocolError."""
        msg_id = frame["id"]
        await self.send(frame)

        def match(f: Frame) -> bool:
            if f.get("type") == "ack" and f.get("id") == msg_id:
                return True
            return f.get("type") == "error" and f.get("id") in (msg_id, None)

        reply = await self.wait_for(match, timeout)
        if reply["type"] == "error":
            raise ProtocolError(reply)
        return reply


class VisitorClient(Connection):
    """A visitor on /v1/visitor: hello (new or resumed conversation), messages with an
    outbox and acks, typing, read receipts, ping."""

    path = VISITOR_PATH

    def __init__(self, base_url: str, **kwargs):
        super().__init__(base_url, **kwargs)
        self.token: Optional[str] = None
        self.conversation: Optional[str] = None
        self.state: Optional[str] = None
        self.welcome: Optional[Frame] = None
        self.hello_last_seq = 0
        # Messages sent and not yet acknowledged, by client id, in sending order. A real client
        # keeps this on disk and resends it after reconnecting (resend_outbox).
        self.outbox: "collections.OrderedDict[str, Frame]" = collections.OrderedDict()

    async def hello(
        self,
        token: Optional[str] = None,
        last_seq: Optional[int] = None,
        locale: Optional[str] = None,
        visitor: Optional[Dict[str, str]] = None,
        client: Optional[str] = "madoguchi-spec-client/1",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Frame:
        """Send `hello` and return the `welcome`. Without a token the hub starts a new
        conversation. Raises ProtocolError on an `error` (e.g. unauthorized)."""
        frame: Frame = {"type": "hello"}
        if token is not None:
            frame["token"] = token
        if last_seq is not None:
            frame["last_seq"] = last_seq
        if locale is not None:
            frame["locale"] = locale
        if visitor is not None:
            frame["visitor"] = visitor
        if client is not None:
            frame["client"] = client
        self.hello_last_seq = last_seq or 0
        self.highest_seq = max(self.highest_seq, self.hello_last_seq)
        await self.send(frame)
        reply = await self.wait_for(lambda f: f.get("type") in ("welcome", "error"), timeout)
        if reply["type"] == "error":
            raise ProtocolError(reply)
        self.welcome = reply
        self.conversation = reply.get("conversation")
        self.state = reply.get("state")
        self.token = reply.get("token") or token  # the token may be renewed on any welcome
        return reply

    async def replay(self, timeout: float = DEFAULT_TIMEOUT) -> List[Frame]:
        """The stored messages and events the hub replays after `welcome`: those with seq
        greater than the hello's last_seq, up to the welcome's last_seq, in arrival order.
        Frames without seq (typing, queue_position, ...) stay kept."""
        target = self.welcome.get("last_seq", 0)
        frames: List[Frame] = []
        if target <= self.hello_last_seq:
            return frames
        while True:
            frame = await self.wait_for(has_seq, timeout)
            frames.append(frame)
            if frame["seq"] >= target:
                return frames

    async def send_message(
        self,
        text: str,
        id: Optional[str] = None,
        attachments: Optional[List[Frame]] = None,
        choice: Optional[str] = None,
        extra: Optional[Frame] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Frame:
        """Send a `message` with a fresh client id (or the given one) and return its `ack`.
        The message stays in the outbox until the ack arrives."""
        frame: Frame = {"type": "message", "id": id or new_client_id(), "text": text}
        if attachments is not None:
            frame["attachments"] = attachments
        if choice is not None:
            frame["choice"] = choice
        if extra:
            frame.update(extra)
        self.outbox[frame["id"]] = frame
        ack = await self._send_and_wait_ack(frame, timeout)
        self.outbox.pop(frame["id"], None)
        return ack

    async def resend(self, id: str, text: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """Send again the message with this client id (from the outbox, or rebuilt from text)
        and return its `ack`; for a message the hub already has, ack.duplicate is true."""
        frame = self.outbox.get(id) or {"type": "message", "id": id, "text": text}
        self.outbox[id] = frame
        ack = await self._send_and_wait_ack(frame, timeout)
        self.outbox.pop(id, None)
        return ack

    async def resend_outbox(self, timeout: float = DEFAULT_TIMEOUT) -> List[Frame]:
        """After a reconnect: resend everything unacknowledged, in order, with the same ids."""
        return [await self.resend(id, timeout=timeout) for id in list(self.outbox)]

    async def typing(self, state: str = "start") -> None:
        await self.send({"type": "typing", "state": state})

    async def read(self, seq: int) -> None:
        await self.send({"type": "read", "seq": seq})

    async def next_message(self, sender: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next `message` frame, from `sender` (visitor, bot, agent) if given."""
        return await self.wait_for(
            lambda f: f.get("type") == "message" and (sender is None or f.get("from") == sender),
            timeout,
        )

    async def next_event(self, name: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next `event` frame, named `name` if given."""
        return await self.wait_for(
            lambda f: f.get("type") == "event" and (name is None or f.get("event") == name),
            timeout,
        )


class AgentClient(Connection):
    """A support agent on /v1/agent: hello with credentials, the queue, and actions on
    conversations (take, message, typing, read, transfer, hand_back, close)."""

    path = AGENT_PATH

    def __init__(self, base_url: str, **kwargs):
        super().__init__(base_url, **kwargs)
        self.agent: Optional[str] = None
        self.welcome: Optional[Frame] = None
        self.last_queue: List[Frame] = []

    async def hello(self, agent: str, password: str, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """Send `hello` with credentials; return the `welcome` after the `queue` frame that
        follows it has arrived (in last_queue). Raises ProtocolError on an `error`."""
        await self.send({"type": "hello", "agent": agent, "password": password})
        reply = await self.wait_for(lambda f: f.get("type") in ("welcome", "error"), timeout)
        if reply["type"] == "error":
            raise ProtocolError(reply)
        self.welcome = reply
        self.agent = reply.get("agent")
        queue = await self.wait_for(lambda f: f.get("type") == "queue", timeout)
        self.last_queue = queue.get("conversations", [])
        return reply

    async def queue(self, timeout: float = DEFAULT_TIMEOUT) -> List[Frame]:
        """Ask for the queue; returns its `conversations`."""
        await self.send({"type": "queue"})
        frame = await self.wait_for(lambda f: f.get("type") in ("queue", "error"), timeout)
        if frame["type"] == "error":
            raise ProtocolError(frame)
        self.last_queue = frame.get("conversations", [])
        return self.last_queue

    async def wait_queue(self, match: Callable[[List[Frame]], bool], timeout: float = DEFAULT_TIMEOUT) -> List[Frame]:
        """Wait for a `queue` frame (the hub sends one whenever the queue changes) whose
        conversations satisfy match()."""
        frame = await self.wait_for(
            lambda f: f.get("type") == "queue" and match(f.get("conversations", [])), timeout
        )
        self.last_queue = frame.get("conversations", [])
        return self.last_queue

    async def take(self, conversation: str, timeout: float = DEFAULT_TIMEOUT, resume: bool = False) -> Frame:
        """`take` (with `resume`: only if this agent holds it already): returns the
        `conversation` frame (with `handoff` and `messages`). Raises ProtocolError (conflict,
        not_found, ...) on an `error`."""
        frame: Frame = {"type": "take", "conversation": conversation}
        if resume:
            frame["resume"] = True
        await self.send(frame)
        frame = await self.wait_for(
            lambda f: (f.get("type") == "conversation" and f.get("conversation") == conversation)
            or f.get("type") == "error",
            timeout,
        )
        if frame["type"] == "error":
            raise ProtocolError(frame)
        return frame

    async def message(
        self,
        conversation: str,
        text: str,
        id: Optional[str] = None,
        attachments: Optional[List[Frame]] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Frame:
        """Reply to the visitor; returns the `ack`. Raises ProtocolError (forbidden, ...)."""
        frame: Frame = {"type": "message", "conversation": conversation, "id": id or new_client_id("a"), "text": text}
        if attachments is not None:
            frame["attachments"] = attachments
        return await self._send_and_wait_ack(frame, timeout)

    async def typing(self, conversation: str, state: str = "start") -> None:
        await self.send({"type": "typing", "conversation": conversation, "state": state})

    async def read(self, conversation: str, seq: int) -> None:
        await self.send({"type": "read", "conversation": conversation, "seq": seq})

    # The spec gives no direct answer to these three: their result shows as events
    # (transferred, handed_back, conversation_closed) and errors come as `error` frames.

    async def transfer(self, conversation: str, to: str) -> None:
        await self.send({"type": "transfer", "conversation": conversation, "to": to})

    async def hand_back(self, conversation: str) -> None:
        await self.send({"type": "hand_back", "conversation": conversation})

    async def close(self, conversation: str) -> None:
        """Close the *conversation* (not the connection: that is disconnect())."""
        await self.send({"type": "close", "conversation": conversation})

    async def next_for(self, conversation: str, type: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next frame about `conversation` (of `type` if given)."""
        return await self.wait_for(
            lambda f: f.get("conversation") == conversation and (type is None or f.get("type") == type),
            timeout,
        )


def seqs(frames: Iterable[Frame]) -> List[int]:
    return [f["seq"] for f in frames if has_seq(f)]
