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

smtp::recipient with_notify(std::string notify, std::string address = "bob@partner.test") {
    smtp::recipient r;
    r.address = std::move(address);
    r.notify = std::move(notify);
    return r;
}

smtp::envelope message(std::string ret = {}) {
    smtp::envelope env;
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

/// The `n`th MIME part of a DSN (1 to 3): from its boundary line to the next boundary.
std::string part(const std::string& body, int n) {
    const auto b = body.find("boundary=\"");
    const auto e = body.find('"', b + 10);
    const std::string boundary = "--" + body.substr(b + 10, e - b - 10);
    std::size_t at = 0;
    for (int i = 0; i < n; ++i) at = body.find(boundary + "\r\n", at + 1);
    return body.substr(at, body.find(boundary, at + boundary.size()) - at);
}

std::string third_part(const std::string& body) { return part(body, 3); }

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

// --- RFC 6533: internationalised DSNs -------------------------------------------------------

const std::string utf8_original = "Subject: caf\xc3\xa9 figures\r\nFrom: J\xc3\xbcrgen <alice@example.test>\r\n\r\n"
                                  "na\xc3\xafve body\r\n";

smtp::envelope received_with_smtputf8(std::string ret = {}) {
    auto env = message(std::move(ret));
    env.smtputf8 = true;
    env.body_8bit = true;
    return env;
}

TEST(dsn_utf8, an_smtputf8_original_gets_the_global_types) {
    auto full = build_dsn(received_with_smtputf8("FULL"), one_failed(), dsn_kind::failure, "mx.example.test",
                          utf8_original, std::chrono::system_clock::now(), default_limit);
    EXPECT_NE(part(full.body, 2).find("Content-Type: message/global-delivery-status\r\n"), std::string::npos)
        << full.body;
    EXPECT_EQ(full.body.find("message/delivery-status"), std::string::npos);
    const auto returned = third_part(full.body);
    EXPECT_NE(returned.find("Content-Type: message/global\r\n"), std::string::npos) << returned;
    EXPECT_NE(returned.find("Content-Transfer-Encoding: 8bit\r\n"), std::string::npos) << returned;
    EXPECT_EQ(returned_text(full.body), utf8_original);
    EXPECT_EQ(full.body.find("message/rfc822"), std::string::npos);
    // The report still says what it is: RFC 6522's report-type stays "delivery-status", as
    // parsers and Postfix expect.
    EXPECT_NE(full.body.find("multipart/report; report-type=delivery-status;"), std::string::npos);
    EXPECT_TRUE(full.envelope.smtputf8) << "UTF-8 headers in the returned message need SMTPUTF8";
    EXPECT_TRUE(full.envelope.body_8bit);

    for (auto [kind, ret] : {std::pair{dsn_kind::failure, "HDRS"}, std::pair{dsn_kind::delay, "FULL"},
                             std::pair{dsn_kind::relayed, ""}}) {
        auto hdrs = build_dsn(received_with_smtputf8(ret), one_failed(), kind, "mx.example.test", utf8_original,
                              std::chrono::system_clock::now(), default_limit);
        EXPECT_NE(third_part(hdrs.body).find("Content-Type: message/global-headers\r\n"), std::string::npos)
            << ret << hdrs.body;
        EXPECT_EQ(hdrs.body.find("text/rfc822-headers"), std::string::npos) << ret;
        EXPECT_EQ(returned_text(hdrs.body), header_section(utf8_original)) << ret;
        EXPECT_NE(part(hdrs.body, 2).find("Content-Type: message/global-delivery-status\r\n"), std::string::npos);
        EXPECT_TRUE(hdrs.envelope.smtputf8) << ret;
    }
}

// Over bounce_size_limit an SMTPUTF8 message goes back as message/global-headers.
TEST(dsn_utf8, over_the_limit_an_smtputf8_original_returns_global_headers) {
    const auto big = utf8_original + std::string(8192, 'x') + "\r\n";
    auto dsn = build_dsn(received_with_smtputf8("FULL"), one_failed(), dsn_kind::failure, "mx.example.test", big,
                         std::chrono::system_clock::now(), 4096);
    EXPECT_NE(third_part(dsn.body).find("Content-Type: message/global-headers\r\n"), std::string::npos) << dsn.body;
    EXPECT_EQ(returned_text(dsn.body), header_section(utf8_original));
    EXPECT_NE(dsn.body.find("larger than 4096 bytes; only its headers are included"), std::string::npos);
}

TEST(dsn_utf8, utf8_addresses_take_the_utf8_address_type_in_global_delivery_status) {
    // A recipient with a UTF-8 local part; the message itself came without SMTPUTF8.
    std::vector<dsn_recipient> list = {
        {"d\xc3\xa9sir\xc3\xa9" "e@partner.test", "utf-8;d\xc3\xa9sir\xc3\xa9" "e@partner.test", "5.1.1",
         "550 5.1.1 no such user", "mx.partner.test"},
        {"bob@partner.test", "rfc822;bob@partner.test", "5.1.1", "550 5.1.1 no such user", "mx.partner.test"}};
    auto dsn = build_dsn(message(), list, dsn_kind::failure, "mx.example.test", original,
                         std::chrono::system_clock::now(), default_limit);
    const auto status = part(dsn.body, 2);
    EXPECT_NE(status.find("Content-Type: message/global-delivery-status\r\n"), std::string::npos) << status;
    EXPECT_NE(status.find("Content-Transfer-Encoding: 8bit\r\n"), std::string::npos) << status;
    EXPECT_NE(status.find("Final-Recipient: utf-8; d\xc3\xa9sir\xc3\xa9" "e@partner.test\r\n"), std::string::npos)
        << status;
    EXPECT_NE(status.find("Final-Recipient: rfc822; bob@partner.test\r\n"), std::string::npos) << status;
    EXPECT_NE(third_part(dsn.body).find("Content-Type: message/global-headers\r\n"), std::string::npos);
    EXPECT_NE(part(dsn.body, 1).find("Content-Transfer-Encoding: 8bit\r\n"), std::string::npos)
        << "the UTF-8 address in the text for people";
    EXPECT_TRUE(dsn.envelope.smtputf8) << "a UTF-8 address in the status fields needs SMTPUTF8";

    // A sender with a UTF-8 address gets a notice it can be sent back with.
    auto env = received_with_smtputf8();
    env.mail_from = "j\xc3\xbcrgen@example.test";
    auto back = build_dsn(env, one_failed(), dsn_kind::failure, "mx.example.test", original,
                          std::chrono::system_clock::now(), default_limit);
    EXPECT_EQ(back.envelope.recipients.at(0).address, "j\xc3\xbcrgen@example.test");
    EXPECT_NE(back.body.find("To: <j\xc3\xbcrgen@example.test>\r\n"), std::string::npos);
    EXPECT_TRUE(back.envelope.smtputf8);
}

// SMTPUTF8 is flagged only for UTF-8 where it is needed: a message that asked for it but
// carries none, or carries it in its body alone (8BITMIME's business), gives a notice that
// a next hop without SMTPUTF8 may still take.
TEST(dsn_utf8, no_smtputf8_flag_without_utf8_in_envelope_or_headers) {
    auto ascii = build_dsn(received_with_smtputf8("FULL"), one_failed(), dsn_kind::failure, "mx.example.test",
                           original, std::chrono::system_clock::now(), default_limit);
    EXPECT_NE(third_part(ascii.body).find("Content-Type: message/global\r\n"), std::string::npos);
    EXPECT_FALSE(ascii.envelope.smtputf8);
    EXPECT_FALSE(ascii.envelope.body_8bit);

    const std::string utf8_body = "Subject: figures\r\n\r\nna\xc3\xafve\r\n";
    auto body_only = build_dsn(received_with_smtputf8("FULL"), one_failed(), dsn_kind::failure, "mx.example.test",
                               utf8_body, std::chrono::system_clock::now(), default_limit);
    EXPECT_NE(third_part(body_only.body).find("Content-Type: message/global\r\n"), std::string::npos);
    EXPECT_FALSE(body_only.envelope.smtputf8);
    EXPECT_TRUE(body_only.envelope.body_8bit);
}

// The flag reaches the next hop: the transaction that carries the notice asks for
// SMTPUTF8, so the SMTP client refuses it (5.6.7) to a next hop that does not offer it.
TEST(dsn_utf8, the_notice_travels_with_smtputf8) {
    auto dsn = build_dsn(received_with_smtputf8("FULL"), one_failed(), dsn_kind::failure, "mx.example.test",
                         utf8_original, std::chrono::system_clock::now(), default_limit);
    const auto tx = transaction_for(dsn.envelope, {0}, dsn.body);
    EXPECT_TRUE(tx.smtputf8);
    EXPECT_EQ(tx.mail_from, "");
    EXPECT_EQ(tx.recipients, (std::vector<std::string>{"alice@example.test"}));
}

TEST(dsn_utf8, an_ascii_original_keeps_the_rfc3464_types) {
    for (std::string ret : {"FULL", "HDRS"}) {
        auto dsn = build_dsn(message(ret), one_failed(), dsn_kind::failure, "mx.example.test", original,
                             std::chrono::system_clock::now(), default_limit);
        EXPECT_NE(part(dsn.body, 2).find("Content-Type: message/delivery-status\r\n\r\nReporting-MTA:"),
                  std::string::npos)
            << dsn.body;
        EXPECT_NE(third_part(dsn.body).find(ret == "FULL" ? "Content-Type: message/rfc822\r\n"
                                                          : "Content-Type: text/rfc822-headers\r\n\r\n"),
                  std::string::npos)
            << dsn.body;
        EXPECT_NE(dsn.body.find("Final-Recipient: rfc822; bob@partner.test\r\n"), std::string::npos);
        EXPECT_EQ(dsn.body.find("global"), std::string::npos) << ret;
        EXPECT_EQ(dsn.body.find("utf-8;"), std::string::npos) << ret;
        EXPECT_EQ(dsn.body.find("Content-Transfer-Encoding"), std::string::npos) << ret;
        EXPECT_FALSE(dsn.envelope.smtputf8) << ret;
        EXPECT_FALSE(dsn.envelope.body_8bit) << ret;
    }
    // An 8-bit body without SMTPUTF8 is 8BITMIME mail: still message/rfc822, never SMTPUTF8.
    auto eight_bit = build_dsn(message("FULL"), one_failed(), dsn_kind::failure, "mx.example.test", utf8_original,
                               std::chrono::system_clock::now(), default_limit);
    EXPECT_NE(third_part(eight_bit.body).find("Content-Type: message/rfc822\r\n"), std::string::npos);
    EXPECT_EQ(eight_bit.body.find("global"), std::string::npos);
    EXPECT_FALSE(eight_bit.envelope.smtputf8);
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

    env.recipients[3].state = smtp::recipient_state::delivered;
    env.recipients[4].state = smtp::recipient_state::failed;
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

namespace postern::delivery {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::size_t at = 0;
    for (auto end = text.find("\r\n"); end != std::string::npos; end = text.find("\r\n", at)) {
        out.push_back(text.substr(at, end - at));
        at = end + 2;
    }
    out.push_back(text.substr(at));
    return out;
}

TEST(dsn_lines, a_long_remote_reply_is_folded_within_rfc_5322_limits_and_unfolds_to_itself) {
    std::string reply = "550 5.7.1";
    for (int i = 0; i < 200; ++i) reply += " word" + std::to_string(i);   // about 1,400 octets
    reply += " " + std::string(2500, 'z');                                  // and a run with no space
    auto failed = one_failed();
    failed[0].diagnostic = reply;
    auto dsn = build_dsn(message(), failed, dsn_kind::failure, "mx.example.test", original,
                         std::chrono::system_clock::now(), default_limit);
    std::size_t over_soft = 0;
    for (const auto& l : lines_of(dsn.body)) {
        EXPECT_LE(l.size(), 998u) << l.substr(0, 80);
        over_soft += l.size() > 78 ? 1 : 0;
    }
    EXPECT_LE(over_soft, 8u);   // only the pieces of the 2,500-octet run (and quoted originals)
    // The Diagnostic-Code field unfolds (RFC 5322 §2.2.3) to the reply, except the breaks
    // that had to go inside the run without spaces.
    const auto status = part(dsn.body, 2);
    const auto start = status.find("Diagnostic-Code: smtp; ");
    ASSERT_NE(start, std::string::npos);
    auto field = status.substr(start, status.find("\r\nLast-Attempt-Date") - start);
    std::string unfolded;
    for (std::size_t i = 0; i < field.size(); ++i) {
        if (field.compare(i, 2, "\r\n") == 0) {
            ++i;
            continue;
        }
        unfolded += field[i];
    }
    std::string no_spaces_expected = "Diagnostic-Code: smtp; " + reply, no_spaces_got = unfolded;
    std::erase(no_spaces_expected, ' ');
    std::erase(no_spaces_got, ' ');
    EXPECT_EQ(no_spaces_got, no_spaces_expected);
    EXPECT_TRUE(unfolded.starts_with("Diagnostic-Code: smtp; 550 5.7.1 word0 word1"));
}

TEST(dsn_lines, fold_line_keeps_short_lines_and_breaks_before_spaces) {
    EXPECT_EQ(fold_line("short line"), "short line");
    const std::string long_line = "Field: " + std::string(70, 'a') + " " + std::string(30, 'b');
    EXPECT_EQ(fold_line(long_line), "Field: " + std::string(70, 'a') + "\r\n " + std::string(30, 'b'));
    const auto hard = fold_line(std::string(2000, 'c'));
    for (const auto& l : lines_of(hard)) EXPECT_LE(l.size(), 998u);
}

}  // namespace
}  // namespace postern::delivery

