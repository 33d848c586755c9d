#include "queue/envelope_codec.hpp"

#include <gtest/gtest.h>

#include "unit/queue/test_support.hpp"

namespace postern::queue {
namespace {

bool same(const envelope& a, const envelope& b) {
    if (a.recipients.size() != b.recipients.size()) return false;
    for (std::size_t i = 0; i < a.recipients.size(); ++i) {
        const auto &x = a.recipients[i], &y = b.recipients[i];
        if (x.address != y.address || x.orcpt != y.orcpt || x.state != y.state || x.attempts != y.attempts ||
            x.next_attempt != y.next_attempt || x.last_reply != y.last_reply)
            return false;
    }
    return a.id == b.id && a.mail_from == b.mail_from && a.body_8bit == b.body_8bit && a.smtputf8 == b.smtputf8 &&
           a.envid == b.envid && a.ret == b.ret && a.client_address == b.client_address &&
           a.client_helo == b.client_helo && a.receive_connector == b.receive_connector &&
           a.session_id == b.session_id && a.received_at == b.received_at &&
           a.delay_notice_sent == b.delay_notice_sent;
}

envelope rich_envelope() {
    auto env = testing::sample_envelope();
    env.id = "00061f0a1b2c3d4e";
    env.smtputf8 = true;
    env.delay_notice_sent = true;
    env.recipients[0].state = recipient_state::delivered;
    env.recipients[0].attempts = 3;
    env.recipients[0].next_attempt = env.received_at + std::chrono::minutes(5);
    env.recipients[0].last_reply = "250 2.0.0 Ok: queued as 4Xyz";
    env.recipients[1].state = recipient_state::failed;
    env.recipients[1].last_reply = std::string("550 5.1.1 \x00\xff binary", 19);
    return env;
}

TEST(envelope_codec, round_trip_keeps_every_field) {
    auto env = rich_envelope();
    auto decoded = decode_envelope(encode_envelope(env));
    ASSERT_TRUE(decoded);
    EXPECT_TRUE(same(env, *decoded));
}

TEST(envelope_codec, round_trip_of_an_empty_envelope) {
    envelope env;
    auto decoded = decode_envelope(encode_envelope(env));
    ASSERT_TRUE(decoded);
    EXPECT_TRUE(same(env, *decoded));
}

TEST(envelope_codec, times_before_1970_survive) {
    envelope env;
    env.received_at = sys_time(std::chrono::seconds(-86400));
    auto decoded = decode_envelope(encode_envelope(env));
    ASSERT_TRUE(decoded);
    EXPECT_EQ(decoded->received_at, env.received_at);
}

TEST(envelope_codec, every_truncation_is_rejected) {
    auto bytes = encode_envelope(rich_envelope());
    for (std::size_t n = 0; n < bytes.size(); ++n)
        EXPECT_FALSE(decode_envelope(std::string_view(bytes).substr(0, n))) << "length " << n;
}

TEST(envelope_codec, trailing_bytes_unknown_format_and_bad_state_are_rejected) {
    auto bytes = encode_envelope(rich_envelope());
    EXPECT_FALSE(decode_envelope(bytes + "x"));
    auto other_format = bytes;
    other_format[0] = 2;
    EXPECT_FALSE(decode_envelope(other_format));

    envelope env;
    env.recipients.push_back(testing::make_recipient("a@b.test"));
    auto one = encode_envelope(env);
    auto state_at = one.size() - 1 /*last_reply len*/ - 8 /*time*/ - 1 /*attempts*/ - 1;
    ASSERT_EQ(one[state_at], 0);
    one[state_at] = 7;
    EXPECT_FALSE(decode_envelope(one));
}

TEST(envelope_codec, huge_recipient_count_is_rejected_without_allocating) {
    envelope env;
    auto bytes = encode_envelope(env);
    bytes.pop_back();  // the recipient count, 0
    for (int i = 0; i < 9; ++i) bytes.push_back(static_cast<char>(0xff));
    bytes.push_back(0x01);
    EXPECT_FALSE(decode_envelope(bytes));
}

}  // namespace
}  // namespace postern::queue
