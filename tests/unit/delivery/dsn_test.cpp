// Unit tests for RFC 3461 in our own notices: which recipients want which notice (NOTIFY),
// what a failure DSN returns (RET), and the pure scheduler helpers the engine calls to
// carry the parameters to the next hop and to build delay notices.
#include "delivery/dsn.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "delivery/scheduler.hpp"

namespace postern::delivery {
namespace {

using namespace std::chrono_literals;

queue::recipient with_notify(std::string notify, std::string address = "bob@partner.test") {
    queue::recipient r;
    r.address = std::move(address);
    r.notify = std::move(notify);
    return r;
}

queue::envelope message(std::string ret = {}) {
    queue::envelope env;
    env.id = "M1";
    env.mail_from = "alice@example.test";
    env.ret = std::move(ret);
    env.envid = "QQ+2B1";
    env.received_at = std::chrono::system_clock::now() - 1h;
    env.recipients.push_back(with_notify(""));
    return env;
}

constexpr std::uint64_t default_limit = 50 * 1024;   // bounce_size_limit's default

const std::string original = "Subject: figures\r\nFrom: alice@example.test\r\n\r\nBODY LINE ONE\r\nBODY LINE TWO\r\n";

std::vector<dsn_recipient> one_failed() {
    return {{"bob@partner.test", "rfc822;bob@partner.test", "5.1.1", "550 5.1.1 no such user", "mx.partner.test"}};
}

/// The third MIME part of a DSN: from its boundary line to the closing boundary.
std::string third_part(const std::string& body) {
    const auto b = body.find("boundary=\"");
    const auto e = body.find('"', b + 10);
    const std::string boundary = "--" + body.substr(b + 10, e - b - 10);
    std::size_t at = 0;
    for (int i = 0; i < 3; ++i) at = body.find(boundary + "\r\n", at + 1);
    return body.substr(at, body.find(boundary + "--", at) - at);
}

// --- NOTIFY (RFC 3461 §4.1) -----------------------------------------------------------------

TEST(wants_notice, absent_notify_means_failure_and_delay_but_no_success) {
    const auto r = with_notify("");
    EXPECT_TRUE(wants_notice(r, dsn_kind::failure));
    EXPECT_TRUE(wants_notice(r, dsn_kind::delay));
    EXPECT_FALSE(wants_notice(r, dsn_kind::relayed));
}

TEST(wants_notice, never_means_no_notice_at_all) {
    const auto r = with_notify("NEVER");
    EXPECT_FALSE(wants_notice(r, dsn_kind::failure));
    EXPECT_FALSE(wants_notice(r, dsn_kind::delay));
    EXPECT_FALSE(wants_notice(r, dsn_kind::relayed));
}

TEST(wants_notice, a_list_gives_exactly_what_it_names) {
    EXPECT_TRUE(wants_notice(with_notify("FAILURE"), dsn_kind::failure));
    EXPECT_FALSE(wants_notice(with_notify("FAILURE"), dsn_kind::delay));
    EXPECT_FALSE(wants_notice(with_notify("FAILURE"), dsn_kind::relayed));

    EXPECT_FALSE(wants_notice(with_notify("SUCCESS"), dsn_kind::failure));
    EXPECT_FALSE(wants_notice(with_notify("SUCCESS"), dsn_kind::delay));
    EXPECT_TRUE(wants_notice(with_notify("SUCCESS"), dsn_kind::relayed));

    EXPECT_FALSE(wants_notice(with_notify("DELAY"), dsn_kind::failure));
    EXPECT_TRUE(wants_notice(with_notify("DELAY"), dsn_kind::delay));

    const auto all = with_notify("DELAY,SUCCESS,FAILURE");
    EXPECT_TRUE(wants_notice(all, dsn_kind::failure));
    EXPECT_TRUE(wants_notice(all, dsn_kind::delay));
    EXPECT_TRUE(wants_notice(all, dsn_kind::relayed));

    const auto success_delay = with_notify("SUCCESS,DELAY");
    EXPECT_FALSE(wants_notice(success_delay, dsn_kind::failure));
    EXPECT_TRUE(wants_notice(success_delay, dsn_kind::delay));
}

// --- RET (RFC 3461 §4.3) --------------------------------------------------------------------

TEST(dsn_ret, full_returns_the_whole_message_as_message_rfc822) {
    auto dsn = build_dsn(message("FULL"), one_failed(), dsn_kind::failure, "mx.example.test", original,
                         std::chrono::system_clock::now(), default_limit);
    const auto part = third_part(dsn.body);
    EXPECT_NE(part.find("Content-Type: message/rfc822\r\n"), std::string::npos) << part;
    EXPECT_EQ(part.find("text/rfc822-headers"), std::string::npos) << part;
    EXPECT_EQ(part.find("Content-Transfer-Encoding"), std::string::npos) << "7-bit content: " << part;
    EXPECT_NE(part.find("\r\n\r\n" + original), std::string::npos) << part;   // headers, blank line, body
    EXPECT_NE(dsn.body.find("Original-Envelope-Id: QQ+2B1\r\n"), std::string::npos);
    EXPECT_FALSE(dsn.envelope.body_8bit);
    EXPECT_EQ(dsn.body.find("\n\n"), std::string::npos);                      // CRLF lines only
}

TEST(dsn_ret, hdrs_and_absent_return_only_the_header_section) {
    for (std::string ret : {"HDRS", ""}) {
        auto dsn = build_dsn(message(ret), one_failed(), dsn_kind::failure, "mx.example.test", original,
                             std::chrono::system_clock::now(), default_limit);
        const auto part = third_part(dsn.body);
        EXPECT_NE(part.find("Content-Type: text/rfc822-headers\r\n"), std::string::npos) << ret << part;
        EXPECT_NE(part.find("Subject: figures\r\n"), std::string::npos) << ret;
        EXPECT_EQ(dsn.body.find("BODY LINE"), std::string::npos) << ret << ": headers only";
        EXPECT_EQ(dsn.body.find("message/rfc822"), std::string::npos) << ret;
    }
}

// RET asks for content in "failed" DSNs only; delay and relayed notices keep to headers.
TEST(dsn_ret, full_does_not_put_the_body_in_delay_or_relayed_notices) {
    for (auto kind : {dsn_kind::delay, dsn_kind::relayed}) {
        auto dsn = build_dsn(message("FULL"), one_failed(), kind, "mx.example.test", original,
                             std::chrono::system_clock::now(), default_limit);
        EXPECT_NE(third_part(dsn.body).find("Content-Type: text/rfc822-headers"), std::string::npos);
        EXPECT_EQ(dsn.body.find("BODY LINE"), std::string::npos);
    }
}

// The older calling convention (the header section in place of the message) still builds a
// well-formed DSN: for RET=FULL the returned message is then the headers alone.
TEST(dsn_ret, headers_only_argument_still_works) {
    auto hdrs = build_dsn(message(), one_failed(), dsn_kind::failure, "mx.example.test", header_section(original),
                          std::chrono::system_clock::now(), default_limit);
    EXPECT_NE(third_part(hdrs.body).find("Subject: figures\r\n"), std::string::npos);
    auto full = build_dsn(message("FULL"), one_failed(), dsn_kind::failure, "mx.example.test",
                          header_section(original), std::chrono::system_clock::now(), default_limit);
    const auto part = third_part(full.body);
    EXPECT_NE(part.find("Content-Type: message/rfc822\r\n"), std::string::npos);
    EXPECT_NE(part.find("Subject: figures\r\n"), std::string::npos);
    EXPECT_EQ(full.body.find("BODY LINE"), std::string::npos);
}

TEST(dsn_ret, an_8bit_original_makes_an_8bit_dsn) {
    const std::string utf8 = "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n";
    auto dsn = build_dsn(message("FULL"), one_failed(), dsn_kind::failure, "mx.example.test", utf8,
                         std::chrono::system_clock::now(), default_limit);
    EXPECT_TRUE(dsn.envelope.body_8bit);
    const auto part = third_part(dsn.body);
    EXPECT_NE(part.find("Content-Transfer-Encoding: 8bit\r\n"), std::string::npos) << part;
    EXPECT_NE(part.find("na\xc3\xafve\r\n"), std::string::npos);
}

// --- bounce_size_limit (Postfix's; RFC 3461 §4.3 allows headers only) -----------------------

/// The content of the third part: what of the original went back, without the part's
/// own header and the CRLF that belongs to the closing boundary.
std::string returned_text(const std::string& body) {
    const auto part = third_part(body);
    const auto start = part.find("\r\n\r\n") + 4;
    return part.substr(start, part.size() - start - 2);
}

/// `original`'s header section over a body of about `body_octets` in 80-octet lines.
std::string with_body_of(std::size_t body_octets) {
    std::string m = header_section(original) + "\r\n";
    for (std::size_t i = 0; m.size() < body_octets; ++i) m += fmt::format("BODY LINE {:068}\r\n", i);
    return m;
}

const std::string over_limit_note = "The original message was larger than 51200 bytes; only its headers are included.";

TEST(dsn_size_limit, ret_full_over_the_limit_returns_the_headers_with_a_note) {
    const auto big = with_body_of(200 * 1024);
    auto dsn = build_dsn(message("FULL"), one_failed(), dsn_kind::failure, "mx.example.test", big,
                         std::chrono::system_clock::now(), default_limit);
    const auto part = third_part(dsn.body);
    EXPECT_NE(part.find("Content-Type: text/rfc822-headers\r\n"), std::string::npos) << part;
    EXPECT_EQ(dsn.body.find("message/rfc822"), std::string::npos);
    EXPECT_EQ(returned_text(dsn.body), header_section(original));
    EXPECT_EQ(dsn.body.find("BODY LINE"), std::string::npos);
    EXPECT_NE(dsn.body.find(over_limit_note + "\r\n"), std::string::npos) << dsn.body;
    EXPECT_LT(dsn.body.find(over_limit_note), dsn.body.find("message/delivery-status")) << "in the text for people";
    EXPECT_LT(dsn.body.size(), 4096u);
}

TEST(dsn_size_limit, ret_full_up_to_the_limit_returns_the_whole_message) {
    const auto at_limit = with_body_of(4000).substr(0, 4000 - 2) + "\r\n";
    ASSERT_EQ(at_limit.size(), 4000u);
    auto whole = build_dsn(message("FULL"), one_failed(), dsn_kind::failure, "mx.example.test", at_limit,
                           std::chrono::system_clock::now(), 4000);
    EXPECT_NE(third_part(whole.body).find("Content-Type: message/rfc822\r\n"), std::string::npos);
    EXPECT_EQ(returned_text(whole.body), at_limit);
    EXPECT_EQ(whole.body.find("only its headers"), std::string::npos);

    auto one_over = build_dsn(message("FULL"), one_failed(), dsn_kind::failure, "mx.example.test", at_limit,
                              std::chrono::system_clock::now(), 3999);
    EXPECT_NE(third_part(one_over.body).find("Content-Type: text/rfc822-headers\r\n"), std::string::npos);
    EXPECT_EQ(returned_text(one_over.body), header_section(original));
    EXPECT_NE(one_over.body.find("The original message was larger than 3999 bytes; only its headers are included."),
              std::string::npos);
}

// A header section of thousands of fields (a mail loop, a broken generator) is cut at the
// limit, at the end of a whole line, whatever RET and the kind of notice.
TEST(dsn_size_limit, a_header_section_over_the_limit_is_cut_at_a_line_end) {
    std::string headers;
    for (int i = 0; headers.size() < 100 * 1024; ++i) headers += fmt::format("X-Filler-{:05}: {:030}\r\n", i, i);
    const std::string pathological = headers + "\r\nBODY LINE\r\n";
    for (auto [kind, ret] : {std::pair{dsn_kind::failure, "FULL"}, std::pair{dsn_kind::failure, "HDRS"},
                             std::pair{dsn_kind::delay, ""}}) {
        auto dsn = build_dsn(message(ret), one_failed(), kind, "mx.example.test", pathological,
                             std::chrono::system_clock::now(), 4096);
        const auto text = returned_text(dsn.body);
        ASSERT_FALSE(text.empty()) << ret;
        EXPECT_LE(text.size(), 4096u) << ret;
        EXPECT_GT(text.size(), 4096u - 50) << ret << ": as many whole lines as fit";
        EXPECT_EQ(headers.compare(0, text.size(), text), 0) << ret << ": a prefix of the header section";
        EXPECT_EQ(text.compare(text.size() - 2, 2, "\r\n"), 0) << ret << ": ends with a whole line";
        EXPECT_EQ(headers.compare(text.size(), 9, "X-Filler-"), 0) << ret << ": cut where a line starts";
        EXPECT_NE(dsn.body.find("The header section of the original message was larger than 4096 bytes; it has been "
                                "cut short."),
                  std::string::npos)
            << ret;
        EXPECT_LT(dsn.body.size(), 8192u) << ret;
    }
    // Not even the first line fits: nothing goes back, and the notice is still well formed.
    auto tiny = build_dsn(message("HDRS"), one_failed(), dsn_kind::failure, "mx.example.test", pathological,
                          std::chrono::system_clock::now(), 10);
    EXPECT_EQ(returned_text(tiny.body), "");
    EXPECT_NE(tiny.body.find("Content-Type: text/rfc822-headers\r\n"), std::string::npos);
    EXPECT_EQ(tiny.body.find("X-Filler"), std::string::npos);
}

TEST(dsn_size_limit, headers_within_the_limit_carry_no_note) {
    for (std::string ret : {"HDRS", "FULL"}) {
        auto dsn = build_dsn(message(ret), one_failed(), dsn_kind::failure, "mx.example.test", original,
                             std::chrono::system_clock::now(), default_limit);
        EXPECT_EQ(dsn.body.find("bytes;"), std::string::npos) << ret << dsn.body;
    }
}

// --- relayed (RFC 3461 §5.2.2) ------------------------------------------------------------

TEST(dsn_relayed, says_relayed_with_the_next_hops_reply) {
    std::vector<dsn_recipient> list = {
        {"bob@partner.test", "rfc822;bob@partner.test", "2.0.0", "250 2.0.0 Ok: queued as X", "mx.partner.test"}};
    auto dsn = build_dsn(message(), list, dsn_kind::relayed, "mx.example.test", original,
                         std::chrono::system_clock::now(), default_limit);
    EXPECT_EQ(dsn.envelope.mail_from, "");
    EXPECT_NE(dsn.body.find("Subject: Relayed Mail"), std::string::npos);
    EXPECT_NE(dsn.body.find("Action: relayed\r\n"), std::string::npos);
    EXPECT_NE(dsn.body.find("Status: 2.0.0\r\n"), std::string::npos);
    EXPECT_NE(dsn.body.find("Remote-MTA: dns; mx.partner.test\r\n"), std::string::npos);
    EXPECT_NE(dsn.body.find("Original-Recipient: rfc822;bob@partner.test\r\n"), std::string::npos);
    EXPECT_EQ(dsn.body.find("Action: failed"), std::string::npos);
}

// --- scheduler helpers ----------------------------------------------------------------------

TEST(scheduler_dsn, delay_notice_only_for_recipients_that_want_one) {
    config::queue_section q;
    q.delay_notice = 4h;
    auto env = message();
    env.received_at = std::chrono::system_clock::now() - 5h;
    env.recipients = {with_notify("NEVER", "a@p.test"), with_notify("FAILURE", "b@p.test"),
                      with_notify("SUCCESS", "c@p.test")};
    for (auto& r : env.recipients) r.attempts = 2;
    const auto now = std::chrono::system_clock::now();
    EXPECT_FALSE(delay_notice_due(env, q, now)) << "nobody asked for delay notices";
    EXPECT_TRUE(delay_notice_recipients(env).empty());

    env.recipients.push_back(with_notify("FAILURE,DELAY", "d@p.test"));
    env.recipients.push_back(with_notify("", "e@p.test"));   // absent: delays are reported
    env.recipients[3].attempts = 1;
    env.recipients[4].attempts = 1;
    env.recipients[4].last_reply = "451 4.3.0 try later";
    EXPECT_TRUE(delay_notice_due(env, q, now));
    const auto list = delay_notice_recipients(env);
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0].address, "d@p.test");
    EXPECT_EQ(list[0].status, "4.4.7");
    EXPECT_EQ(list[0].diagnostic, "not yet delivered");
    EXPECT_EQ(list[1].address, "e@p.test");
    EXPECT_EQ(list[1].diagnostic, "451 4.3.0 try later");

