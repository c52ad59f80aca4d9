"""The bot through the Python binding: Bot, Conversation, Reply, errors, threads."""

from __future__ import annotations

import gc
import threading

import pytest

import madoguchi
from madoguchi import Decision

from conftest import SHOP_KB

MINI = """{
  "name": "mini-shop",
  "entries": [
    {"id": "returns-window", "questions": ["返品はできますか", "Can I return an item?"],
     "answer": {"ja": "30日以内なら返品できます。", "en": "Within 30 days."}, "follow_ups": ["shipping-fee"]},
    {"id": "shipping-fee", "questions": ["送料はいくらですか", "How much is shipping?"],
     "answer": {"ja": "送料は550円です。", "en": "Shipping is 550 yen."}}
  ],
  "rules": [{"id": "person", "when": {"any": ["担当者", "human"]}, "then": {"handoff": "visitor asked for a person"}}]
}"""


def test_answer_with_candidates_and_explanation(shop_bot):
    reply = shop_bot.ask("送料はいくらですか")
    assert reply.decision is Decision.ANSWER and str(reply.decision) == "answer"
    assert reply.entry == "shipping-fee"
    assert reply.locale == "ja" and reply.reason == "confident"
    assert "550円" in reply.text
    entries = [c.entry for c in reply]  # iterating a reply gives its candidates, best first
    assert entries[0] == "shipping-fee" and 1 <= len(entries) <= 5
    confidences = [c.confidence for c in reply.candidates]
    assert confidences == sorted(confidences, reverse=True)
    assert 0.5 < reply.candidates[0].confidence <= 1.0
    assert reply.options == ()
    data = reply.json()
    assert data["decision"] == "answer" and data["entry"] == "shipping-fee" and "tokens" in data
    assert reply.handoff() is None
    explained = reply.explain()
    assert "decision:   answer (confident) -> shipping-fee" in explained
    assert "1. shipping-fee" in explained


def test_clarify_then_choose_by_number(shop_bot):
    conv = madoguchi.Conversation()
    reply = shop_bot.ask("支払い", conv)
    assert reply.decision is Decision.CLARIFY
    assert [o.entry for o in reply.options][:2] == ["payment-credit-card", "payment-konbini"]
    assert reply.options[1].label == "コンビニ払い"
    chosen = shop_bot.ask("2", conv)
    assert chosen.decision is Decision.ANSWER and chosen.entry == "payment-konbini"
    assert conv.turn == 2


def test_handoff_package_carries_the_conversation():
    with madoguchi.Bot.from_string(MINI, source_name="mini.json") as bot, madoguchi.Conversation() as conv:
        conv.set_visitor("customer_id", "c-42")
        conv.set_slot("order_id", "A-1001")
        assert conv.slot("order_id") == "A-1001" and conv.slot("missing") is None
        assert bot.ask("返品はできますか", conv).entry == "returns-window"
        reply = bot.ask("担当者と話したい", conv)
        assert reply.decision is Decision.HANDOFF
        package = reply.handoff()
        assert package["reason"] == "visitor asked for a person"
        assert package["visitor"] == {"customer_id": "c-42"}
        assert package["slots"] == {"order_id": "A-1001"}
        assert [t["role"] for t in package["transcript"]] == ["visitor", "bot", "visitor", "bot"]
        assert conv.handed_off
        conv.add_turn("agent", "担当の佐藤です。")
        conv.hand_back()
        assert not conv.handed_off
        state = conv.to_dict()
        assert state["turn"] == 2 and state["transcript"][-1] == {
            "role": "agent", "text": "担当の佐藤です。", "decision": "reply"}


def test_locale_pinning_and_text_forms():
    with madoguchi.Bot.from_string(MINI) as bot:
        conv = madoguchi.Conversation()
        conv.set_locale("en")
        assert bot.ask("送料はいくらですか", conv).text == "Shipping is 550 yen."
        conv.set_locale(None)
        assert bot.ask("送料はいくらですか", conv).locale == "ja"
        conv.set_fallback_locale("en")
        # bytes work as well as str; a NUL byte inside is part of the text
        assert bot.ask("送料は\0いくらですか".encode()).decision in set(Decision)
        # empty: a graceful fallback, not an error
        assert bot.ask("").decision is Decision.FALLBACK
        # huge: cut, and said so
        assert "(message cut to 16384 bytes)" in bot.ask("送" * 200_000).reason


