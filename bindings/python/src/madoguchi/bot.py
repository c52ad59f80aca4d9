"""The FAQ bot: Bot, Conversation, Reply (madoguchi.h: mdg_bot_*, mdg_conversation_*, mdg_reply_*).

    with madoguchi.Bot.open("samples/kb/shop.json") as bot:
        conv = madoguchi.Conversation()
        reply = bot.ask("送料はいくらですか", conv)
        print(reply.decision, reply.entry, reply.text)
        for c in reply.candidates:
            print(c.entry, c.confidence)

Threads: a Bot may be asked from many threads at once (the GIL is released while it answers),
and reloaded while they ask. A Conversation is used by one thread at a time (madoguchi.Busy
otherwise). A Reply is immutable.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import json
import logging
import os
import weakref
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Union

from . import _native
from ._native import check, cstring, lib, opt_cstring, take_buf, text_at, utf8

Text = Union[str, bytes]
Logger = Callable[[int, str], None]

_log = logging.getLogger("madoguchi")


class Decision(enum.IntEnum):
    """What the bot decided (mdg_decision)."""

    ANSWER = 0
    REPLY = 1
    CLARIFY = 2
    HANDOFF = 3
    FALLBACK = 4

    def __str__(self) -> str:
        return self.name.lower()


class LogLevel(enum.IntEnum):
    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3
    OFF = 4


_FORMATS = {"json": 0, "csv": 1, "tsv": 2}


class Candidate(NamedTuple):
    """An entry the bot considered, best first."""

    entry: str
    confidence: float  # calibrated, 0..1
    score: float
    bm25: float


class Option(NamedTuple):
    """A clarification option: answer with its number (from 1) or its label."""

    label: str
    entry: str


def _log_trampoline(logger: Optional[Logger]):
    """A C log callback that calls `logger(level, message)`; never lets an exception through."""
    if logger is None:
        return _native.LOG_CB()

    def call(level: int, message: bytes, _userdata) -> None:
        try:
            logger(level, message.decode("utf-8", "replace"))
        except BaseException:  # noqa: BLE001 - nothing may unwind into C
            _log.exception("madoguchi: the log callback raised")

    return _native.LOG_CB(call)


@dataclasses.dataclass(frozen=True)
class _BotOptions:
    """The keyword options of both Bot.open() and Bot.from_string() and their defaults, the
    one place that names them (mdg_bot_options). Bot.open() tells what they mean."""

    mecab_dicdir: Union[str, os.PathLike, None] = None
    max_message_bytes: int = 0
    settings: Union[Mapping[str, Any], Sequence[str], None] = None
    logger: Optional[Logger] = None
    log_level: int = LogLevel.INFO

    @classmethod
    def from_keywords(cls, function: str, keywords: Mapping[str, Any], also: Sequence[str] = ()) -> "_BotOptions":
        """The options `keywords` give; a keyword that is none of them is a TypeError worded as
        Python's own, naming it and the keywords `function` takes (`also` and the options)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in keywords if k not in names]
        if unknown:
            what = "an unexpected keyword argument" if len(unknown) == 1 else "unexpected keyword arguments"
            raise TypeError("%s() got %s %s; its keywords are %s" % (
                function, what, ", ".join(repr(k) for k in unknown), ", ".join([*also, *names])))
        return cls(**keywords)

    def to_c(self):
        """The C options, and the log callback, which must outlive the bot they open."""
        opts = _native.mdg_bot_options()
        check(lib().mdg_bot_options_init(ctypes.byref(opts), _native.BOT_OPTIONS_VERSION))
        if self.mecab_dicdir is not None:
            opts.mecab_dicdir = _native.path_cstring(self.mecab_dicdir, "mecab_dicdir")
        opts.max_message_bytes = _native.integer(self.max_message_bytes, "max_message_bytes", 64, signed=False)
        items = _settings_list(self.settings)
        if items:
            # opts keeps the array alive (ctypes' _objects); the library copies the settings.
            opts.settings = (ctypes.c_char_p * (len(items) + 1))(*[cstring(s, "setting") for s in items], None)
        log_cb = _log_trampoline(self.logger)
        opts.log_cb = log_cb
        opts.log_level = _native.integer(self.log_level, "log_level", 32)
        return opts, log_cb


class _NoHandle:
    """`with` stand-in for an optional handle: gives None."""

    def __enter__(self):
        return None

    def __exit__(self, *_exc) -> bool:
        return False


_NO_HANDLE = _NoHandle()


