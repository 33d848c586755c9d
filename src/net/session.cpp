// net/session.cpp: the coroutine driver of smtp::server_fsm over plain TCP or TLS.
#include "net/session.hpp"

#include <algorithm>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

#include <openssl/err.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "log/metrics.hpp"
#include "tls/handshake_trace.hpp"
#include "log/throttle.hpp"
#include "tls/server_context.hpp"

namespace postern::net {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;
using std::chrono::steady_clock;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 64 * 1024;

// The read buffer belongs to the thread, not to the session: a session reads without
// waiting, waits for the client without any buffer, and hands the bytes to its machine
// before it next suspends (next_action()). An idle session costs no 64 KB.
std::span<char> read_buffer_of_this_thread() {
    thread_local std::vector<char> buffer(read_chunk);
    return buffer;
}
std::string describe(const boost::system::error_code& ec) {
    std::string text = ec.message();
    // The category message of an SSL error is generic; the OpenSSL reason is the useful part.
    if (ec.category() == asio::error::get_ssl_category()) {
        char buf[256];
        ERR_error_string_n(static_cast<unsigned long>(ec.value()), buf, sizeof buf);
        text = buf;
    }
    return text;
}
}  // namespace

session::session(asio::ip::tcp::socket socket, session_setup setup, queue::store& store, log::session_logger logger)
    : socket_(std::move(socket)),
      setup_(std::move(setup)),
      store_(store),
      logger_(std::move(logger)),
      fsm_(setup_.params),
      deadline_(socket_.get_executor()),
      watchdog_(socket_.get_executor()) {
    if (setup_.server_debug || setup_.io_trace || setup_.trace_tls_handshake)
        trace_label_ = fmt::format("{} {}",
                                   setup_.params.policy.connector_name.empty() ? std::string("(no connector)")
                                                                               : setup_.params.policy.connector_name,
                                   logger_.remote());
    if (setup_.io_trace) io_trace_.emplace(trace_label_, /*we_are_server=*/true);
}

// How long the last words may take once the stop's grace is over: shutdown_timeout + this
// (plus the store's commit of a message already read) bounds the whole stop.
constexpr std::chrono::seconds last_words_after_grace{2};

void session::request_stop(bool now) {
    stop_level_ = std::max(stop_level_, now ? 2 : 1);
    boost::system::error_code ignored;
    if (now) last_words_deadline_ = std::min(last_words_deadline_, steady_clock::now() + last_words_after_grace);
    // A handshake holds no transaction: it ends at once, even on a polite stop. A read
    // ends so next_action() can report the stop; a blocked write only when the grace is over.
    if (handshaking_) deadline_.cancel();
    if (checking_timer_ && now) checking_timer_->cancel();   // a polite stop lets the directory answer
    if (reading_ || (now && writing_)) socket_.cancel(ignored);
}

void session::arm(steady_clock::time_point deadline) {
    io_deadline_ = deadline;
    io_pending_ = true;
    io_timed_out_ = false;
    // Usually the watchdog is already set to fire no later than this; only an earlier
    // deadline (the farewell's, a near connection_timeout) needs it re-armed.
    if (deadline < watchdog_.expiry()) watchdog_.expires_at(deadline);   // cancels its wait
}

bool session::disarm() {
    io_pending_ = false;
    return std::exchange(io_timed_out_, false);
}

asio::awaitable<void> session::watchdog(std::shared_ptr<session> self) {
    while (!finished_) {
        if (!io_pending_) watchdog_.expires_after(setup_.inactivity_timeout);
        else if (watchdog_.expiry() != io_deadline_) watchdog_.expires_at(io_deadline_);
        auto [ec] = co_await watchdog_.async_wait(use_tuple);
        if (finished_) break;
        if (ec) continue;                         // re-armed by arm(): look again
        if (io_pending_ && steady_clock::now() >= io_deadline_) {
            io_timed_out_ = true;
            io_pending_ = false;
            boost::system::error_code ignored;
            socket_.cancel(ignored);              // the read or write ends with operation_aborted
        }
    }
}

steady_clock::time_point session::read_deadline() const {
    return std::min(steady_clock::now() + setup_.inactivity_timeout, session_deadline_);
}

