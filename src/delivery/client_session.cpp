// delivery/client_session.cpp: the coroutine driver of client_fsm over plain TCP or TLS.
#include "delivery/client_session.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include <openssl/err.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "log/app_log.hpp"
#include "log/metrics.hpp"
#include "tls/handshake_trace.hpp"
#include "smtp/dot_writer.hpp"

namespace postern::delivery {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 16 * 1024;
/// RFC 5321 §4.5.3.2.5 speaks of "each block"; 64 KiB keeps the per-block timer meaningful
/// on slow links without a syscall per line.
constexpr std::size_t data_block = 64 * 1024;
constexpr std::chrono::seconds farewell_limit{10};

std::string describe(const boost::system::error_code& ec) {
    if (ec.category() == asio::error::get_ssl_category()) {
        char buf[256];
        ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
        return buf;
    }
    return ec.message();
}

}  // namespace

std::string endpoint_text(const asio::ip::tcp::endpoint& e) {
    if (e.address().is_v6()) return fmt::format("[{}]:{}", e.address().to_string(), e.port());
    return fmt::format("{}:{}", e.address().to_string(), e.port());
}

client_session::client_session(asio::any_io_executor executor, session_settings settings, transcript_sink& sink)
    : executor_(executor),
      settings_(std::move(settings)),
      sink_(sink),
      socket_(executor),
      deadline_(executor),
      buffer_(read_chunk) {}

client_session::~client_session() {
    finish_socket();
    log_disconnect();
}

std::chrono::seconds client_session::limit_for(wait_stage stage) const {
    const auto& t = settings_.timeouts;
    switch (stage) {
    case wait_stage::greeting: return t.greeting;
    case wait_stage::data_start: return t.data_start;
    case wait_stage::data_block: return t.data_block;
    case wait_stage::data_end: return t.data_end;
    case wait_stage::starttls:
    case wait_stage::helo:
    case wait_stage::mail:
    case wait_stage::rcpt:
    case wait_stage::rset:
    case wait_stage::quit: return t.command;
    }
    return t.command;
}

void client_session::log(const std::vector<transcript_line>& lines) {
    for (const auto& l : lines) {
        sink_.line(l.what, l.text);
        if (settings_.client_debug && l.what == transcript_line::kind::info)
            spdlog::info("smtp-client {}: {}", target_.host, log::printable(l.text));
    }
}

void client_session::finish_socket() {
    boost::system::error_code ignored;
    if (socket_.is_open()) {
        socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }
    usable_ = false;
}

log::io_tracer& client_session::io_tracer() {
    if (!io_trace_) io_trace_.emplace(target_.host, /*we_are_server=*/false);
    return *io_trace_;
}

void client_session::say_verdict(const tls_verdict& verdict) {
    sink_.line(transcript_line::kind::info, verdict.log_line());
    count_verdict(verdict);
}

void client_session::count_verdict(const tls_verdict& verdict) {
    log::metrics::global().tls_verdict(log::direction::outbound, verdict.ok());
    log::metrics::global().tls_result(verdict.result);
}

void client_session::log_disconnect() {
    // After the verdict line: the '-' line ends the session in the log (DESIGN §6).
    if (logged_connect_ && !closed_) {
        closed_ = true;
        sink_.disconnected();
        log::metrics::global().session(log::direction::outbound,
                                       verdict_ && verdict_->tls ? verdict_->protocol : std::string());
    }
}

void client_session::abort() {
    boost::system::error_code ignored;
    socket_.close(ignored);   // pending reads and writes end with operation_aborted
}

asio::awaitable<client_session::io_result> client_session::write_some_raw(std::string_view out) {
    if (tls_) co_return co_await tls_->write(asio::buffer(out.data(), out.size()));
    co_return co_await asio::async_write(socket_, asio::buffer(out.data(), out.size()), use_tuple);
}

asio::awaitable<client_session::io_result> client_session::read_some_raw() {
    if (tls_) co_return co_await tls_->read_some(asio::buffer(buffer_));
    co_return co_await socket_.async_read_some(asio::buffer(buffer_), use_tuple);
}

