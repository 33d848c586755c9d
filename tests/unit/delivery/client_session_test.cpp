// Unit tests for delivery/client_session: the real coroutine driver against a scripted
// SMTP server on a loopback port chosen by the OS.
#include "delivery/client_session.hpp"

#include <algorithm>
#include <thread>

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

namespace postern::delivery {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

struct recording_sink : transcript_sink {
    std::vector<std::string> lines;
    bool opened = false, closed = false;
    void connected(const std::string&, const std::string& remote) override { opened = true; lines.push_back("+ " + remote); }
    void line(transcript_line::kind what, std::string_view text) override {
        const char* tag = what == transcript_line::kind::sent ? "> " : what == transcript_line::kind::received ? "< " : "* ";
        lines.push_back(tag + std::string(text));
    }
    void disconnected() override { closed = true; lines.push_back("-"); }
    bool has(std::string_view needle) const {
        for (const auto& l : lines)
            if (l.find(needle) != std::string::npos) return true;
        return false;
    }
};

/// A scripted server: for each step, read one line (unless the step is a greeting) and
/// answer. A blocking thread keeps the script obvious.
struct scripted_server {
    asio::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)};
    std::thread thread;
    std::vector<std::string> received;
    std::string body;

    void run(std::vector<std::pair<std::string, std::string>> script) {
        thread = std::thread([this, script = std::move(script)] {
            tcp::socket s(io);
            acceptor.accept(s);
            asio::streambuf buf;
            boost::system::error_code ec;
            for (const auto& [expect, answer] : script) {
                if (!expect.empty()) {
                    const auto terminator = expect == "<body>" ? std::string("\r\n.\r\n") : std::string("\r\n");
                    const auto n = asio::read_until(s, buf, terminator, ec);
                    if (ec) return;
                    std::string got(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n);
                    buf.consume(n);
                    if (expect == "<body>") body = got;
                    else received.push_back(got.substr(0, got.size() - 2));
                }
                if (answer == "<close>") return;
                if (answer == "<silence>") {
                    char c;
                    s.read_some(asio::buffer(&c, 1), ec);   // until the client gives up
                    return;
                }
                asio::write(s, asio::buffer(answer), ec);
            }
        });
    }
    ~scripted_server() {
        if (thread.joinable()) thread.join();
    }
    tcp::endpoint endpoint() const { return acceptor.local_endpoint(); }
};

struct client_run {
    open_report report;
    std::vector<recipient_result> results;
};

client_run deliver(scripted_server& server, recording_sink& sink, transaction tx, session_settings settings = {}) {
    asio::io_context io;
    session_target target;
    target.host = "mx.partner.test";
    target.endpoint = server.endpoint();
    target.plan.starttls = client_settings::starttls_use::if_offered;
    target.expectation.required = auth_level::none;
    auto fut = asio::co_spawn(
        io,
        [&]() -> asio::awaitable<client_run> {
            client_session session(io.get_executor(), settings, sink);
            client_run run;
            run.report = co_await session.open(target);
            if (run.report.ready) run.results = co_await session.send(tx);
            co_await session.close();
            co_return run;
        },
        asio::use_future);
    io.run();
    return fut.get();
}

transaction tx_for(std::vector<std::string> rcpts) {
    transaction tx;
    tx.mail_from = "alice@example.test";
    tx.recipients = std::move(rcpts);
    tx.body = "Subject: t\r\n\r\n.leading dot\r\n";
    return tx;
}

TEST(client_session, delivers_over_plain_tcp_and_logs_the_dialogue) {
    scripted_server server;
    server.run({{"", "220 mx ESMTP\r\n"},
                {"EHLO", "250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n"},
                {"MAIL", ""},
                {"RCPT", ""},
                {"DATA", "250 ok\r\n250 ok\r\n354 go\r\n"},
                {"<body>", "250 2.0.0 queued\r\n"},
                {"QUIT", "221 bye\r\n"}});
    recording_sink sink;
    auto run = deliver(server, sink, tx_for({"bob@partner.test"}));
    ASSERT_TRUE(run.report.ready);
    ASSERT_EQ(run.results.size(), 1u);
    EXPECT_EQ(run.results[0].what, verdict::delivered);
    EXPECT_EQ(run.results[0].host, "mx.partner.test");
    EXPECT_EQ(server.body, "Subject: t\r\n\r\n..leading dot\r\n.\r\n");
    EXPECT_TRUE(sink.has("> MAIL FROM:<alice@example.test>"));
    EXPECT_TRUE(sink.has("< 250 2.0.0 queued"));
    EXPECT_TRUE(sink.has("* TLS not used"));
    EXPECT_FALSE(sink.has("leading dot"));          // bodies are never logged
    EXPECT_TRUE(sink.closed);
}

