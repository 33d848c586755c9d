// Secret masking for the server log and protocol log.
#include <gtest/gtest.h>

#include "log/app_log.hpp"

namespace postern::log {
namespace {

TEST(redact, auth_initial_response_is_masked) {
    EXPECT_EQ(redact_smtp_line("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), "AUTH PLAIN <secret>");
    EXPECT_EQ(redact_smtp_line("auth plain AGFsaWNlAHNlY3JldA=="), "auth plain <secret>");
    EXPECT_EQ(redact_smtp_line("AUTH LOGIN"), "AUTH LOGIN");
    EXPECT_EQ(redact_smtp_line("MAIL FROM:<a@example.test>"), "MAIL FROM:<a@example.test>");
    EXPECT_EQ(redact_smtp_line("AUTHORITY x"), "AUTHORITY x");
}

TEST(redact, challenge_responses_are_masked_until_the_final_reply) {
    auth_redactor r;
    EXPECT_EQ(r.client_line("EHLO client"), "EHLO client");
    r.server_line("250 AUTH PLAIN LOGIN");
    EXPECT_EQ(r.client_line("AUTH LOGIN"), "AUTH LOGIN");
    r.server_line("334 VXNlcm5hbWU6");
    EXPECT_EQ(r.client_line("YWxpY2U="), "<secret>");
    r.server_line("334 UGFzc3dvcmQ6");
    EXPECT_EQ(r.client_line("c2VjcmV0"), "<secret>");
    r.server_line("235 2.7.0 Authentication successful");
    EXPECT_EQ(r.client_line("MAIL FROM:<alice@example.test>"), "MAIL FROM:<alice@example.test>");
}

TEST(app_log, init_sets_the_default_logger) {
    init_app_log("debug");
    EXPECT_EQ(spdlog::default_logger()->name(), "postern");
    EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::debug);
    spdlog::drop("postern");
    init_app_log("nonsense");
    EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::info);
    spdlog::drop("postern");
}

}  // namespace
}  // namespace postern::log
