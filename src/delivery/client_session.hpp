// delivery/client_session.hpp: one SMTP client connection, the coroutine driver of client_fsm.
//
// Standards: RFC 5321 §4.5.3.2 (client timeouts: 5 min greeting/MAIL/RCPT, 2 min DATA,
// 3 min per data block, 10 min for the final dot), RFC 3207 (STARTTLS), RFC 8314 (implicit
// TLS for smart_host_tls = "implicit").
//
//     client_session s(executor, settings, sink);
//     auto report = co_await s.open(target);         // connect, greeting, EHLO, TLS, verdict
//     if (report.ready)
//         for (auto& tx : transactions) results = co_await s.send(tx);   // RSET between
//     co_await s.close();                            // QUIT
//
// Every attempt writes the send protocol log (DESIGN §6) through the sink: '+' connect,
// '>' and '<' for every command and reply (never the body), '*' for the TLS verdict and
// decisions, '-' disconnect.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "tls/stream.hpp"
#include "delivery/protocol_terms.hpp"
#include "delivery/engine.hpp"
#include "delivery/tls_policy.hpp"
#include "log/app_log.hpp"

namespace postern::delivery {

/// Where the protocol-log lines of one connection go (the engine writes them to the
/// send protocol_log; tests keep them).
class transcript_sink {
public:
    virtual ~transcript_sink() = default;
    virtual void connected(const std::string& local, const std::string& remote) = 0;
    virtual void line(transcript_line::kind what, std::string_view text) = 0;
    virtual void disconnected() = 0;
};

struct session_settings {
    std::string helo_name = "localhost";
    client_timeouts timeouts;
    bool io_trace = false;                   // [debug] smtp_io_trace: every byte to the server log
    bool trace_tls_handshake = false;        // [debug] trace_tls_handshake
    bool report_tls_handshake_errors = true; // [debug] report_tls_handshake_errors
    bool client_debug = false;               // [debug] smtp_client_debug
};

struct session_target {
    std::string host;                        // smart host or MX name, for logs
    boost::asio::ip::tcp::endpoint endpoint;
    attempt_plan plan;
    peer_expectation expectation;
    std::shared_ptr<SSL_CTX> tls;            // null: TLS cannot be offered (then only plaintext plans work)
};

/// How opening a connection went.
struct open_report {
    bool connected = false;                  // TCP connected
    bool ready = false;                      // greeting, EHLO and TLS done: transactions may start
    std::optional<session_failure> failure;  // why not ready
    tls_verdict verdict;                     // always set once connected
    std::string remote;                      // "IP:port"
};

class client_session {
public:
    client_session(boost::asio::any_io_executor executor, session_settings settings, transcript_sink& sink);
    ~client_session();
    client_session(const client_session&) = delete;
    client_session& operator=(const client_session&) = delete;

    boost::asio::awaitable<open_report> open(session_target target);
    /// One transaction; one result per recipient, in order. If the connection broke, the
    /// results say so (transient) and usable() turns false.
    boost::asio::awaitable<std::vector<recipient_result>> send(transaction tx);
    /// QUIT (bounded by the command timeout), then close. Safe to call more than once.
    boost::asio::awaitable<void> close();
    /// Cuts the connection at once (engine stop after its grace). Call on the executor.
    void abort();

    bool usable() const { return usable_; }
    const capabilities& offered() const { return fsm_->offered(); }
    const std::string& host() const { return target_.host; }

private:
    using io_result = std::tuple<boost::system::error_code, std::size_t>;
    struct handshake_outcome { bool ok = false; std::string reason; };

    boost::asio::awaitable<client_action> perform(client_action act);
    boost::asio::awaitable<bool> write_all(std::string_view out, std::chrono::seconds limit);
    boost::asio::awaitable<client_event> read_reply(wait_stage stage);
    boost::asio::awaitable<bool> stream_body_file(const std::string& path);
    boost::asio::awaitable<handshake_outcome> handshake();
    boost::asio::awaitable<io_result> write_some_raw(std::string_view out);
    boost::asio::awaitable<io_result> read_some_raw();
    std::chrono::seconds limit_for(wait_stage stage) const;
    void log(const std::vector<transcript_line>& lines);
    void finish_socket();
    void log_disconnect();
    std::string trace_label_;                // [debug] trace_tls_handshake: names this session's lines
    std::optional<log::io_tracer> io_trace_;   // [debug] smtp_io_trace, made at the first line
    log::io_tracer& io_tracer();
    /// The verdict line of this attempt (DESIGN §6), counted for the metrics too.
    void say_verdict(const tls_verdict& verdict);
    void count_verdict(const tls_verdict& verdict);

    boost::asio::any_io_executor executor_;
    session_settings settings_;
    transcript_sink& sink_;
    session_target target_;
    boost::asio::ip::tcp::socket socket_;
    std::optional<tls::stream> tls_;
    boost::asio::steady_timer deadline_;
    std::unique_ptr<client_fsm> fsm_;
    verify_record verify_;
    std::vector<char> buffer_;
    bool usable_ = false;
    bool closed_ = false;
    bool logged_connect_ = false;
    std::optional<tls_verdict> verdict_;
    std::optional<session_failure> failure_;
};

/// "IP:port" of an endpoint ("[v6]:port" for IPv6).
std::string endpoint_text(const boost::asio::ip::tcp::endpoint& e);

}  // namespace postern::delivery