void session::write_log(const std::vector<smtp::log_entry>& entries) {
    if (entries.empty()) return;
    if (setup_.server_debug)
        for (const auto& e : entries)
            if (e.what == smtp::log_entry::kind::info)
                spdlog::info("smtp-server {}: {}", trace_label_, log::printable(e.text));
    // One lock of the shared log for the lines of one step, not one per line.
    log_lines_.clear();
    for (const auto& e : entries) {
        log::event ev = log::event::info;
        switch (e.what) {
        case smtp::log_entry::kind::received: ev = log::event::received; break;
        case smtp::log_entry::kind::sent: ev = log::event::sent; break;
        case smtp::log_entry::kind::info: ev = log::event::info; break;
        }
        log_lines_.push_back({ev, e.text, {}});
    }
    logger_.put_all(log_lines_);
}

asio::awaitable<void> session::run() {
    auto self = shared_from_this();            // the session lives as long as its coroutine
    {
        boost::system::error_code ignored;
        socket_.non_blocking(true, ignored);   // next_action() reads only what is there
    }
    logger_.connect();
    session_deadline_ = steady_clock::now() + setup_.connection_timeout;
    watchdog_.expires_after(setup_.inactivity_timeout);
    asio::co_spawn(socket_.get_executor(), watchdog(self), asio::detached);
    struct end_watchdog {                      // on every way out of run()
        session* s;
        ~end_watchdog() {
            s->finished_ = true;
            s->watchdog_.cancel();
            log::metrics::global().session(log::direction::inbound, s->tls_protocol_);
        }
    } ending{this};
    try {
        std::optional<smtp::tls_summary> implicit;
        if (setup_.implicit_tls && setup_.params.admitted == smtp::admission::normal) {
            if (!setup_.tls) {
                logger_.info("implicit TLS connector without a TLS context: closing");
                co_await farewell();
                logger_.disconnect();
                co_return;
            }
            auto hs = co_await handshake();
            if (!hs.ok) {
                logger_.info("TLS handshake failed: " + hs.reason);
                co_await farewell();
                logger_.disconnect();
                co_return;
            }
            implicit = std::move(hs.summary);
        }
        auto act = fsm_.resume(smtp::event::connected(std::move(implicit)));
        for (;;) {
            if (!act.body_chunk.empty()) spool(std::move(act.body_chunk));
            if (spool_ && act.what != smtp::action::kind::commit && !fsm_.in_data()) spool_.reset();   // rejected
            write_log(act.log);
            const bool closing = act.what == smtp::action::kind::close;
            if (!act.out.empty() && !co_await write_all(act.out, closing)) break;
            if (closing) break;
            switch (act.what) {
            case smtp::action::kind::read:
                act = co_await next_action();
                break;
            case smtp::action::kind::start_tls: {
                auto hs = co_await handshake();
                act = fsm_.resume(hs.ok ? smtp::event::tls_established(std::move(hs.summary))
                                        : smtp::event::tls_failure(std::move(hs.reason)));
                break;
            }
            case smtp::action::kind::commit: {
                auto r = co_await commit(std::move(act.envelope), std::move(act.body));
                message_just_accepted_ = r.ok;
                if (r.ok) {
                    logger_.message_accepted();
                    log::metrics::global().message_received();
                }
                act = fsm_.resume(smtp::event::commit_result(r.ok, std::move(r.id), std::move(r.reason), r.store_failed));
                break;
            }
            case smtp::action::kind::check_recipient:
                act = fsm_.resume(co_await check_recipient(act.recipient));
                break;
            case smtp::action::kind::close:
                break;
            }
        }
    } catch (const std::exception& e) {
        logger_.info(std::string("session error: ") + e.what());
    }
    co_await farewell();
    logger_.disconnect();
}

// Postfix's in_flow_delay: when messages arrive faster than they leave, each sender waits a
// little before its next message, up to in_flow_delay, so the queue does not grow without
// bound and bodies are delivered while still in memory. The 250 has already been sent.
asio::awaitable<void> session::pause_while_delivery_is_behind() {
    constexpr auto step = std::chrono::milliseconds(10);
    const auto until = steady_clock::now() + setup_.in_flow_delay;
    asio::steady_timer pause(socket_.get_executor());
    while (stop_level_ == 0 && setup_.delivery_behind() && steady_clock::now() < until) {
        pause.expires_after(step);
        co_await pause.async_wait(use_tuple);
    }
}