    env.recipients[3].state = queue::recipient_state::delivered;
    env.recipients[4].state = queue::recipient_state::failed;
    EXPECT_FALSE(delay_notice_due(env, q, now));
    EXPECT_TRUE(delay_notice_recipients(env).empty());
}

TEST(scheduler_dsn, transaction_carries_the_rfc3461_parameters) {
    auto env = message("HDRS");
    env.body_8bit = true;
    env.recipients = {with_notify("SUCCESS,FAILURE", "bob@partner.test"), with_notify("", "carol+tag@partner.test"),
                      with_notify("NEVER", "d\xc3\xa9@partner.test"), with_notify("", "eve@partner.test")};
    env.recipients[0].orcpt = "rfc822;Bob@Partner.test";
    const auto tx = transaction_for(env, {0, 1, 2}, original);
    EXPECT_EQ(tx.mail_from, "alice@example.test");
    EXPECT_TRUE(tx.body_8bit);
    EXPECT_EQ(tx.ret, "HDRS");
    EXPECT_EQ(tx.envid, "QQ+2B1");
    EXPECT_EQ(tx.body, original);
    ASSERT_EQ(tx.recipients, (std::vector<std::string>{"bob@partner.test", "carol+tag@partner.test",
                                                        "d\xc3\xa9@partner.test"}));
    ASSERT_EQ(tx.recipient_params.size(), 3u);
    EXPECT_EQ(tx.recipient_params[0].notify, "SUCCESS,FAILURE");
    EXPECT_EQ(tx.recipient_params[0].orcpt, "rfc822;Bob@Partner.test");          // as received
    EXPECT_EQ(tx.recipient_params[1].notify, "");
    EXPECT_EQ(tx.recipient_params[1].orcpt, "rfc822;carol+2Btag@partner.test");  // added, xtext
    EXPECT_EQ(tx.recipient_params[2].notify, "NEVER");
    EXPECT_EQ(tx.recipient_params[2].orcpt, "");                                 // UTF-8: not added

    const auto second = transaction_for(env, {3}, original);   // a later round: only some
    ASSERT_EQ(second.recipients, (std::vector<std::string>{"eve@partner.test"}));
    EXPECT_EQ(second.recipient_params[0].orcpt, "rfc822;eve@partner.test");
}

}  // namespace
}  // namespace postern::delivery
