// tls/stream.hpp: TLS over a connected TCP socket, for the coroutines of both sides.
//
// OpenSSL reads and writes the socket's descriptor itself (a socket BIO on the
// non-blocking descriptor). When it needs the peer, the coroutine waits on asio's reactor
// until the socket is readable or writable and calls OpenSSL again.
//
// Why not boost::asio::ssl::stream: it runs OpenSSL over an in-memory BIO pair, so every
// byte is copied from the socket's buffer into the pair, from the pair into OpenSSL's
// record buffer, and on the way out from OpenSSL into the pair and from the pair into the
// socket's buffer. Relaying a 100 KB message that was four copies of it that did nothing;
// with the descriptor BIO the only copies are the kernel's and OpenSSL's own.
//
// Same contract as asio's stream, as far as the sessions use it: at most one operation
// at a time; an operation is cancelled by the cancellation slot of the awaiting coroutine
// (the `||` of awaitable_operators) or by cancelling/closing the socket; a peer's
// close_notify reads as asio::error::eof, a TCP close without it as
// asio::ssl::error::stream_truncated; OpenSSL's errors come in asio's SSL category (the
// value is OpenSSL's packed error code).
#pragma once

#include <cstddef>
#include <tuple>

#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

namespace postern::tls {

class stream {
public:
    enum class role { client, server };
    using io_result = std::tuple<boost::system::error_code, std::size_t>;

    /// Takes ownership of `ssl`; the socket must outlive the stream. Makes the socket's
    /// descriptor non-blocking.
    stream(boost::asio::ip::tcp::socket& socket, SSL* ssl);
    ~stream();
    stream(const stream&) = delete;
    stream& operator=(const stream&) = delete;

    SSL* native_handle() const { return ssl_; }

    boost::asio::awaitable<std::tuple<boost::system::error_code>> handshake(role r);
    /// At least one octet of application data, or an error (never 0 octets and no error).
    boost::asio::awaitable<io_result> read_some(boost::asio::mutable_buffer into);

    /// Reading without holding a buffer while the peer is silent (an idle session owns no
    /// read buffer): wait_readable() returns once read_now() may make progress (OpenSSL
    /// holds bytes, or the socket is ready for what OpenSSL last wanted); read_now() never
    /// waits: octets, or asio::error::would_block (wait again), or an error.
    boost::asio::awaitable<boost::system::error_code> wait_readable();
    io_result read_now(boost::asio::mutable_buffer into);
    /// All of `from`, or an error.
    boost::asio::awaitable<io_result> write(boost::asio::const_buffer from);
    /// Sends close_notify and waits for the peer's (bounded only by the caller).
    boost::asio::awaitable<std::tuple<boost::system::error_code>> shutdown();

private:
    /// What to do after an OpenSSL call that returned `rc`: wait for the socket (and
    /// retry) or stop with an error.
    enum class next { retry_after_read, retry_after_write, fail };
    next classify(int rc, boost::system::error_code& ec) const;
    boost::asio::awaitable<boost::system::error_code> wait(next n);
    /// Calls `call(transferred)` (an OpenSSL operation returning 1 on success) until it
    /// succeeds or fails, waiting for the socket in between.
    template <typename Call>
    boost::asio::awaitable<io_result> until_done(Call call);

    boost::asio::ip::tcp::socket& socket_;
    SSL* ssl_;
    next read_wants_ = next::retry_after_read;    // what the last read_now() waited for
};

}  // namespace postern::tls