namespace postern::delivery {
namespace {

// A golden notice: with the time and the unique token fixed, a failure DSN is the same
// octets every time; any change to its wording or structure shows here in full.
TEST(dsn_golden, a_failure_notice_is_exactly_this) {
    smtp::envelope env;
    env.id = "000661B0381E8325";
    env.mail_from = "alice@example.test";
    env.envid = "QQ+2B1";
    env.received_at = std::chrono::system_clock::time_point(std::chrono::seconds(1796256000));   // 2026-12-03T00:00:00Z
    env.recipients.push_back(with_notify(""));
    const auto now = env.received_at + std::chrono::hours(1);
    auto dsn = build_dsn(env, one_failed(), dsn_kind::failure, "mx.example.test", original, now, default_limit,
                         [] { return std::string("0123456789abcdef"); });
    const std::string golden =
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\n"
        "To: <alice@example.test>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Thu, 03 Dec 2026 01:00:00 +0000\r\n"
        "Message-ID: <000661B0381E8325.postern-dsn-0123456789abcdef@mx.example.test>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        "\tboundary=\"postern-dsn-0123456789abcdef\"\r\n"
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n"
        "--postern-dsn-0123456789abcdef\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "This is the mail system at mx.example.test.\r\n"
        "\r\n"
        "Your message could not be delivered to one or more recipients.\r\n"
        "It has been removed from the queue. The reasons follow.\r\n"
        "\r\n"
        "<bob@partner.test>: 550 5.1.1 no such user\r\n"
        "\r\n"
        "--postern-dsn-0123456789abcdef\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.test\r\n"
        "Original-Envelope-Id: QQ+2B1\r\n"
        "Arrival-Date: Thu, 03 Dec 2026 00:00:00 +0000\r\n"
        "\r\n"
        "Original-Recipient: rfc822;bob@partner.test\r\n"
        "Final-Recipient: rfc822; bob@partner.test\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Remote-MTA: dns; mx.partner.test\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
        "Last-Attempt-Date: Thu, 03 Dec 2026 01:00:00 +0000\r\n"
        "\r\n"
        "--postern-dsn-0123456789abcdef\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "Subject: figures\r\n"
        "From: alice@example.test\r\n"
        "\r\n"
        "--postern-dsn-0123456789abcdef--\r\n";
    EXPECT_EQ(dsn.body, golden);
    EXPECT_EQ(dsn.envelope.mail_from, "");
    ASSERT_EQ(dsn.envelope.recipients.size(), 1u);
    EXPECT_EQ(dsn.envelope.recipients[0].address, "alice@example.test");
}

}  // namespace
}  // namespace postern::delivery