asio::awaitable<bool> client_session::write_all(std::string_view out, std::chrono::seconds limit) {
    if (settings_.io_trace) io_tracer().sent(out);
    deadline_.expires_after(limit);
    auto r = co_await (write_some_raw(out) || deadline_.async_wait(use_tuple));
    if (r.index() == 1) {
        sink_.line(transcript_line::kind::info, "write timed out");
        co_return false;
    }
    auto [ec, n] = std::get<0>(r);
    if (ec) {
        sink_.line(transcript_line::kind::info, "write failed: " + describe(ec));
        co_return false;
    }
    co_return true;
}

// A body in a file goes out a block at a time (DESIGN §7 "Bodies"): a connection holds
// one block and its stuffed copy, whatever the message's size.
asio::awaitable<bool> client_session::stream_body_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sink_.line(transcript_line::kind::info, fmt::format("cannot open the body file {}: {}", path, std::strerror(errno)));
        co_return false;
    }
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } close_at_end{fd};
    std::string block(data_block, '\0');
    std::string stuffed;
    bool at_line_start = true;
    char last = '\n';
    for (;;) {
        const auto n = ::read(fd, block.data(), block.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            sink_.line(transcript_line::kind::info, fmt::format("cannot read the body file {}: {}", path, std::strerror(errno)));
            co_return false;
        }
        if (n == 0) break;
        const std::string_view read_block(block.data(), static_cast<std::size_t>(n));
        stuffed.clear();
        smtp::append_dot_stuffed(stuffed, read_block, at_line_start);
        last = read_block.back();
        at_line_start = last == '\n';
        if (!co_await write_all(stuffed, settings_.timeouts.data_block)) co_return false;
    }
    co_return co_await write_all(last == '\n' ? ".\r\n" : "\r\n.\r\n", settings_.timeouts.data_block);
}

asio::awaitable<client_event> client_session::read_reply(wait_stage stage) {
    if (fsm_->input_pending()) co_return client_event::bytes({});
    deadline_.expires_after(limit_for(stage));
    auto r = co_await (read_some_raw() || deadline_.async_wait(use_tuple));
    if (r.index() == 1) co_return client_event::timed_out();
    auto [ec, n] = std::get<0>(r);
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) co_return client_event::closed();
    if (ec) co_return client_event::closed(describe(ec));
    if (settings_.io_trace) io_tracer().received(std::string_view(buffer_.data(), n));
    co_return client_event::bytes(std::string_view(buffer_.data(), n));
}

asio::awaitable<client_session::handshake_outcome> client_session::handshake() {
    handshake_outcome result;
    if (!target_.tls) {
        result.reason = "no TLS client context for this send connector";
        co_return result;
    }
    SSL* ssl = SSL_new(target_.tls.get());
    if (!ssl) {
        result.reason = "cannot create a TLS session: " + tls::openssl_errors();
        co_return result;
    }
    std::string error;
    verify_ = {};
    if (!prepare_connection(ssl, target_.expectation, &verify_, &error)) {
        SSL_free(ssl);
        result.reason = error;
        co_return result;
    }
    if (settings_.trace_tls_handshake) {
        trace_label_ = "to " + target_.host;
        tls::enable_handshake_trace(ssl, &trace_label_);
    }
    tls_.emplace(socket_, ssl);                // the stream owns ssl from here on
    deadline_.expires_after(settings_.timeouts.tls_handshake);
    auto r = co_await (tls_->handshake(tls::stream::role::client) ||
                       deadline_.async_wait(use_tuple));
    if (r.index() == 1) {
        result.reason = "TLS handshake timed out";
    } else if (auto [ec] = std::get<0>(r); ec) {
        result.reason = "TLS handshake failed: " + describe(ec);
    } else {
        result.ok = true;
    }
    if (!result.ok && settings_.report_tls_handshake_errors)
        spdlog::warn("TLS handshake with {} ({}) failed: {}", target_.host, endpoint_text(target_.endpoint),
                     result.reason);
    co_return result;
}

