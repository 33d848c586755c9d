// net/session.hpp: the coroutine driver of one SMTP server session (STYLE E4, E5).
//
// Standards: RFC 5321 §4.5.3.2 (timeouts), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS).
// The driver does I/O only; every protocol decision is smtp::server_fsm's. It owns the
// socket, the TLS stream once there is one, and the deadlines. Reads and writes do not
// each race a timer (a timer armed and cancelled per operation costs a timerfd_settime
// and a parallel group every time): they set io_deadline_, and one watchdog timer per
// session, re-armed only when it fires or when a deadline moves earlier, cancels the
// socket's operations once the deadline has passed. The rare TLS handshake and the
// farewell race deadline_ (Asio 1.81 has no cancel_after). The message is handed
// to queue::store::commit() and the 250 is written only after the store reported success.
// Security: the read buffer is handed to the machine in full; after STARTTLS the machine
// drops whatever was pipelined, and the driver keeps no bytes of its own across the switch.
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "tls/stream.hpp"
#include "log/app_log.hpp"
#include "log/protocol_log.hpp"
#include "queue/store.hpp"
#include "smtp/server_fsm.hpp"

namespace postern::net {

struct session_setup {
    smtp::session_params params;
    std::shared_ptr<SSL_CTX> tls;                 // null: no TLS
    std::function<void(SSL*)> prepare_tls;        // the connector's own trust (may be empty)
    bool implicit_tls = false;
    std::vector<std::string> partner_names;
    std::vector<std::string> partner_fingerprints;
    std::chrono::seconds connection_timeout{600};
    std::chrono::seconds inactivity_timeout{300};
    std::chrono::seconds farewell_timeout{10};
    bool report_tls_handshake_errors = true;
    bool server_debug = false;                    // [debug] smtp_server_debug: decisions to the server log
    bool io_trace = false;                        // [debug] smtp_io_trace: every line in and out
    bool trace_tls_handshake = false;             // [debug] trace_tls_handshake
    std::function<bool()> delivery_behind;        // server_options: flow control
    /// Asks the directory about a recipient the machine could not settle (its policy's
    /// check_recipient said `ask`); the answer may come on any thread.
    using recipient_answer = std::function<void(smtp::server_policy::recipient_status, std::string note)>;
    std::function<void(const std::string& address, recipient_answer)> ask_directory;
    std::chrono::milliseconds in_flow_delay{1000};
};

class session : public std::enable_shared_from_this<session> {
public:
    session(boost::asio::ip::tcp::socket socket, session_setup setup, queue::store& store,
            log::session_logger logger);

    /// Runs the whole session; never throws (errors end the session and are logged).
    boost::asio::awaitable<void> run();

    /// Must run on the session's executor. `now` = grace over.
    /// (Flow control: see pause_while_delivery_is_behind in session.cpp.)
    void request_stop(bool now);

    boost::asio::any_io_executor get_executor() { return socket_.get_executor(); }

private:
    struct handshake_result {
        bool ok = false;
        smtp::tls_summary summary;
        std::string reason;
    };

    using io_result = std::tuple<boost::system::error_code, std::size_t>;

    /// Reads what the client sends next (or notices a stop, a timeout, a close) and hands
    /// it to the machine; returns the machine's next action.
    boost::asio::awaitable<smtp::action> next_action();

    boost::asio::awaitable<void> pause_while_delivery_is_behind();
    boost::asio::awaitable<void> watchdog(std::shared_ptr<session> self);
    void arm(std::chrono::steady_clock::time_point deadline);   // the coming read/write ends by then
    bool disarm();                                              // true: it was cancelled for its deadline
    boost::asio::awaitable<bool> write_all(const std::string& out, bool closing);
    boost::asio::awaitable<handshake_result> handshake();
    /// action::check_recipient: the directory's answer, or `unavailable` when it takes
    /// longer than the client may wait or the server stops meanwhile.
    boost::asio::awaitable<smtp::event> check_recipient(const std::string& address);
    boost::asio::awaitable<queue::commit_result> commit(smtp::envelope env, std::string body);
    void spool(std::string chunk);                // appends a body chunk to the transaction's spool
    boost::asio::awaitable<void> farewell();
    void write_log(const std::vector<smtp::log_entry>& entries);
    std::chrono::steady_clock::time_point read_deadline() const;

    boost::asio::ip::tcp::socket socket_;
    std::optional<tls::stream> tls_;
    session_setup setup_;
    queue::store& store_;
    log::session_logger logger_;
    std::vector<log::session_logger::line> log_lines_;   // write_log's, reused
    smtp::server_fsm fsm_;
    boost::asio::steady_timer deadline_;          // handshake, farewell
    boost::asio::steady_timer watchdog_;          // reads and writes (see the top of this file)
    std::chrono::steady_clock::time_point io_deadline_ = std::chrono::steady_clock::time_point::max();
    bool io_pending_ = false;
    bool io_timed_out_ = false;
    bool reading_ = false;                        // request_stop cancels a pending read
    bool writing_ = false;                        // ... a blocked write, once the grace is over
    boost::asio::steady_timer* checking_timer_ = nullptr;   // while check_recipient() waits
    bool handshaking_ = false;                    // ... and a TLS handshake, at once
    /// Once the grace is over, the last words (421, close_notify) share this deadline, so a
    /// client that does not read cannot hold the stop (DESIGN §3 shutdown_timeout).
    std::chrono::steady_clock::time_point last_words_deadline_ = std::chrono::steady_clock::time_point::max();
    bool message_just_accepted_ = false;          // flow control applies before the next read
    bool finished_ = false;
    std::string tls_protocol_;                     // of the completed handshake, for the metrics
    // [debug] traces: "receive connector NAME CLIENT" names every line of this session.
    std::string trace_label_;
    std::optional<log::io_tracer> io_trace_;       // [debug] smtp_io_trace
    std::chrono::steady_clock::time_point session_deadline_;
    std::unique_ptr<queue::body_spool> spool_;    // a large body on its way in
    int stop_level_ = 0;                          // 0 running, 1 polite, 2 now
    int stop_seen_ = 0;
};

}  // namespace postern::net