def test_errors_carry_the_c_code_and_message(tmp_path):
    with pytest.raises(madoguchi.NotFound) as e:
        madoguchi.Bot.open(tmp_path / "missing.json")
    assert e.value.code == -2 and "missing.json" in e.value.message
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "entries": [\n    {"id": "x",}\n  ]\n}\n', "utf-8")
    with pytest.raises(madoguchi.InvalidArgument) as e:
        madoguchi.Bot.open(broken)
    assert e.value.code == -1 and "broken.json:3:" in str(e.value)
    assert isinstance(e.value, ValueError)  # InvalidArgument is a ValueError too
    with pytest.raises(madoguchi.InvalidArgument, match="unknown setting"):
        madoguchi.Bot.from_string(MINI, settings={"policy.nope": 1})
    with pytest.raises(madoguchi.InvalidArgument, match="section.key=value"):
        madoguchi.Bot.from_string(MINI, settings=["nonsense"])
    with pytest.raises(ValueError, match="format"):
        madoguchi.Bot.from_string(MINI, format="xml")
    with madoguchi.Bot.from_string(MINI) as bot:
        conv = madoguchi.Conversation()
        with pytest.raises(madoguchi.InvalidArgument, match="invalid UTF-8 at byte 2"):
            bot.ask(b"ab\xff", conv)
        assert conv.turn == 0  # unchanged
        with pytest.raises(TypeError):
            bot.ask(42)
        # Any other wrapper object has a native handle too: passed on as a conversation, it
        # once corrupted the library's memory.
        reply = bot.ask("q")
        for wrong in (reply, bot, "conversation"):
            with pytest.raises(TypeError, match="conversation must be a madoguchi.Conversation"):
                bot.ask("q", wrong)


def test_paths_may_be_bytes_or_path_like(tmp_path):
    # bytes once went to the library as their repr, "b'/tmp/...'".
    kb = tmp_path / "mini.json"
    kb.write_text(MINI, "utf-8")
    for path in (kb, str(kb), bytes(kb)):
        with madoguchi.Bot.open(path) as bot:
            bot.reload(path)
    with pytest.raises(TypeError, match="path must be a path"):
        madoguchi.Bot.open(42)


def test_integers_the_c_types_cannot_hold_are_refused():
    # ctypes would cut them down without a word: 2**64 + 5 passed as 5.
    with pytest.raises(OverflowError, match="max_message_bytes"):
        madoguchi.Bot.from_string(MINI, max_message_bytes=2 ** 64 + 5)
    with pytest.raises(OverflowError, match="max_message_bytes"):
        madoguchi.Bot.from_string(MINI, max_message_bytes=-1)


def test_csv_and_settings():
    csv = "id,question,answer_ja,answer_en\nshipping-fee,送料はいくらですか,550円です。,550 yen.\nreturns,返品できますか,できます。,Yes.\n"
    with madoguchi.Bot.from_string(csv, format="csv", settings={"policy.handoff_out_of_scope": False}) as bot:
        assert bot.ask("送料はいくらですか").entry == "shipping-fee"
        info = bot.info()
        assert info["entries"] == 2 and info["entry_ids"] == ["shipping-fee", "returns"]
        assert bot.ask("今日の天気は？").decision is not Decision.HANDOFF


def test_closed_objects_raise_and_replies_outlive_their_bot():
    bot = madoguchi.Bot.from_string(MINI)
    conv = bot.conversation()
    reply = bot.ask("返品はできますか", conv)
    bot.close()
    bot.close()  # idempotent
    assert bot.closed
    with pytest.raises(madoguchi.Closed):
        bot.ask("x")
    with pytest.raises(madoguchi.Closed):
        bot.info()
    assert reply.entry == "returns-window" and reply.json()["entry"] == "returns-window"
    reply.close()
    with pytest.raises(madoguchi.Closed):
        reply.json()
    assert reply.entry == "returns-window"  # plain attributes stay
    # the conversation goes on with another bot
    with madoguchi.Bot.from_string(MINI) as other:
        assert other.ask("送料はいくらですか", conv).entry == "shipping-fee"
    assert conv.turn == 2
    conv.close()
    with pytest.raises(madoguchi.Closed):
        conv.turn
    with pytest.raises(TypeError):
        madoguchi.Bot()
    with pytest.raises(TypeError):
        madoguchi.Reply()


OPTIONS = ("mecab_dicdir", "max_message_bytes", "settings", "logger", "log_level")