class Bot:
    """A knowledge base built into a bot. Open it with Bot.open() or Bot.from_string().

    Close it with close(), or use it as a context manager; replies and conversations stay
    valid after it is closed."""

    def __init__(self, *_args, **_kwargs):
        raise TypeError("use madoguchi.Bot.open(path) or madoguchi.Bot.from_string(text)")

    @classmethod
    def _new(cls, opener, options: "_BotOptions") -> "Bot":
        self = object.__new__(cls)
        opts, log_cb = options.to_c()
        handle = ctypes.c_void_p()
        check(opener(ctypes.byref(handle), ctypes.byref(opts)))
        # The log callback must live as long as the C bot, which may log on a reload.
        self._handle = _native.Handle("mdg_bot_free", handle, "bot", log_cb)
        self._finalizer = weakref.finalize(self, self._handle.release)
        return self

    @classmethod
    def open(cls, path, **options: Any) -> "Bot":
        """Loads a knowledge base file (.json, .csv, .tsv) and builds a bot.

        Keyword options (another keyword raises TypeError): mecab_dicdir, the MeCab dictionary
        (None: the library looks for one); max_message_bytes, longer messages are cut (0: the
        library's 16 KiB); settings, overrides such as {"policy.answer_threshold": 0.6} or
        ["ranking.k1=1.1"], applied again on every reload; logger(level, message) receives the
        library's log lines of log_level (LogLevel.INFO) and above, from whatever thread logs.
        Raises madoguchi.InvalidArgument for a malformed knowledge base (the message names the
        file, line and entry), madoguchi.NotFound..."""
        resolved = _BotOptions.from_keywords("Bot.open", options)
        p = _native.path_cstring(path, "path")
        return cls._new(lambda out, o: lib().mdg_bot_open_file(out, p, o), resolved)

    @classmethod
    def from_string(cls, text: Text, format: str = "json", source_name: Optional[str] = None,
                    **options: Any) -> "Bot":
        """Builds a bot from knowledge base text in `format` ("json", "csv" or "tsv").

        options: the same keywords as Bot.open(), with the same defaults."""
        resolved = _BotOptions.from_keywords("Bot.from_string", options, also=("format", "source_name"))
        data = utf8(text)
        fmt = _format(format)
        name = opt_cstring(source_name, "source_name")
        return cls._new(lambda out, o: lib().mdg_bot_open_string(out, data, len(data), fmt, name, o), resolved)

    # -- use -----------------------------------------------------------------------------------

    def ask(self, text: Text, conversation: Optional["Conversation"] = None) -> "Reply":
        """Answers one visitor message within `conversation` (a one-off conversation if None)."""
        if conversation is not None and not isinstance(conversation, Conversation):
            raise TypeError("conversation must be a madoguchi.Conversation or None, not %s" % type(conversation).__name__)
        data = utf8(text)
        out = ctypes.c_void_p()
        with self._handle as h, (conversation._handle if conversation is not None else _NO_HANDLE) as conv:
            check(lib().mdg_bot_ask(ctypes.byref(out), h, conv, data, len(data)))
        return Reply._wrap(out)

    def reload(self, path) -> None:
        """Swaps in the knowledge base of `path`; on error nothing changes and the old one keeps
        answering. Safe while other threads ask."""
        p = _native.path_cstring(path, "path")
        with self._handle as h:
            check(lib().mdg_bot_reload_file(h, p))

    def reload_string(self, text: Text, format: str = "json", source_name: Optional[str] = None) -> None:
        data = utf8(text)
        name = opt_cstring(source_name, "source_name")
        with self._handle as h:
            check(lib().mdg_bot_reload_string(h, data, len(data), _format(format), name))

    def info(self) -> Dict[str, Any]:
        """name, source, default_locale, generation (+1 per reload), entries, questions, rules,
        entry_ids, memory_bytes, build_ms."""
        buf = _native.mdg_buf()
        with self._handle as h:
            check(lib().mdg_bot_info_json(ctypes.byref(buf), h))
        return json.loads(take_buf(buf))

    def conversation(self) -> "Conversation":
        """A new conversation (not tied to this bot: it goes on across reloads)."""
        return Conversation()

    def close(self) -> None:
        """Frees the bot (idempotent). Calls running on other threads finish first; later
        ones raise madoguchi.Closed."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> "Bot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Conversation:
    """One visitor's conversation: turns, slots, visitor attributes, hand-off state.

    Used by one thread at a time; another thread's call meanwhile raises madoguchi.Busy."""

    def __init__(self) -> None:
        handle = ctypes.c_void_p()
        check(lib().mdg_conversation_new(ctypes.byref(handle)))
        self._handle = _native.Handle("mdg_conversation_free", handle, "conversation")
        self._finalizer = weakref.finalize(self, self._handle.release)

    def _call(self, fn, *args) -> int:
        with self._handle as h:
            return check(fn(h, *args))

    def set_locale(self, locale: Optional[str]) -> None:
        """Pins the reply language ("ja", "en"); None unpins it."""
        self._call(lib().mdg_conversation_set_locale, opt_cstring(locale, "locale"))

    def set_fallback_locale(self, locale: Optional[str]) -> None:
        """The language for messages that do not tell (no letters)."""
        self._call(lib().mdg_conversation_set_fallback_locale, opt_cstring(locale, "locale"))

    def set_visitor(self, key: str, value: Optional[str]) -> None:
        """A visitor attribute for the hand-off package; None removes it."""
        self._call(lib().mdg_conversation_set_visitor, cstring(key, "key"), opt_cstring(value, "value"))

    def set_slot(self, key: str, value: Optional[str]) -> None:
        self._call(lib().mdg_conversation_set_slot, cstring(key, "key"), opt_cstring(value, "value"))

    def slot(self, key: str) -> Optional[str]:
        """A slot's value, or None when it is not set."""
        buf = _native.mdg_buf()
        k = cstring(key, "key")
        with self._handle as h:
            rc = lib().mdg_conversation_slot(ctypes.byref(buf), h, k)
        if rc == -2:
            return None
        check(rc)
        return take_buf(buf)

    def hand_back(self) -> None:
        """A person hands the conversation back to the bot."""
        self._call(lib().mdg_conversation_hand_back)

    def add_turn(self, role: str, text: Text) -> None:
        """Records what someone else (an "agent") said, so that the transcript stays whole."""
        data = utf8(text)
        self._call(lib().mdg_conversation_add_turn, cstring(role, "role"), data, len(data))

    @property
    def turn(self) -> int:
        return self._call(lib().mdg_conversation_turn)

    @property
    def handed_off(self) -> bool:
        return self._call(lib().mdg_conversation_handed_off) == 1

    def to_dict(self) -> Dict[str, Any]:
        """turn, failed_turns, handed_off, previous_answer, locale, slots, visitor, transcript."""
        buf = _native.mdg_buf()
        with self._handle as h:
            check(lib().mdg_conversation_json(ctypes.byref(buf), h))
        return json.loads(take_buf(buf))

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> "Conversation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Reply:
    """The bot's reply to one message. The common fields are plain attributes; json(),
    handoff() and explain() ask the library for the rest."""

    decision: Decision
    text: str
    entry: str  # the entry answered with ("" unless decision is ANSWER)
    locale: str
    reason: str
    candidates: "tuple[Candidate, ...]"
    options: "tuple[Option, ...]"

    def __init__(self, *_args, **_kwargs):
        raise TypeError("replies come from Bot.ask()")

    @classmethod
    def _wrap(cls, handle: ctypes.c_void_p) -> "Reply":
        self = object.__new__(cls)
        self._handle = _native.Handle("mdg_reply_free", handle, "reply")
        self._finalizer = weakref.finalize(self, self._handle.release)
        L = lib()
        size = ctypes.c_size_t()
        ptr = L.mdg_reply_text(handle, ctypes.byref(size))
        self.text = text_at(ptr, size.value)
        self.decision = _native.enum_or_int(Decision, check(L.mdg_reply_decision(handle)))
        self.entry = _native.cstr(L.mdg_reply_entry(handle))
        self.locale = _native.cstr(L.mdg_reply_locale(handle))
        self.reason = _native.cstr(L.mdg_reply_reason(handle))
        self.candidates = tuple(self._iter_candidates(handle))
        opts = []
        for i in range(L.mdg_reply_option_count(handle)):
            o = L.mdg_reply_option(handle, i).contents
            opts.append(Option(text_at(o.label, o.label_size), _native.cstr(o.entry)))
        self.options = tuple(opts)
        return self

    @staticmethod
    def _iter_candidates(handle) -> Iterator[Candidate]:
        L = lib()
        for i in range(L.mdg_reply_candidate_count(handle)):
            c = L.mdg_reply_candidate(handle, i).contents
            yield Candidate(_native.cstr(c.entry), c.confidence, c.score, c.bm25)

    def __iter__(self) -> Iterator[Candidate]:
        """Iterates over the candidates, best first."""
        return iter(self.candidates)

    def _buf(self, fn) -> str:
        buf = _native.mdg_buf()
        with self._handle as h:
            check(fn(ctypes.byref(buf), h))
        return take_buf(buf)

    def json(self) -> Dict[str, Any]:
        """The whole reply (docs/policy.md "Reply JSON"): rules_fired, follow_ups, triage, tokens..."""
        return json.loads(self._buf(lib().mdg_reply_json))

    def handoff(self) -> Optional[Dict[str, Any]]:
        """The hand-off package (docs/policy.md), or None when the bot did not hand off."""
        if self.decision != Decision.HANDOFF:
            return None
        return json.loads(self._buf(lib().mdg_reply_handoff_json))

    def explain(self) -> str:
        """Why the bot decided so, as `madoguchi-bot ask` prints it."""
        return self._buf(lib().mdg_reply_explain)

    def close(self) -> None:
        """Frees the C reply now (the attributes stay)."""
        self._finalizer()

    def __enter__(self) -> "Reply":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Reply(decision=%s, entry=%r, reason=%r)" % (self.decision, self.entry, self.reason)


def _format(name: str) -> int:
    try:
        return _FORMATS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError("format must be 'json', 'csv' or 'tsv', not %r" % (name,)) from None


def _settings_list(settings) -> List[str]:
    if not settings:
        return []
    if isinstance(settings, Mapping):
        out = []
        for k, v in settings.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            out.append("%s=%s" % (k, v))
        return out
    if isinstance(settings, (str, bytes)):
        raise TypeError("settings: a mapping or a list of 'section.key=value' strings")
    return [str(s) for s in settings]
