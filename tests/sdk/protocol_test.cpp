#include <madoguchi/protocol.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace madoguchi::protocol;

namespace {

Frame ok(std::string_view text) {
  auto r = decode(text);
  if (auto* e = std::get_if<DecodeError>(&r)) FAIL_CHECK("decode failed: " << e->message);
  REQUIRE(std::holds_alternative<Frame>(r));
  return std::get<Frame>(r);
}

DecodeError bad(std::string_view text, const DecodeLimits& limits = {}) {
  auto r = decode(text, limits);
  REQUIRE(std::holds_alternative<DecodeError>(r));
  return std::get<DecodeError>(r);
}

// encode -> decode gives the frame back.
void round_trip(const Frame& f) {
  std::string json = encode(f);
  CAPTURE(json);
  CHECK(ok(json) == f);
}

}  // namespace

TEST_SUITE("sdk.protocol") {
  TEST_CASE("visitor frames decode as docs/protocol.md shows them") {
    auto hello = ok(R"({"v": 1, "type": "hello", "token": "v1.c_x.1.ab", "last_seq": 12, "locale": "ja",
                        "visitor": {"customer_id": "c-42"}, "client": "test/1", "future_field": [1, 2]})");
    CHECK(hello.type == FrameType::kHello);
    CHECK(hello.token == "v1.c_x.1.ab");
    CHECK(hello.last_seq == 12);
    CHECK(hello.visitor.at("customer_id") == "c-42");

    auto msg = ok(R"({"v":1,"type":"message","id":"m-7f3a","text":"返品したいです",
                      "attachments":[{"name":"photo.jpg","type":"image/jpeg","size":120334,"url":"https://cdn.example/p/1.jpg"}]})");
    CHECK(msg.type == FrameType::kMessage);
    CHECK(msg.id == "m-7f3a");
    CHECK(msg.text == "返品したいです");
    REQUIRE(msg.attachments.size() == 1);
    CHECK(msg.attachments[0].size == 120334);

    CHECK(ok(R"({"v":1,"type":"typing","state":"start"})").state == "start");
    CHECK(ok(R"({"v":1,"type":"read","seq":31})").seq == 31);
    CHECK(ok(R"({"v":1,"type":"ping","id":"p1"})").id == "p1");
    SUBCASE("a message of attachments only needs no text") {
      auto only = ok(R"({"v":1,"type":"message","id":"a1","attachments":[{"name":"x.pdf"}]})");
      CHECK(only.text.empty());
    }
  }

  TEST_CASE("hub frames round-trip") {
    Frame welcome;
    welcome.type = FrameType::kWelcome;
    welcome.conversation = "c_01";
    welcome.token = "v1.c_01.99.ff";
    welcome.state = "bot";
    welcome.last_seq = 14;
    round_trip(welcome);

    Frame ack;
    ack.type = FrameType::kAck;
    ack.id = "m-1";
    ack.seq = 13;
    ack.duplicate = true;
    round_trip(ack);

    Frame bot;
    bot.type = FrameType::kMessage;
    bot.seq = 14;
    bot.id = "b-14";
    bot.from = "bot";
    bot.at = 1767139200123;
    bot.text = "商品到着後30日以内であれば返品できます。\n\"quoted\"";
    bot.bot_json = R"({"decision":"answer","entry":"returns-window","follow_ups":["refund-timing"],"options":[]})";
    round_trip(bot);

    Frame event;
    event.type = FrameType::kEvent;
    event.seq = 15;
    event.at = 1;
    event.event = "handoff_started";
    event.data_json = R"({"reason":"visitor asked for a person","queue_position":2})";
    round_trip(event);

    Frame err = make_error(ErrorKind::kRateLimited, "slow down", "m-9");
    err.retry_after_ms = 500;
    round_trip(err);

    Frame conv;
    conv.type = FrameType::kConversation;
    conv.conversation = "c_01";
    conv.state = "agent";
    conv.handoff_json = R"({"reason":"out of scope","transcript":[]})";
    conv.messages_json = R"([{"v":1,"type":"message","seq":1,"id":"m","text":"hi"}])";
    round_trip(conv);

    Frame agent_msg;
    agent_msg.type = FrameType::kMessage;
    agent_msg.seq = 16;
    agent_msg.id = "a-1";
    agent_msg.from = "agent";
    agent_msg.agent = "sato";
    agent_msg.text = "お調べします";
    round_trip(agent_msg);
    CHECK(encode(agent_msg).find(R"("agent":{"name":"sato"})") != std::string::npos);

    Frame transfer;
    transfer.type = FrameType::kTransfer;
    transfer.conversation = "c_01";
    transfer.to = "suzuki";
    round_trip(transfer);

    Frame hello;
    hello.type = FrameType::kHello;
    hello.agent = "sato";
    hello.password = "pw";
    round_trip(hello);

    Frame take;
    take.type = FrameType::kTake;
    take.conversation = "c_01";
    round_trip(take);
    CHECK(encode(take).find("resume") == std::string::npos);
    take.resume = true;
    round_trip(take);
    CHECK(encode(take).find(R"("resume":true)") != std::string::npos);

    Frame refused = make_error(ErrorKind::kConflict, "take: you no longer hold the conversation (it is bot)");
    refused.conversation = "c_01";
    round_trip(refused);
  }

  TEST_CASE("bad frames get the error code of docs/protocol.md") {
    CHECK(bad("not json").kind == ErrorKind::kBadJson);
    CHECK(bad("[1,2]").kind == ErrorKind::kBadJson);
    CHECK(bad(R"({"type":"ping"})").kind == ErrorKind::kBadFrame);
    CHECK(bad(R"({"v":2,"type":"ping"})").kind == ErrorKind::kUnsupportedVersion);
    CHECK(bad(R"({"v":1})").kind == ErrorKind::kBadFrame);
    auto unknown = bad(R"({"v":1,"type":"teleport","id":"m1"})");
    CHECK(unknown.kind == ErrorKind::kUnknownType);
    CHECK(unknown.id == "m1");
    CHECK(bad("{\"v\":1,\"type\":\"message\",\"id\":\"m1\",\"text\":\"\xff\"}").kind == ErrorKind::kInvalidUtf8);
    DecodeLimits small;
    small.max_frame_bytes = 16;
    CHECK(bad(R"({"v":1,"type":"ping","id":"long enough to be too big"})", small).kind == ErrorKind::kTooLarge);
    SUBCASE("field errors say which field and what is expected") {
      auto no_id = bad(R"({"v":1,"type":"message","text":"hi"})");
      CHECK(no_id.kind == ErrorKind::kBadFrame);
      CHECK(no_id.message.find("missing \"id\"") != std::string::npos);
      auto bad_id = bad(R"({"v":1,"type":"message","id":"has space","text":"hi"})");
      CHECK(bad_id.message.find("1-64") != std::string::npos);
      auto typed = bad(R"({"v":1,"type":"message","id":"m1","text":5})");
      CHECK(typed.message == "message: \"text\" must be a string (the message text)");
      CHECK(typed.id == "m1");
      CHECK(bad(R"({"v":1,"type":"typing","state":"maybe"})").message.find("start") != std::string::npos);
      CHECK(bad(R"({"v":1,"type":"read","seq":-1})").message.find("at least 0") != std::string::npos);
      CHECK(bad(R"({"v":1,"type":"ack","id":"m","seq":18446744073709551615})").message.find("too large") !=
            std::string::npos);
      CHECK(bad(R"({"v":1,"type":"hello","visitor":{"a":1}})").message.find("must be a string") != std::string::npos);
      // At most 4 KiB of attributes: each new conversation keeps them.
      const std::string big(3000, 'x');
      auto over = bad(R"({"v":1,"type":"hello","visitor":{"a":")" + big + R"(","b":")" + big + R"("}})");
      CHECK(over.kind == ErrorKind::kBadFrame);
      CHECK(over.message.find("over 4096 bytes") != std::string::npos);
      CHECK(bad(R"({"v":1,"type":"transfer","conversation":"c"})").message.find("missing \"to\"") != std::string::npos);
    }
    SUBCASE("an error names the frame's conversation, when it could be read") {
      CHECK(bad(R"({"v":1,"type":"take","conversation":"c_1","resume":"yes"})").conversation == "c_1");
      CHECK(bad(R"({"v":1,"type":"message","conversation":"c_2","id":"has space","text":"hi"})").conversation == "c_2");
      CHECK(bad(R"({"v":1,"type":"take","conversation":5})").conversation.empty());
    }
  }

  TEST_CASE("error codes and close codes") {
    CHECK(to_string(ErrorKind::kUnauthorized) == "unauthorized");
    CHECK(close_code(ErrorKind::kUnauthorized) == 1008);
    CHECK(close_code(ErrorKind::kInvalidUtf8) == 1007);
    CHECK(close_code(ErrorKind::kBadFrame) == 0);
    CHECK(error_kind_from_string("too_large") == ErrorKind::kTooLarge);
    // An error code from a newer hub is still an error.
    CHECK(ok(R"({"v":1,"type":"error","code":"something_new","message":"x"})").error == ErrorKind::kInternal);
  }

  TEST_CASE("client message ids") {
    CHECK(valid_client_id("m-1_A"));
    CHECK(valid_client_id(std::string(64, 'a')));
    CHECK_FALSE(valid_client_id(std::string(65, 'a')));
    CHECK_FALSE(valid_client_id(""));
    CHECK_FALSE(valid_client_id("a/b"));
  }

  TEST_CASE("a bot message's details and an event's data are read, leniently") {
    BotInfo b = parse_bot_info(
        R"({"decision":"clarify","entry":"","follow_ups":[],"options":[{"label":"ポイントの使い方","entry":"points-use"},)"
        R"({"label":"有効期限","entry":"points-expiry","extra":1},{"label":"no entry"},7],"new_field":{"x":[1]}})");
    CHECK(b.decision == "clarify");
    CHECK(b.entry.empty());
    CHECK(b.options == std::vector<BotOption>{{"ポイントの使い方", "points-use"}, {"有効期限", "points-expiry"}});
    b = parse_bot_info(R"({"decision":"answer","entry":"returns-window","follow_ups":["refund-timing",3,"exchange-size"]})");
    CHECK(b.entry == "returns-window");
    CHECK(b.follow_ups == std::vector<std::string>{"refund-timing", "exchange-size"});
    CHECK(b.options.empty());
    CHECK(b.suggestions.empty());
    b = parse_bot_info(R"({"decision":"answer","suggestions":[{"label":"返金はいつ？","entry":"refund-timing"},{"entry":""}]})");
    CHECK(b.suggestions == std::vector<BotOption>{{"返金はいつ？", "refund-timing"}});
    for (std::string_view bad : {"", "[]", "{", "null", R"({"decision":3,"options":{}})"}) {
      CAPTURE(bad);
      CHECK(parse_bot_info(bad) == BotInfo{});
    }

    EventData d = parse_event_data(R"({"reason":"visitor asked for a person","queue_position":2})");
    CHECK(d.reason == "visitor asked for a person");
    CHECK(d.queue_position == 2);
    EventData t = parse_event_data(R"({"from":"sato","to":"suzuki"})");
    CHECK(t.from == "sato");
    CHECK(t.to == "suzuki");
    CHECK(t.agent.empty());
    CHECK_FALSE(t.queue_position.has_value());
    CHECK(parse_event_data(R"({"by":"visitor"})").by == "visitor");
    CHECK(parse_event_data(R"({"agent":"sato"})").agent == "sato");
    CHECK_FALSE(parse_event_data(R"({"queue_position":"2"})").queue_position.has_value());
    CHECK(parse_event_data("{}") == EventData{});
    CHECK(parse_event_data("not json") == EventData{});
  }
}