asio::awaitable<client_action> client_session::perform(client_action act) {
    for (;;) {
        log(act.log);
        act.log.clear();
        switch (act.what) {
        case client_action::kind::read:
            if (!act.out.empty() && !co_await write_all(act.out, limit_for(act.stage))) {
                act = fsm_->resume(client_event::closed("write failed"));
                break;
            }
            {
                auto ev = co_await read_reply(act.stage);
                act = fsm_->resume(ev);
            }
            break;
        case client_action::kind::write_data: {
            bool ok = true;
            if (!act.data_file.empty()) ok = co_await stream_body_file(act.data_file);
            else if (act.data.empty() && !act.out.empty()) act.data.push_back(act.out);
            for (auto piece : act.data) {
                // RFC 5321 §4.5.3.2.5: the timeout applies per block written.
                while (ok && !piece.empty()) {
                    const auto block = piece.substr(0, data_block);
                    ok = co_await write_all(block, settings_.timeouts.data_block);
                    piece.remove_prefix(block.size());
                }
            }
            if (!ok) {
                act = fsm_->resume(client_event::closed("write failed during DATA"));
                break;
            }
            {
                auto ev = co_await read_reply(wait_stage::data_end);
                act = fsm_->resume(ev);
            }
            break;
        }
        case client_action::kind::start_tls: {
            auto hs = co_await handshake();
            if (!hs.ok) {
                // DESIGN §6: a failed handshake is a TLS outcome too; its verdict line, with
                // the reason, goes to this session's log before the '-' line.
                verdict_ = no_tls_verdict(target_.expectation, hs.reason, "validation-failure");
                log({{transcript_line::kind::info, verdict_->log_line()}});
                count_verdict(*verdict_);
                act = fsm_->resume(client_event::tls_failed(hs.reason));
                break;
            }
            verdict_ = evaluate(tls_->native_handle(), target_.expectation, verify_);
            log({{transcript_line::kind::info, verdict_->log_line()}});
            count_verdict(*verdict_);
            if (!verdict_->ok()) {
                // DESIGN §3: a verdict below the required level means no mail on this
                // connection; the message stays queued with the reason.
                act = fsm_->resume(client_event::tls_failed("TLS verdict: " + verdict_->failure));
                break;
            }
            act = fsm_->resume(client_event::tls_established());
            break;
        }
        case client_action::kind::close:
            if (!act.out.empty()) co_await write_all(act.out, std::min(farewell_limit, settings_.timeouts.command));
            finish_socket();
            co_return act;
        case client_action::kind::idle:
        case client_action::kind::transaction_done:
            co_return act;
        }
    }
}