asio::awaitable<smtp::action> session::next_action() {
    if (std::exchange(message_just_accepted_, false) && setup_.delivery_behind) co_await pause_while_delivery_is_behind();
    if (stop_level_ > stop_seen_) {
        stop_seen_ = stop_level_;
        co_return fsm_.resume(smtp::event::stop(stop_seen_ == 2));
    }
    arm(read_deadline());
    reading_ = true;
    boost::system::error_code ec;
    for (;;) {
        // Read, into this thread's buffer, what is there; only when nothing is, wait with
        // no buffer. Reading first also means a wait always follows an EAGAIN, so the
        // reactor's edge-triggered readiness cannot be missed (bytes, or TLS records,
        // already in the socket when the last read returned).
        const auto buffer = read_buffer_of_this_thread();
        std::size_t n = 0;
        if (tls_) std::tie(ec, n) = tls_->read_now(asio::buffer(buffer.data(), buffer.size()));
        else n = socket_.read_some(asio::buffer(buffer.data(), buffer.size()), ec);
        if (!ec) {
            reading_ = false;
            disarm();
            // No suspension from the read to here: the machine copies what it keeps.
            if (io_trace_) io_trace_->received(std::string_view(buffer.data(), n));
            co_return fsm_.resume(smtp::event::bytes(std::string_view(buffer.data(), n)));
        }
        if (ec != asio::error::would_block && ec != asio::error::try_again) break;
        if (tls_) ec = co_await tls_->wait_readable();
        else std::tie(ec) = co_await socket_.async_wait(asio::ip::tcp::socket::wait_read, use_tuple);
        if (ec) break;
    }
    reading_ = false;
    const bool timed_out = disarm();
    if (ec == asio::error::operation_aborted) {
        if (timed_out) {
            if (steady_clock::now() >= session_deadline_) logger_.info("connection_timeout reached");
            else logger_.info("connection_inactivity_timeout reached");
            co_return fsm_.resume(smtp::event::timed_out());
        }
        if (stop_level_ > stop_seen_) {
            stop_seen_ = stop_level_;
            co_return fsm_.resume(smtp::event::stop(stop_seen_ == 2));
        }
    }
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) co_return fsm_.resume(smtp::event::closed());
    co_return fsm_.resume(smtp::event::closed(describe(ec)));
}

asio::awaitable<bool> session::write_all(const std::string& out, bool closing) {
    if (stop_level_ == 2 && !closing && steady_clock::now() >= last_words_deadline_) co_return false;
    auto limit = setup_.inactivity_timeout;
    if (closing) limit = std::min(limit, setup_.farewell_timeout);
    arm(std::min(steady_clock::now() + limit, last_words_deadline_));
    if (io_trace_) io_trace_->sent(out);
    writing_ = true;
    io_result r;
    if (tls_) r = co_await tls_->write(asio::buffer(out));
    else r = co_await asio::async_write(socket_, asio::buffer(out), use_tuple);
    writing_ = false;
    const bool timed_out = disarm();
    auto [ec, n] = r;
    if (ec && timed_out) {
        logger_.info("write timed out");
        co_return false;
    }
    if (ec) {
        logger_.info("write failed: " + describe(ec));
        co_return false;
    }
    co_return true;
}

asio::awaitable<session::handshake_result> session::handshake() {
    handshake_result result;
    SSL* ssl = SSL_new(setup_.tls.get());
    if (!ssl) {
        result.reason = "cannot create a TLS session";
        co_return result;
    }
    if (setup_.prepare_tls) setup_.prepare_tls(ssl);
    if (setup_.trace_tls_handshake) tls::enable_handshake_trace(ssl, &trace_label_);
    tls_.emplace(socket_, ssl);               // the stream owns ssl from here on
    if (stop_level_ > 0) {
        result.reason = "the server is stopping";
        tls_.reset();
        co_return result;
    }
    deadline_.expires_at(read_deadline());
    handshaking_ = true;
    auto r = co_await (tls_->handshake(tls::stream::role::server) ||
                       deadline_.async_wait(use_tuple));
    handshaking_ = false;
    if (r.index() == 1) {
        result.reason = stop_level_ > 0 ? "handshake cut short: the server is stopping" : "handshake timed out";
    } else if (auto [ec] = std::get<0>(r); ec) {
        result.reason = describe(ec);
    } else {
        const SSL* native = tls_->native_handle();
        const auto info = tls::inspect(native);
        auto& s = result.summary;
        s.protocol = info.protocol;
        s.cipher = info.cipher;
        s.cipher_bits = info.cipher_bits;
        s.certificate_presented = info.peer.presented;
        s.certificate_verified = info.peer.verified;
        s.verify_error = info.peer.verify_error;
        s.subject = info.peer.subject;
        s.issuer = info.peer.issuer;
        s.sha256 = info.peer.sha256;
        if (!setup_.partner_names.empty() || !setup_.partner_fingerprints.empty())
            s.partner = tls::is_partner(native, setup_.partner_names, setup_.partner_fingerprints, &s.partner_reason);
        else
            s.partner_reason = "the connector names no partner (partner_names, partner_fingerprints)";
        if (info.resumed) logger_.info("TLS session resumed");
        result.ok = true;
        tls_protocol_ = info.protocol;
        log::metrics::global().tls_verdict(log::direction::inbound, true);
        co_return result;
    }
    log::metrics::global().tls_verdict(log::direction::inbound, false);
    if (setup_.report_tls_handshake_errors && stop_level_ == 0) {
        // A peer can fail handshakes as fast as it can connect: rate-limited per connector.
        const auto kind = "receive connector " + setup_.params.policy.connector_name + ": TLS handshake failed";
        log::peer_caused().warn(kind, fmt::format("{}: {} ({})", kind, result.reason, logger_.remote()));
    }
    // The TLS layer is unusable; the farewell closes the TCP connection without close_notify.
    tls_.reset();
    co_return result;
}

