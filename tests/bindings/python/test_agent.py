"""The support agent's client (madoguchi.AgentClient, mdg_agent_*) against a real
madoguchi-hub, with the binding's visitor Client on the other side; and the binding's objects
closed while another thread is inside the library. Every wait is bounded; nothing asserts on
timing."""

from __future__ import annotations

import threading

import pytest

import madoguchi
from madoguchi import AgentClient, AgentEventKind, EventKind, State
from madoguchi import _native

from conftest import SHOP_KB, T


def agent_url(hub) -> str:
    return hub.url + "/v1/agent"


def test_agent_takes_replies_and_hands_back(hub, tmp_path):
    with madoguchi.Client(hub.url + "/v1/visitor", locale="ja") as visitor, \
            AgentClient(agent_url(hub), "sato", hub.agents["sato"], state_path=tmp_path / "agent.json") as agent:
        agent.connect()
        welcome = agent.wait_for(lambda e: e.kind is AgentEventKind.WELCOME, T)
        assert welcome.agent == "sato" and welcome.state is State.CONNECTED

        visitor.send("担当者と話したい")
        visitor.connect()
        visitor.wait_for(lambda e: e.kind is EventKind.EVENT and e.event == "handoff_started", T)
        conv = visitor.conversation

        queued = agent.wait_for(lambda e: e.kind is AgentEventKind.QUEUE and
                                any(q.conversation == conv for q in e.queue), T)
        entry = next(q for q in queued.queue if q.conversation == conv)
        assert entry.state == "waiting" and entry.reason and entry.agent == ""
        agent.take(conv)
        taken = agent.wait_for(lambda e: e.kind is AgentEventKind.CONVERSATION, T)
        assert taken.conversation == conv and taken.conversation_state == "agent" and not taken.resumed
        assert taken.handoff["reason"] == entry.reason
        said = [t for t in taken.transcript if t.kind is EventKind.MESSAGE and t.sender == "visitor"]
        assert [t.text for t in said] == ["担当者と話したい"]
        assert [t.seq for t in taken.transcript] == sorted(t.seq for t in taken.transcript)

        mid = agent.send(conv, "担当の佐藤です。")
        ack = agent.wait_for(lambda e: e.kind is AgentEventKind.ACK and e.frame.id == mid, T)
        assert ack.conversation == conv and ack.frame.seq > 0
        got = visitor.wait_for(lambda e: e.kind is EventKind.MESSAGE and e.sender == "agent", T)
        assert got.text == "担当の佐藤です。" and got.agent == "sato"
        visitor.send("注文を変更したいです")
        answer = agent.wait_for(lambda e: e.kind is AgentEventKind.MESSAGE and e.frame.sender == "visitor", T)
        assert answer.conversation == conv and answer.frame.text == "注文を変更したいです"
        agent.mark_read(conv, answer.frame.seq)
        assert agent.conversations == [conv]
        assert any(q.conversation == conv and q.agent == "sato" for q in agent.queue)

        agent.hand_back(conv)
        back = agent.wait_for(lambda e: e.kind is AgentEventKind.EVENT and e.frame.event == "handed_back", T)
        assert back.conversation == conv
        visitor.wait_for(lambda e: e.kind is EventKind.EVENT and e.event == "handed_back", T)
        assert agent.conversations == []
        agent.close(5.0)
        assert agent.pending == 0 and agent.state is State.CLOSED


def test_agent_wrong_password_is_final(hub):
    with AgentClient(agent_url(hub), "sato", "not the password") as agent:
        agent.connect()
        err = agent.wait_for(lambda e: e.kind is AgentEventKind.ERROR, T)
        assert err.frame.error == "unauthorized"
        agent.wait_for(lambda e: e.kind is AgentEventKind.STATE and e.state is State.CLOSED, T)
        with pytest.raises(madoguchi.Closed):
            agent.send("c_x", "hello")


def test_agent_actions_need_a_connection():
    agent = AgentClient("ws://127.0.0.1:9/v1/agent", "sato", "pw")
    with pytest.raises(madoguchi.Unavailable):
        agent.take("c_x")
    assert agent.send("c_x", "offline").startswith("m-")
    assert agent.pending == 1
    with pytest.raises(ValueError, match="NUL"):
        agent.take("c_\0x")
    with pytest.raises(madoguchi.DeadlineExceeded):
        agent.close(0)  # the reply is left: no state_path, so it is lost
    agent.free()
    with pytest.raises(madoguchi.Closed, match="freed"):
        agent.pending


def test_closing_while_another_thread_is_in_the_library():
    # ctypes lets other threads run while one is inside the library: close() must not free
    # what that call is using. The C object goes when the last call returns. (Before, this
    # crashed at the first round: the conversation was freed under the ask.)
    shop_bot = madoguchi.Bot.open(SHOP_KB, max_message_bytes=4 << 20)
    long_text = "送料はいくらですか返品はできますか " * 20000  # an ask of some milliseconds
    for _ in range(5):
        conv = madoguchi.Conversation()
        started = threading.Event()
        errors = []

        def ask():
            try:
                started.set()
                for _ in range(20):
                    shop_bot.ask(long_text, conv)
            except (madoguchi.Closed, madoguchi.Busy) as e:
                errors.append(e)

        t = threading.Thread(target=ask)
        t.start()
        started.wait(T)
        conv.close()
        t.join(T)
        assert not t.is_alive()
        with pytest.raises(madoguchi.Closed):
            conv.turn

    client = madoguchi.Client("ws://127.0.0.1:9/v1/visitor")
    stop = threading.Event()

    def send():
        while not stop.is_set():
            try:
                client.send("x")
            except madoguchi.Closed:
                return

    shop_bot.close()
    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    client.free()
    stop.set()
    for t in threads:
        t.join(T)
        assert not t.is_alive()


def test_free_wakes_a_thread_waiting_in_poll():
    # The wait ends: free() closes the client (without waiting) when a call is in progress.
    client = madoguchi.Client("ws://127.0.0.1:9/v1/visitor", dispatch="poll")
    client.connect()
    client.poll(0)
    returned = threading.Event()

    def reader():
        try:
            while True:
                client.poll(None)
        except madoguchi.Closed:
            pass
        returned.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    client.free()
    assert returned.wait(T)
    t.join(T)


def test_timeouts_enums_and_nul_arguments():
    assert _native.millis(None) == -1
    assert _native.millis(3e6) == 2 ** 31 - 1  # 35 days: an int's worth, not a wrapped negative
    assert _native.millis(-1.0) == 0
    assert _native.enum_or_int(EventKind, 99) == 99  # a newer library's kind stays an int
    assert _native.enum_or_int(EventKind, 2) is EventKind.MESSAGE
    with madoguchi.Conversation() as conv:
        with pytest.raises(ValueError, match="NUL"):
            conv.set_slot("a\0b", "v")
        assert conv.slot("a") is None