asio::awaitable<open_report> client_session::open(session_target target) {
    target_ = std::move(target);
    open_report report;
    report.remote = endpoint_text(target_.endpoint);
    client_settings fsm_settings;
    fsm_settings.helo_name = settings_.helo_name;
    fsm_settings.starttls = target_.plan.starttls;
    fsm_settings.implicit_tls = target_.plan.implicit_tls;
    fsm_ = std::make_unique<client_fsm>(fsm_settings);

    deadline_.expires_after(settings_.timeouts.connect);
    auto r = co_await (socket_.async_connect(target_.endpoint, use_tuple) || deadline_.async_wait(use_tuple));
    std::string connect_error;
    if (r.index() == 1) connect_error = "connect timed out";
    else if (auto [ec] = std::get<0>(r); ec) connect_error = describe(ec);
    boost::system::error_code ec;
    const auto local = socket_.local_endpoint(ec);
    sink_.connected(ec ? std::string() : endpoint_text(local), report.remote);
    logged_connect_ = true;
    if (!connect_error.empty()) {
        sink_.line(transcript_line::kind::info, "connect to " + target_.host + " failed: " + connect_error);
        report.failure = session_failure{"connect", std::nullopt, "connect to " + report.remote + " failed: " + connect_error};
        report.verdict = no_tls_verdict(target_.expectation, "not connected");
        finish_socket();
        log_disconnect();
        co_return report;
    }
    report.connected = true;
    // Every write is a whole command group or the whole body: Nagle's algorithm could
    // only hold the last piece back until the next hop's delayed ACK.
    socket_.set_option(asio::ip::tcp::no_delay(true), ec);
    if (settings_.client_debug)
        spdlog::info("smtp-client connected to {} ({}), TLS plan: {}", target_.host, report.remote,
                     target_.plan.implicit_tls ? "implicit"
                     : target_.plan.starttls == client_settings::starttls_use::required ? "STARTTLS required"
                     : target_.plan.starttls == client_settings::starttls_use::if_offered ? "STARTTLS if offered"
                                                                                          : "plaintext");

    if (target_.plan.implicit_tls) {
        auto hs = co_await handshake();
        if (!hs.ok) {
            report.verdict = no_tls_verdict(target_.expectation, hs.reason, "validation-failure");
            say_verdict(report.verdict);
            report.failure = session_failure{.stage = "TLS handshake",
                                             .remote = std::nullopt,
                                             .reason = hs.reason,
                                             .permanent = false,
                                             .tls_setup = true};
            finish_socket();
            log_disconnect();
            co_return report;
        }
        verdict_ = evaluate(tls_->native_handle(), target_.expectation, verify_);
        say_verdict(*verdict_);
        if (!verdict_->ok()) {
            report.verdict = *verdict_;
            report.failure = session_failure{.stage = "TLS verdict",
                                             .remote = std::nullopt,
                                             .reason = "TLS verdict: " + verdict_->failure,
                                             .permanent = false,
                                             .tls_setup = true};
            finish_socket();
            log_disconnect();
            co_return report;
        }
    }

    auto first = fsm_->resume(client_event::connected());
    auto act = co_await perform(std::move(first));
    if (act.what == client_action::kind::idle) {
        usable_ = true;
        report.ready = true;
        if (!verdict_) {
            std::string why = target_.plan.starttls == client_settings::starttls_use::never
                                  ? (target_.plan.plaintext_after_tls_failure ? "TLS failed earlier (" +
                                                                                    target_.plan.previous_tls_failure + ")"
                                                                              : "STARTTLS not used by configuration")
                                  : "STARTTLS not offered";
            verdict_ = no_tls_verdict(target_.expectation, why);
            say_verdict(*verdict_);
        }
        report.verdict = *verdict_;
        co_return report;
    }
    report.failure = act.failure ? act.failure : session_failure{"session", std::nullopt, "session ended"};
    if (!verdict_) {
        verdict_ = no_tls_verdict(target_.expectation, report.failure->tls_setup ? report.failure->reason : "");
        if (report.failure->remote) {
            auto lines = report.failure->remote->lines();
            verdict_->failure = report.failure->reason + ": " + (lines.empty() ? std::string() : lines.front());
        }
        say_verdict(*verdict_);
    }
    report.verdict = *verdict_;
    log_disconnect();
    co_return report;
}

asio::awaitable<std::vector<recipient_result>> client_session::send(transaction tx) {
    std::vector<recipient_result> results;
    if (!usable_) {
        for (const auto& rcpt : tx.recipients) {
            recipient_result rr;
            rr.recipient = rcpt;
            rr.what = verdict::transient;
            rr.reason = "connection not usable";
            results.push_back(std::move(rr));
        }
        co_return results;
    }
    auto ev = client_event::send(std::move(tx));
    auto step = fsm_->resume(std::move(ev));
    auto act = co_await perform(std::move(step));
    results = std::move(act.results);
    if (act.what == client_action::kind::close) {
        usable_ = false;
        for (auto& rr : results)
            if (rr.what == verdict::transient && rr.reason.empty() && act.failure) rr.reason = act.failure->reason;
    }
    for (auto& rr : results) {
        rr.host = target_.host;
        if (verdict_) rr.tls = verdict_->result;
    }
    if (target_.plan.plaintext_after_tls_failure &&
        std::any_of(results.begin(), results.end(), [](const auto& rr) { return rr.what == verdict::delivered; }))
        sink_.line(transcript_line::kind::info, "TLS failed (" + target_.plan.previous_tls_failure + "); sent in plaintext");
    if (!usable_) log_disconnect();
    co_return results;
}

asio::awaitable<void> client_session::close() {
    if (usable_) {
        usable_ = false;
        auto step = fsm_->resume(client_event::quit());
        co_await perform(std::move(step));
    }
    finish_socket();
    log_disconnect();
}

}  // namespace postern::delivery