TEST(client_session, greeting_timeout_is_a_transient_session_failure) {
    scripted_server server;
    server.run({{"", "<silence>"}});
    recording_sink sink;
    session_settings settings;
    settings.timeouts.greeting = std::chrono::seconds(1);
    auto run = deliver(server, sink, tx_for({"bob@partner.test"}), settings);
    EXPECT_TRUE(run.report.connected);
    EXPECT_FALSE(run.report.ready);
    ASSERT_TRUE(run.report.failure);
    EXPECT_NE(run.report.failure->reason.find("timeout"), std::string::npos) << run.report.failure->reason;
}

TEST(client_session, refused_connection_is_reported) {
    asio::io_context io;
    tcp::endpoint closed_port;
    {
        tcp::acceptor a(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
        closed_port = a.local_endpoint();
    }   // closed again: connecting is refused
    recording_sink sink;
    session_target target;
    target.host = "nobody";
    target.endpoint = closed_port;
    auto fut = asio::co_spawn(
        io,
        [&]() -> asio::awaitable<open_report> {
            client_session s(io.get_executor(), {}, sink);
            co_return co_await s.open(target);
        },
        asio::use_future);
    io.run();
    auto report = fut.get();
    EXPECT_FALSE(report.connected);
    ASSERT_TRUE(report.failure);
    EXPECT_EQ(report.failure->stage, "connect");
    EXPECT_TRUE(sink.has("failed"));
}

TEST(client_session, required_starttls_missing_defers_without_sending_mail) {
    scripted_server server;
    server.run({{"", "220 mx ESMTP\r\n"}, {"EHLO", "250-mx\r\n250 8BITMIME\r\n"}, {"QUIT", "221 bye\r\n"}});
    recording_sink sink;
    asio::io_context io;
    session_target target;
    target.host = "mx.partner.test";
    target.endpoint = server.endpoint();
    target.plan.starttls = client_settings::starttls_use::required;
    target.expectation.required = auth_level::domain_validation;
    target.expectation.require_tls = true;
    auto fut = asio::co_spawn(
        io,
        [&]() -> asio::awaitable<open_report> {
            client_session s(io.get_executor(), {}, sink);
            co_return co_await s.open(target);
        },
        asio::use_future);
    io.run();
    auto report = fut.get();
    EXPECT_FALSE(report.ready);
    ASSERT_TRUE(report.failure);
    EXPECT_TRUE(report.failure->tls_setup);
    EXPECT_FALSE(report.verdict.ok());
    EXPECT_TRUE(sink.has("reason=STARTTLS not offered"));
    EXPECT_FALSE(sink.has("> MAIL"));
}

TEST(client_session, failed_handshake_logs_its_verdict_with_the_reason_before_the_end) {
    scripted_server server;
    // STARTTLS accepted, then the connection closes: the handshake fails.
    server.run({{"", "220 mx ESMTP\r\n"},
                {"EHLO", "250-mx\r\n250 STARTTLS\r\n"},
                {"STARTTLS", "220 go ahead\r\n"},
                {"", "<close>"}});
    recording_sink sink;
    asio::io_context io;
    session_target target;
    target.host = "mx.partner.test";
    target.endpoint = server.endpoint();
    target.plan.starttls = client_settings::starttls_use::required;
    target.expectation.required = auth_level::encryption_only;
    target.expectation.require_tls = true;
    target.tls.reset(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
    auto fut = asio::co_spawn(
        io,
        [&]() -> asio::awaitable<open_report> {
            client_session s(io.get_executor(), {}, sink);
            co_return co_await s.open(target);
        },
        asio::use_future);
    io.run();
    auto report = fut.get();
    EXPECT_FALSE(report.ready);
    ASSERT_TRUE(report.failure);
    EXPECT_TRUE(report.failure->tls_setup);
    // DESIGN §6: every session logs its TLS outcome, on failure with the exact reason.
    auto verdict = std::find_if(sink.lines.begin(), sink.lines.end(), [](const std::string& l) {
        return l.rfind("* TLS not used", 0) == 0 && l.find("verdict=fail; result=validation-failure; reason=TLS handshake failed") != std::string::npos;
    });
    ASSERT_NE(verdict, sink.lines.end()) << ::testing::PrintToString(sink.lines);
    auto end = std::find(sink.lines.begin(), sink.lines.end(), "-");
    EXPECT_LT(verdict, end);
    EXPECT_FALSE(sink.has("> MAIL"));
}

}  // namespace
}  // namespace postern::delivery
