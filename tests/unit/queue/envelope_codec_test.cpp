#include "queue/envelope_codec.hpp"

#include <gtest/gtest.h>

#include "unit/queue/test_support.hpp"

namespace postern::queue {
namespace {

bool same(const envelope& a, const envelope& b) {
    if (a.recipients.size() != b.recipients.size()) return false;
    for (std::size_t i = 0; i < a.recipients.size(); ++i) {
        const auto &x = a.recipients[i], &y = b.recipients[i];
        if (x.address != y.address || x.orcpt != y.orcpt || x.notify != y.notify || x.state != y.state || x.attempts != y.attempts ||
            x.next_attempt != y.next_attempt || x.last_reply != y.last_reply)
            return false;
    }
    return a.id == b.id && a.mail_from == b.mail_from && a.body_8bit == b.body_8bit && a.smtputf8 == b.smtputf8 &&
           a.envid == b.envid && a.ret == b.ret && a.client_address == b.client_address &&
           a.client_helo == b.client_helo && a.receive_connector == b.receive_connector &&
           a.session_id == b.session_id && a.received_at == b.received_at &&
           a.delay_notice_sent == b.delay_notice_sent && a.held == b.held && a.body_size == b.body_size;
}

envelope rich_envelope() {
    auto env = testing::sample_envelope();
    env.id = "00061f0a1b2c3d4e";
    env.smtputf8 = true;
    env.delay_notice_sent = true;
    env.held = true;
    env.body_size = 36700160;
    env.recipients[0].state = recipient_state::delivered;
    env.recipients[0].attempts = 3;
    env.recipients[0].next_attempt = env.received_at + std::chrono::minutes(5);
    env.recipients[0].last_reply = "250 2.0.0 Ok: queued as 4Xyz";
    env.recipients[0].notify = "SUCCESS,DELAY";
    env.recipients[1].notify = "NEVER";
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
    other_format[0] = static_cast<char>(envelope_format_current + 1);
    EXPECT_FALSE(decode_envelope(other_format));
    other_format[0] = 0;
    EXPECT_FALSE(decode_envelope(other_format));

    envelope env;
    env.recipients.push_back(testing::make_recipient("a@b.test"));
    auto one = encode_envelope(env);
    auto state_at = one.size() - 1 /*last_tls len*/ - 1 /*last_reply len*/ - 8 /*time*/ - 1 /*attempts*/ - 1;
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

TEST(envelope_codec, writes_the_current_format) {
    auto bytes = encode_envelope(rich_envelope());
    ASSERT_FALSE(bytes.empty());
    EXPECT_EQ(static_cast<unsigned char>(bytes[0]), envelope_format_current);
    EXPECT_EQ(envelope_format_current, envelope_format_v5);
}

TEST(envelope_codec, body_in_file_round_trips_and_v3_records_read_as_in_the_store) {
    auto env = rich_envelope();
    env.body_in_file = true;
    auto back = decode_envelope(encode_envelope(env));
    ASSERT_TRUE(back);
    EXPECT_TRUE(back->body_in_file);
    auto old = decode_envelope(encode_envelope_v3(env));
    ASSERT_TRUE(old);
    EXPECT_FALSE(old->body_in_file);
    EXPECT_EQ(old->recipients.size(), env.recipients.size());
}

TEST(envelope_codec, last_tls_round_trips_and_v4_records_read_without_it) {
    auto env = rich_envelope();
    env.recipients[0].last_tls = "dane-ee";
    env.requiretls = true;
    env.tls_optional = true;
    auto back = decode_envelope(encode_envelope(env));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->recipients[0].last_tls, "dane-ee");
    EXPECT_TRUE(back->requiretls);
    EXPECT_TRUE(back->tls_optional);
    auto old = decode_envelope(encode_envelope_v4(env));
    ASSERT_TRUE(old);
    EXPECT_EQ(old->recipients[0].last_tls, "");
    EXPECT_FALSE(old->requiretls);
    EXPECT_EQ(old->recipients[0].last_reply, env.recipients[0].last_reply);
}

// A v1 record as the first release wrote it, byte for byte: it must still read, as a
// message that is not held and whose size is unknown (0).
TEST(envelope_codec, a_v1_record_from_disk_still_reads) {
    using namespace std::string_literals;
    const std::string v1 =
        "\x01"s                                   // format 1
        "\x10" "00061f0a1b2c3d4e"s                // id
        "\x08" "a@b.test"s                        // mail_from
        "\x00\x01"s                               // body_8bit = false, smtputf8 = true
        "\x00\x00\x00\x00\x00\x00"s                 // envid, ret, client, helo, connector, session
        "\x01\x00\x00\x00\x00\x00\x00\x00"s         // received_at = 1 tick
        "\x01"s                                   // delay_notice_sent = true
        "\x01"s                                   // one recipient
        "\x08" "c@d.test"s "\x00"s                // address, orcpt
        "\x00\x02"s                               // pending, 2 attempts
        "\x00\x00\x00\x00\x00\x00\x00\x00"s         // next_attempt
        "\x05" "451 x"s;                          // last_reply
    auto env = decode_envelope(v1);
    ASSERT_TRUE(env);
    EXPECT_EQ(env->id, "00061f0a1b2c3d4e");
    EXPECT_EQ(env->mail_from, "a@b.test");
    EXPECT_FALSE(env->body_8bit);
    EXPECT_TRUE(env->smtputf8);
    EXPECT_EQ(env->received_at, sys_time(sys_time::duration(1)));
    EXPECT_TRUE(env->delay_notice_sent);
    EXPECT_FALSE(env->held);
    EXPECT_EQ(env->body_size, 0u);
    ASSERT_EQ(env->recipients.size(), 1u);
    EXPECT_EQ(env->recipients[0].address, "c@d.test");
    EXPECT_EQ(env->recipients[0].state, recipient_state::pending);
    EXPECT_EQ(env->recipients[0].attempts, 2u);
    EXPECT_EQ(env->recipients[0].last_reply, "451 x");
    // ...and is written back in the current format with the same fields.
    auto again = decode_envelope(encode_envelope(*env));
    ASSERT_TRUE(again);
    EXPECT_TRUE(same(*env, *again));
}

TEST(envelope_codec, v1_encoding_drops_only_the_new_fields) {
    auto env = rich_envelope();
    auto decoded = decode_envelope(encode_envelope_v1(env));
    ASSERT_TRUE(decoded);
    EXPECT_FALSE(decoded->held);
    EXPECT_EQ(decoded->body_size, 0u);
    decoded->held = env.held;
    decoded->body_size = env.body_size;
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
        EXPECT_EQ(decoded->recipients[i].notify, "");
        decoded->recipients[i].notify = env.recipients[i].notify;
    }
    EXPECT_TRUE(same(env, *decoded));
    // Every truncation of a v1 record is rejected as well.
    auto bytes = encode_envelope_v1(env);
    for (std::size_t n = 0; n < bytes.size(); ++n)
        EXPECT_FALSE(decode_envelope(std::string_view(bytes).substr(0, n))) << "length " << n;
}

TEST(envelope_codec, v2_encoding_drops_only_notify) {
    auto env = rich_envelope();
    auto bytes = encode_envelope_v2(env);
    ASSERT_EQ(static_cast<unsigned char>(bytes[0]), envelope_format_v2);
    auto decoded = decode_envelope(bytes);
    ASSERT_TRUE(decoded);
    EXPECT_TRUE(decoded->held);
    EXPECT_EQ(decoded->body_size, env.body_size);
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
        EXPECT_EQ(decoded->recipients[i].notify, "") << i;   // RFC 3461 §4.1: absent
        decoded->recipients[i].notify = env.recipients[i].notify;
    }
    EXPECT_TRUE(same(env, *decoded));
    for (std::size_t n = 0; n < bytes.size(); ++n)
        EXPECT_FALSE(decode_envelope(std::string_view(bytes).substr(0, n))) << "length " << n;
}

