// Replies: wire format and the catalogue's consistency (RFC 3463 class = first digit).
#include <gtest/gtest.h>

#include "smtp/replies.hpp"

using namespace postern::smtp;

TEST(reply, single_line_with_enhanced_code) {
    EXPECT_EQ(replies::starttls_required().wire(), "530 5.7.0 Must issue a STARTTLS command first\r\n");
}

TEST(reply, multi_line_uses_dash_until_the_last_line) {
    reply r{250, {}, "mx.test\nPIPELINING\nSTARTTLS"};
    EXPECT_EQ(r.wire(), "250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
    EXPECT_EQ(r.lines().size(), 3u);
}

TEST(reply, greeting_has_no_enhanced_code) {
    EXPECT_EQ(replies::greeting("mx.test").wire(), "220 mx.test ESMTP Postern\r\n");
}

TEST(reply, design_contract_codes) {
    auto code = [](const reply& r) { return std::to_string(r.code) + " " + r.status.to_string(); };
    EXPECT_EQ(code(replies::starttls_required()), "530 5.7.0");
    EXPECT_EQ(code(replies::client_certificate_required()), "554 5.7.0");
    EXPECT_EQ(code(replies::relay_denied()), "550 5.7.1");
    EXPECT_EQ(code(replies::message_too_big()), "552 5.3.4");
    EXPECT_EQ(code(replies::too_many_recipients()), "452 4.5.3");
    EXPECT_EQ(code(replies::line_too_long()), "500 5.5.2");
    EXPECT_EQ(code(replies::nul_in_command()), "500 5.5.2");
    EXPECT_EQ(code(replies::bad_message_content()), "550 5.6.0");
    EXPECT_EQ(code(replies::too_many_hops()), "554 5.4.6");
    EXPECT_EQ(code(replies::too_many_connections("h")), "421 4.7.0");
    EXPECT_EQ(code(replies::timeout("h")), "421 4.4.2");
    EXPECT_EQ(code(replies::shutting_down("h")), "421 4.3.2");
    EXPECT_EQ(code(replies::queue_unavailable()), "452 4.3.1");
    EXPECT_EQ(code(replies::no_service("h")), "554 5.7.1");
    EXPECT_EQ(replies::starttls_required().text, "Must issue a STARTTLS command first");
    EXPECT_EQ(replies::client_certificate_required().text, "Client certificate required");
    EXPECT_EQ(replies::relay_denied().text, "Relay access denied");
}

TEST(reply, every_catalogue_entry_has_a_matching_class) {
    const reply all[] = {
        replies::greeting("h"), replies::no_service("h"), replies::too_many_connections("h"),
        replies::closing("h"), replies::timeout("h"), replies::shutting_down("h"),
        replies::too_many_errors("h"), replies::forbidden_command("h"), replies::helo_ok("h"),
        replies::ok(), replies::reset_ok(), replies::sender_ok(), replies::recipient_ok(),
        replies::start_data(), replies::queued("X"), replies::ready_to_start_tls(),
        replies::cannot_verify(), replies::help(), replies::line_too_long(), replies::nul_in_command(),
        replies::unknown_command(), replies::not_implemented(), replies::no_parameters_allowed(),
        replies::argument_required(), replies::helo_syntax(), replies::mail_syntax(), replies::rcpt_syntax(),
        replies::bad_sender_address(), replies::bad_recipient_address(), replies::bad_parameter(),
        replies::unsupported_parameter(), replies::utf8_needs_smtputf8(), replies::helo_first(),
        replies::nested_mail(), replies::mail_first(), replies::rcpt_first(), replies::no_valid_recipients(),
        replies::transaction_in_progress(), replies::no_service_only_quit(), replies::starttls_required(),
        replies::client_certificate_required(), replies::tls_already_active(), replies::tls_not_available(),
        replies::relay_denied(), replies::message_too_big(), replies::header_too_big(),
        replies::too_many_recipients(), replies::bad_message_content(), replies::too_many_hops(),
        replies::queue_unavailable(),
    };
    for (const auto& r : all) {
        SCOPED_TRACE(r.wire());
        EXPECT_GE(r.code, 200);
        EXPECT_LT(r.code, 600);
        if (!r.status.empty()) {
            EXPECT_EQ(r.status.klass, r.code / 100);
        }
        EXPECT_EQ(r.text.find('\r'), std::string::npos);
    }
}