def open_mini(constructor, tmp_path, **options):
    """MINI built by Bot.open (from a file) or Bot.from_string, with the same keyword options."""
    if constructor == "open":
        path = tmp_path / "mini.json"
        path.write_text(MINI, "utf-8")
        return madoguchi.Bot.open(path, **options)
    return madoguchi.Bot.from_string(MINI, **options)


@pytest.mark.parametrize("constructor", ["open", "from_string"])
def test_a_misspelt_option_is_a_type_error_that_names_it(constructor, tmp_path):
    with pytest.raises(TypeError) as e:
        open_mini(constructor, tmp_path, max_mesage_bytes=100)
    message = str(e.value)
    assert message.startswith("Bot.%s() got an unexpected keyword argument 'max_mesage_bytes';" % constructor)
    assert all(name in message for name in OPTIONS)
    with pytest.raises(TypeError, match="got unexpected keyword arguments 'loger', 'settngs';"):
        open_mini(constructor, tmp_path, loger=print, settngs={}, log_level=madoguchi.LogLevel.DEBUG)


def test_from_string_names_its_own_keywords_too():
    with pytest.raises(TypeError, match=r"'fromat'; its keywords are format, source_name, mecab_dicdir,"):
        madoguchi.Bot.from_string(MINI, fromat="csv")


def test_both_constructors_have_the_same_defaults(tmp_path):
    texts = ["返品はできますか", "送料", "担当者と話したい", "今日の天気は？", "送" * 20_000]
    seen = {}
    for constructor in ("open", "from_string"):
        lines = []
        with open_mini(constructor, tmp_path, logger=lambda level, message: lines.append(level)) as bot:
            replies = [bot.ask(t).json() for t in texts]
            bot.reload_string(MINI)
        seen[constructor] = replies, lines
        # max_message_bytes: the library's 16 KiB; log_level: INFO, so the reload's line comes through
        assert "(message cut to 16384 bytes)" in replies[-1]["reason"]
        assert madoguchi.LogLevel.INFO in lines
    assert seen["open"] == seen["from_string"]


def test_garbage_collection_frees_everything():
    for _ in range(20):
        bot = madoguchi.Bot.from_string(MINI)
        conv = madoguchi.Conversation()
        bot.ask("返品はできますか", conv)
        del bot, conv
    gc.collect()


def test_logger_gets_lines_and_its_exceptions_stay_out():
    lines = []

    def logger(level, message):
        lines.append((level, message))
        raise RuntimeError("a broken logger")

    with madoguchi.Bot.from_string(MINI, logger=logger, log_level=madoguchi.LogLevel.DEBUG) as bot:
        bot.reload_string(MINI)
        assert bot.ask("返品はできますか").entry == "returns-window"
    assert lines and any("reloaded" in m for _, m in lines)


def test_reload_while_threads_ask():
    plus = MINI.replace('"entries": [', '"entries": [\n    {"id": "gift", "questions": ["ギフト包装はできますか"], "answer": "できます。"},')
    bot = madoguchi.Bot.open(SHOP_KB)
    stop = threading.Event()
    problems = []
    counts = []

    def asker():
        conv = madoguchi.Conversation()
        n = 0
        while not stop.is_set() or n < 3:
            try:
                r = bot.ask("返品はできますか")
                if r.decision is not Decision.ANSWER or r.entry != "returns-window":
                    problems.append((r.decision, r.entry))
                bot.ask("ギフト包装はできますか", conv)
                n += 1
            except Exception as e:  # noqa: BLE001
                problems.append(e)
                return
        counts.append((n, conv.turn))

    threads = [threading.Thread(target=asker) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(4):
        if i % 2 == 0:
            bot.reload_string(plus, source_name="plus.json")
        else:
            bot.reload(SHOP_KB)
    bot.reload_string(plus, source_name="plus.json")
    stop.set()
    for t in threads:
        t.join()
    assert problems == []
    assert all(n == turns for n, turns in counts) and len(counts) == 4
    assert bot.info()["generation"] == 6
    assert bot.ask("ギフト包装はできますか").entry == "gift"
    bot.close()


def test_one_conversation_on_two_threads_is_busy_not_corrupt():
    bot = madoguchi.Bot.from_string(MINI)
    conv = madoguchi.Conversation()
    results = []

    def hammer():
        for _ in range(30):
            try:
                bot.ask("送料はいくらですか", conv)
                results.append("ok")
            except madoguchi.Busy:
                results.append("busy")

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 60
    assert conv.turn == results.count("ok")
    bot.close()