asio::awaitable<smtp::event> session::check_recipient(const std::string& address) {
    using status = smtp::server_policy::recipient_status;
    if (!setup_.ask_directory) co_return smtp::event::recipient_result(status::unavailable, "no directory to ask");
    // The answer comes on the directory's thread; it is posted to this session's strand,
    // where it stops the wait. The state is shared: an answer after the session has given
    // up lands in it harmlessly.
    struct waiting {
        explicit waiting(const asio::any_io_executor& ex) : timer(ex) {}
        asio::steady_timer timer;
        std::optional<smtp::event> answer;
    };
    auto executor = co_await asio::this_coro::executor;
    auto state = std::make_shared<waiting>(executor);
    state->timer.expires_at(read_deadline());
    setup_.ask_directory(address, [state, executor](status s, std::string note) {
        asio::post(executor, [state, s, note = std::move(note)]() mutable {
            state->answer = smtp::event::recipient_result(s, std::move(note));
            state->timer.cancel();
        });
    });
    checking_timer_ = &state->timer;
    while (!state->answer) {
        auto [ec] = co_await state->timer.async_wait(use_tuple);
        if (!ec || stop_level_ == 2) break;    // the client's time is up, or the grace is over
    }
    checking_timer_ = nullptr;
    if (state->answer) co_return std::move(*state->answer);
    state->timer.cancel();
    co_return smtp::event::recipient_result(status::unavailable, "the directory did not answer in time");
}

void session::spool(std::string chunk) {
    // A write to the page cache, on this thread: a chunk at a time, bounded by
    // body_chunk_size. A failed write is remembered by the spool; the commit reports it.
    if (!spool_) spool_ = store_.open_spool();
    spool_->append(chunk);
}

asio::awaitable<queue::commit_result> session::commit(smtp::envelope env, std::string body) {
    auto executor = co_await asio::this_coro::executor;
    auto initiate = [this, executor](auto handler, smtp::envelope e, std::string b) {
        // The store calls back from its own thread: hand the result to this session's
        // strand, and keep the io_context running until then.
        using handler_type = decltype(handler);
        auto shared = std::make_shared<handler_type>(std::move(handler));
        auto work = std::make_shared<asio::executor_work_guard<asio::any_io_executor>>(executor);
        auto answer = [shared, work, executor](queue::commit_result result) {
            asio::post(executor, [shared, work, result = std::move(result)]() mutable {
                std::move(*shared)(std::move(result));
            });
        };
        if (spool_) store_.commit_spooled(std::move(e), std::move(spool_), std::move(b), std::move(answer));
        else store_.commit(std::move(e), std::move(b), std::move(answer));
    };
    co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(queue::commit_result)>(
        initiate, asio::use_awaitable, std::move(env), std::move(body));
}

asio::awaitable<void> session::farewell() {
    boost::system::error_code ignored;
    if (tls_) {
        // close_notify (RFC 8446 §6.1), bounded: a client that never answers does not hold us.
        deadline_.expires_at(std::min(steady_clock::now() + setup_.farewell_timeout, last_words_deadline_));
        co_await (tls_->shutdown() || deadline_.async_wait(use_tuple));
    }
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
}

}  // namespace postern::net
