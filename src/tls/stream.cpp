// tls/stream.cpp: OpenSSL on the socket's own descriptor, retried from asio's reactor.
#include "tls/stream.hpp"

#include <cerrno>
#include <csignal>
#include <mutex>
#include <utility>

#include <openssl/err.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace postern::tls {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE when the peer has
/// gone; that must be an EPIPE error of one connection, not the end of the process.
/// Postfix and nginx ignore SIGPIPE for the same reason. A handler someone installed on
/// purpose is left alone.
void ignore_sigpipe_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction current {};
        if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL)
            std::signal(SIGPIPE, SIG_IGN);
    });
}

}  // namespace

stream::stream(asio::ip::tcp::socket& socket, SSL* ssl) : socket_(socket), ssl_(ssl) {
    ignore_sigpipe_once();
    error_code ignored;
    socket_.native_non_blocking(true, ignored);
    SSL_set_fd(ssl_, socket_.native_handle());   // BIO_NOCLOSE: the socket stays ours
    // A retried SSL_write gets the same octets, but not necessarily at the same address.
    SSL_set_mode(ssl_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Read what the socket has rather than one record header and then one record body:
    // half the read(2) calls on a stream of full records.
    SSL_set_read_ahead(ssl_, 1);
}

stream::~stream() { SSL_free(ssl_); }

stream::next stream::classify(int rc, error_code& ec) const {
    const int saved_errno = errno;
    switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ: return next::retry_after_read;
    case SSL_ERROR_WANT_WRITE: return next::retry_after_write;
    case SSL_ERROR_ZERO_RETURN:
        ec = asio::error::eof;                         // the peer's close_notify
        break;
    case SSL_ERROR_SYSCALL:
        if (const unsigned long e = ERR_get_error(); e != 0) ec = error_code(static_cast<int>(e), asio::error::get_ssl_category());
        else if (saved_errno != 0) ec = error_code(saved_errno, boost::system::system_category());
        else ec = asio::ssl::error::stream_truncated;   // TCP closed, no close_notify
        break;
    default: {
        const unsigned long e = ERR_get_error();
        if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ec = asio::ssl::error::stream_truncated;
        else if (e != 0) ec = error_code(static_cast<int>(e), asio::error::get_ssl_category());
        else ec = asio::error::fault;
        break;
    }
    }
    ERR_clear_error();   // the rest of the queue explains the same failure; not for later callers
    return next::fail;
}

asio::awaitable<error_code> stream::wait(next n) {
    auto [ec] = co_await socket_.async_wait(n == next::retry_after_read ? asio::ip::tcp::socket::wait_read
                                                                        : asio::ip::tcp::socket::wait_write,
                                            use_tuple);
    co_return ec;
}

template <typename Call>
asio::awaitable<stream::io_result> stream::until_done(Call call) {
    for (;;) {
        ERR_clear_error();
        errno = 0;
        std::size_t n = 0;
        const int rc = call(n);
        if (rc == 1) co_return io_result{error_code(), n};
        error_code ec;
        const auto what = classify(rc, ec);
        if (what == next::fail) co_return io_result{ec, 0};
        if (auto waited = co_await wait(what)) co_return io_result{waited, 0};
    }
}

asio::awaitable<std::tuple<error_code>> stream::handshake(role r) {
    if (r == role::client) SSL_set_connect_state(ssl_);
    else SSL_set_accept_state(ssl_);
    auto [ec, ignored] = co_await until_done([this](std::size_t&) { return SSL_do_handshake(ssl_); });
    co_return ec;
}

asio::awaitable<stream::io_result> stream::read_some(asio::mutable_buffer into) {
    if (into.size() == 0) co_return io_result{};
    co_return co_await until_done([&](std::size_t& n) { return SSL_read_ex(ssl_, into.data(), into.size(), &n); });
}

asio::awaitable<error_code> stream::wait_readable() {
    if (SSL_has_pending(ssl_)) co_return error_code();
    co_return co_await wait(read_wants_);
}

stream::io_result stream::read_now(asio::mutable_buffer into) {
    ERR_clear_error();
    errno = 0;
    std::size_t n = 0;
    const int rc = SSL_read_ex(ssl_, into.data(), into.size(), &n);
    if (rc == 1) {
        read_wants_ = next::retry_after_read;
        return io_result{error_code(), n};
    }
    error_code ec;
    const auto what = classify(rc, ec);
    if (what == next::fail) return io_result{ec, 0};
    read_wants_ = what;
    return io_result{asio::error::would_block, 0};
}

asio::awaitable<stream::io_result> stream::write(asio::const_buffer from) {
    if (from.size() == 0) co_return io_result{};
    // Without SSL_MODE_ENABLE_PARTIAL_WRITE, success means every octet went out; after a
    // WANT_* the call is repeated with the same octets and OpenSSL resumes where it was.
    co_return co_await until_done([&](std::size_t& n) { return SSL_write_ex(ssl_, from.data(), from.size(), &n); });
}

asio::awaitable<std::tuple<error_code>> stream::shutdown() {
    bool sent = false;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        const int rc = SSL_shutdown(ssl_);
        if (rc == 1) co_return error_code();           // both close_notify alerts exchanged
        if (rc == 0) {
            // Ours is sent; the next call reads theirs, once the socket has something.
            if (std::exchange(sent, true))
                if (auto waited = co_await wait(next::retry_after_read)) co_return waited;
            continue;
        }
        error_code ec;
        const auto what = classify(rc, ec);
        if (what == next::fail) co_return ec;
        if (auto waited = co_await wait(what)) co_return waited;
    }
}

}  // namespace postern::tls
