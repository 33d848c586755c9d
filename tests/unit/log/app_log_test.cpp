// Secret masking for the server log and protocol log.
#include <gtest/gtest.h>

#include "log/app_log.hpp"
#include "log/throttle.hpp"

#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>

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

TEST(io_tracer, whole_lines_both_ways_with_secrets_masked_across_reads) {
    std::ostringstream out;
    auto previous = spdlog::default_logger();
    auto capture = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    capture->set_pattern("%v");
    spdlog::set_default_logger(capture);
    {
        io_tracer t("inbound 192.0.2.1:4000", /*we_are_server=*/true);
        t.received("EHLO client\r\nAUTH PLAIN AGFsa");    // the secret arrives in two reads
        t.received("WNlAHNlY3JldA==\r\n");
        t.sent("235 2.7.0 ok\r\n");
        t.received(std::string(5000, 'x'));                 // no line end: cut, not kept
        t.received("\x1b[2J\r\n");
    }
    spdlog::set_default_logger(previous);
    const auto text = out.str();
    EXPECT_NE(text.find("smtp-io inbound 192.0.2.1:4000 < EHLO client\n"), std::string::npos) << text;
    EXPECT_NE(text.find("smtp-io inbound 192.0.2.1:4000 < AUTH PLAIN <secret>\n"), std::string::npos) << text;
    EXPECT_EQ(text.find("AGFsa"), std::string::npos) << text;
    EXPECT_NE(text.find("smtp-io inbound 192.0.2.1:4000 > 235 2.7.0 ok\n"), std::string::npos) << text;
    EXPECT_NE(text.find("(line cut at 4096 octets)"), std::string::npos);
    EXPECT_NE(text.find("\\x1B[2J"), std::string::npos) << text;   // escaped, not sent to the terminal
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

namespace postern::log {

TEST(printable, peer_text_cannot_break_or_reorder_a_server_log_line) {
    EXPECT_EQ(printable("250 ok"), "250 ok");
    EXPECT_EQ(printable("a\r\nforged"), "a\\x0D\\x0Aforged");
    EXPECT_EQ(printable("x\xE2\x80\xAE" "y"), "x\\xE2\\x80\\xAEy");
    EXPECT_EQ(printable("caf\xC3\xA9"), "caf\xC3\xA9");
}

TEST(throttle, a_kind_logs_its_burst_per_interval_and_counts_the_rest) {
    // Another test drops the default logger; this one needs one (lines go nowhere).
    spdlog::set_default_logger(
        std::make_shared<spdlog::logger>("throttle-test", std::make_shared<spdlog::sinks::null_sink_mt>()));
    auto now = std::make_shared<std::chrono::steady_clock::time_point>();
    throttle t(3, std::chrono::seconds(10), [now] { return *now; });
    int written = 0;
    for (int i = 0; i < 100; ++i) written += t.warn("handshake", "failed") ? 1 : 0;
    EXPECT_EQ(written, 3);
    EXPECT_EQ(t.suppressed("handshake"), 97u);
    EXPECT_TRUE(t.warn("other kind", "independent"));
    *now += std::chrono::seconds(11);
    EXPECT_TRUE(t.warn("handshake", "failed again"));               // a new interval
    EXPECT_EQ(t.suppressed("handshake"), 0u);
}

}  // namespace postern::log
