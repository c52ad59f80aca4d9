"""The live-chat client through the Python binding, against a real madoguchi-hub.

The support agent is played by the independent protocol client of tests/python (asyncio); the
binding's blocking waits run in a thread (asyncio.to_thread) so that the agent's connection
keeps being served meanwhile. Every wait is bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

import madoguchi
from madoguchi import EventKind, State

from conftest import T, async_test
from madoguchi_spec_client import AgentClient


def visitor_url(hub) -> str:
    return hub.url + "/v1/visitor"


def is_ack(mid):
    return lambda e: e.kind is EventKind.ACK and e.id == mid


def is_bot(e) -> bool:
    return e.kind is EventKind.MESSAGE and e.sender == "bot"


def test_chat_with_the_bot(hub, tmp_path):
    with madoguchi.Client(visitor_url(hub), state_path=tmp_path / "chat.json", locale="ja",
                          backoff_ms=[50, 100, 200]) as client:
        assert client.state is State.DISCONNECTED
        mid = client.send("送料はいくらですか")  # before connecting: it waits in the outbox
        assert mid.startswith("m-") and client.pending == 1
        client.connect()
        welcome = client.wait_for(lambda e: e.kind is EventKind.WELCOME, T)
        assert welcome.conversation.startswith("c_") and welcome.conversation_state == "bot"
        ack = client.wait_for(is_ack(mid), T)
        assert ack.seq > 0 and not ack.duplicate
        reply = client.wait_for(is_bot, T)
        assert reply.seq > ack.seq
        assert reply.bot["decision"] == "answer" and reply.bot["entry"] == "shipping-fee"
        assert "送料" in reply.text and reply.frame["type"] == "message"
        assert client.state is State.CONNECTED
        assert client.conversation == welcome.conversation
        assert client.pending == 0
        client.close(5.0)
        assert client.state is State.CLOSED
        assert client.last_seq >= reply.seq
        with pytest.raises(madoguchi.Closed):
            client.send("x")
    with pytest.raises(madoguchi.Closed, match="freed"):
        client.state


def test_callbacks_run_on_the_network_thread_and_their_errors_stay_out(hub):
    seen = []
    main = threading.get_ident()
    got_reply = threading.Event()

    def on_event(ev):
        seen.append((ev.kind, threading.get_ident()))
        if ev.kind is EventKind.WELCOME:
            raise RuntimeError("a broken handler")  # must not disturb the client
        if ev.kind is EventKind.STATE and ev.state is State.CONNECTED:
            with pytest.raises(madoguchi.Busy):
                client.close(1.0)  # it would wait for itself
            seen.append(("close-refused", 0))
        if is_bot(ev):
            got_reply.set()

    client = madoguchi.Client(visitor_url(hub), on_event=on_event, backoff_ms=[50])
    client.connect()
    client.send("返品はできますか")
    assert got_reply.wait(T)
    client.close(5.0)
    client.free()
    threads = {t for k, t in seen if isinstance(k, EventKind)}
    assert main not in threads and len(threads) == 1
    assert ("close-refused", 0) in seen
    assert len(client.callback_errors) == 1 and "a broken handler" in str(client.callback_errors[0])


def test_poll_dispatch_runs_callbacks_on_the_caller(hub):
    client = madoguchi.Client(visitor_url(hub), dispatch="poll", backoff_ms=[50])
    assert client.poll(0) == 0
    client.connect()
    mid = client.send("How much is shipping?")
    kinds = []
    for ev in client.events(timeout=T):  # polls on this thread
        kinds.append(ev.kind)
        if is_bot(ev):
            assert ev.bot["entry"] == "shipping-fee"
            break
    assert EventKind.WELCOME in kinds and EventKind.ACK in kinds
    client.close(5.0)
    left = list(client.events(timeout=1.0))  # the state change to closed, then the end
    assert any(e.kind is EventKind.STATE and e.state is State.CLOSED for e in left)
    client.free()
    assert mid


def test_offline_outbox_survives_a_restart(hub, tmp_path):
    state = tmp_path / "visitor.json"
    with pytest.raises(madoguchi.InvalidArgument, match="url"):
        madoguchi.Client("http://127.0.0.1:1/")
    with pytest.raises(ValueError):
        madoguchi.Client(visitor_url(hub), dispatch="threads")
    offline = madoguchi.Client("ws://127.0.0.1:1/v1/visitor", state_path=state, backoff_ms=[50])
    first = offline.send("返品したいです")
    with pytest.raises(madoguchi.InvalidArgument):
        offline.send(b"\xff\xfe")
    with pytest.raises(madoguchi.InvalidArgument):
        offline.send("")
    with pytest.raises(madoguchi.Unavailable):
        madoguchi.Client(visitor_url(hub), state_path=state)  # locked by `offline`
    offline.connect()
    with pytest.raises(madoguchi.DeadlineExceeded, match="visitor.json"):
        offline.close(0.2)
    offline.free()

    with madoguchi.Client(visitor_url(hub), state_path=state, backoff_ms=[50]) as again:
        assert again.pending == 1
        again.connect()
        ack = again.wait_for(is_ack(first), T)  # the same id: stored once
        assert ack.seq > 0
        again.wait_for(is_bot, T)


def test_clarification_options_and_choose(hub):
    with madoguchi.Client(visitor_url(hub), backoff_ms=[50]) as client:
        client.connect()
        mid = client.send("ポイントのこと")
        client.wait_for(is_ack(mid), T)
        asked = client.wait_for(is_bot, T)
        assert asked.bot["decision"] == "clarify"
        options = asked.bot["options"]
        assert len(options) >= 2 and all(o["entry"].startswith("points-") and o["label"] for o in options)
        picked = client.choose(options[1])
        client.wait_for(is_ack(picked), T)
        answer = client.wait_for(lambda e: is_bot(e) and e.seq > asked.seq, T)
        assert answer.bot["decision"] == "answer" and answer.bot["entry"] == options[1]["entry"]
        with pytest.raises(TypeError, match="entry"):
            client.choose({"label": "x"})
        with pytest.raises(madoguchi.InvalidArgument):
            client.choose({"label": "\udcff", "entry": "points-use"})
        client.close(5.0)


@async_test
async def test_agent_round_trip_typing_read_attachments_nul(hub):
    client = madoguchi.Client(visitor_url(hub), locale="ja", visitor={"customer_id": "py-7"}, backoff_ms=[50])
    wait = lambda pred: asyncio.to_thread(client.wait_for, pred, T)  # noqa: E731
    try:
        client.connect()
        mid = client.send("担当者と話したい")
        await wait(is_ack(mid))
        started = await wait(lambda e: e.kind is EventKind.EVENT and e.event == "handoff_started")
        assert started.data["queue_position"] == 1
        conv = client.conversation

        agent = AgentClient(hub.url)
        await agent.connect(T)
        await agent.hello("sato", hub.agents["sato"], timeout=T)
        taken = await agent.take(conv, timeout=T)
        assert taken["handoff"]["visitor"] == {"customer_id": "py-7"}
        await wait(lambda e: e.kind is EventKind.EVENT and e.event == "agent_joined" and e.data["agent"] == "sato")

        await agent.message(conv, "担当の佐藤です。", timeout=T)
        said = await wait(lambda e: e.kind is EventKind.MESSAGE and e.sender == "agent")
        assert said.text == "担当の佐藤です。" and said.agent == "sato"

        client.typing(True)
        typing = await agent.next_for(conv, "typing", timeout=T)
        assert typing["state"] == "start" and typing["from"] == "visitor"
        client.mark_read(said.seq)
        read = await agent.next_for(conv, "read", timeout=T)
        assert read["seq"] == said.seq

        await agent.typing(conv, "start")
        ev = await wait(lambda e: e.kind is EventKind.TYPING)
        assert ev.typing and ev.sender == "agent"

        # Text with a NUL byte, and attachments, arrive as sent.
        nul = client.send("a\0b")
        msg = await agent.next_for(conv, "message", timeout=T)
        assert msg["text"] == "a\0b" and msg["id"] == nul
        photo = madoguchi.Attachment("photo.jpg", "image/jpeg", 120334, "https://cdn.example/p/1.jpg")
        client.send("", attachments=[photo, {"name": "r.pdf", "type": "application/pdf", "size": 9, "url": "u"}])
        msg = await agent.next_for(conv, "message", timeout=T)
        assert msg["attachments"][0] == photo._asdict() and msg["attachments"][1]["name"] == "r.pdf"

        await agent.close(conv)
        closed = await wait(lambda e: e.kind is EventKind.EVENT and e.event == "conversation_closed")
        assert closed.data["by"] == "agent"
        await agent.disconnect()
        client.close(5.0)
    finally:
        client.free()


def test_a_forgotten_client_is_freed_by_the_garbage_collector(hub):
    for _ in range(3):
        client = madoguchi.Client(visitor_url(hub), backoff_ms=[50])
        client.connect()
        client.send("こんにちは")
        client.wait_for(lambda e: e.kind is EventKind.ACK, T)
        del client  # never closed: the finalizer frees it (and joins its thread)
        gc.collect()


def test_a_bytes_state_path_is_the_file_it_names(tmp_path):
    # It once became a file literally named "b'...'", where the next client did not look.
    path = tmp_path / "chat.json"
    client = madoguchi.Client("ws://127.0.0.1:9/v1/visitor", state_path=bytes(path))
    client.send("送料はいくらですか")  # in the file before it returns
    assert path.exists()
    client.free()
    assert not list(tmp_path.glob("b'*"))


def test_integers_the_c_types_cannot_hold_are_refused(tmp_path):
    with pytest.raises(OverflowError, match="jitter_percent"):
        madoguchi.Client("ws://127.0.0.1:9/v1/visitor", jitter_percent=2 ** 32 + 30)
    with pytest.raises(OverflowError, match="backoff_ms"):
        madoguchi.Client("ws://127.0.0.1:9/v1/visitor", backoff_ms=[2 ** 31])
    with madoguchi.Client("ws://127.0.0.1:9/v1/visitor") as client:
        with pytest.raises(OverflowError, match="seq"):
            client.mark_read(2 ** 64 + 7)
        with pytest.raises(OverflowError, match="attachment size"):
            client.send("", attachments=[madoguchi.Attachment("a.jpg", "image/jpeg", 2 ** 64 + 5, "https://x/a.jpg")])