// A v2 record byte for byte (the format before recipient NOTIFY was kept): it must read
// with notify "" for every recipient.
TEST(envelope_codec, a_v2_record_from_disk_reads_with_notify_absent) {
    using namespace std::string_literals;
    const std::string v2 =
        "\x02"s                                   // format 2
        "\x10" "00061f0a1b2c3d4e"s                // id
        "\x08" "a@b.test"s                        // mail_from
        "\x00\x00"s                               // body_8bit, smtputf8
        "\x05" "E+2B1"s "\x04" "FULL"s             // envid, ret
        "\x00\x00\x00\x00"s                       // client, helo, connector, session
        "\x01\x00\x00\x00\x00\x00\x00\x00"s         // received_at = 1 tick
        "\x00"s                                   // delay_notice_sent
        "\x01" "\x80\x01"s                        // held = true, body_size = 128
        "\x01"s                                   // one recipient
        "\x08" "c@d.test"s                        // address
        "\x0f" "rfc822;c@d.test"s                 // orcpt
        "\x00\x00"s                               // pending, 0 attempts
        "\x00\x00\x00\x00\x00\x00\x00\x00"s         // next_attempt
        "\x00"s;                                  // last_reply
    auto env = decode_envelope(v2);
    ASSERT_TRUE(env);
    EXPECT_EQ(env->envid, "E+2B1");
    EXPECT_EQ(env->ret, "FULL");
    EXPECT_TRUE(env->held);
    EXPECT_EQ(env->body_size, 128u);
    ASSERT_EQ(env->recipients.size(), 1u);
    EXPECT_EQ(env->recipients[0].orcpt, "rfc822;c@d.test");
    EXPECT_EQ(env->recipients[0].notify, "");
    auto again = decode_envelope(encode_envelope(*env));
    ASSERT_TRUE(again);
    EXPECT_TRUE(same(*env, *again));
}

TEST(envelope_codec, a_bad_held_byte_is_rejected) {
    envelope env;
    auto bytes = encode_envelope(env);
    // format, 10 empty strings... then received_at (8), delay_notice_sent, held, body_size,
    // body_in_file, count
    const auto held_at = bytes.size() - 1 /*count*/ - 1 /*body_in_file*/ - 1 /*body_size*/ - 1;
    ASSERT_EQ(bytes[held_at], 0);
    auto bad_held = bytes;
    bad_held[held_at] = 2;
    EXPECT_FALSE(decode_envelope(bad_held));
    auto bad_file_flag = bytes;
    bad_file_flag[bytes.size() - 2] = 2;
    EXPECT_FALSE(decode_envelope(bad_file_flag));
}

}  // namespace
}  // namespace postern::queue
