// TLS over the socket's own descriptor (tls/stream.hpp): a real loopback connection, a
// server and a client stream, the lab PKI.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "tls/stream.hpp"
#include "unit/tls/test_pki.hpp"

namespace postern::tls {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

struct tls_pair_fixture : ::testing::Test {
    test::lab_pki pki;
    ssl_ctx_ptr server_ctx{SSL_CTX_new(TLS_server_method()), &SSL_CTX_free};
    ssl_ctx_ptr client_ctx{SSL_CTX_new(TLS_client_method()), &SSL_CTX_free};
    asio::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    tcp::socket server_socket{io};
    tcp::socket client_socket{io};

    void SetUp() override {
        SSL_CTX_use_certificate(server_ctx.get(), pki.server.get());
        SSL_CTX_use_PrivateKey(server_ctx.get(), pki.server_key.get());
        SSL_CTX_set_min_proto_version(server_ctx.get(), TLS1_2_VERSION);
        X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx.get()), pki.ca.get());
        SSL_CTX_set_verify(client_ctx.get(), SSL_VERIFY_PEER, nullptr);
        client_socket.connect(acceptor.local_endpoint());
        server_socket = acceptor.accept();
    }

    SSL* client_ssl() {
        SSL* ssl = SSL_new(client_ctx.get());
        SSL_set_tlsext_host_name(ssl, "mx1.example.test");
        SSL_set1_host(ssl, "mx1.example.test");
        return ssl;
    }

    /// Runs both coroutines to the end (bounded, so a hang fails instead of blocking).
    template <typename A, typename B>
    void run(A server_side, B client_side) {
        asio::co_spawn(io, std::move(server_side), asio::detached);
        asio::co_spawn(io, std::move(client_side), asio::detached);
        io.run_for(std::chrono::seconds(20));
        ASSERT_TRUE(io.stopped()) << "the exchange did not finish";
    }
};

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 13) % 26);
    return s;
}

TEST_F(tls_pair_fixture, carries_a_megabyte_each_way_after_a_verified_handshake) {
    stream server(server_socket, SSL_new(server_ctx.get()));
    stream client(client_socket, client_ssl());
    const std::string sent_by_client = pattern(1 << 20);
    const std::string sent_by_server = pattern(1 << 20 | 12345);
    std::string got_by_server, got_by_client;
    error_code server_hs = asio::error::fault, client_hs = asio::error::fault;

    auto receive_all = [](stream& s, std::string& into, std::size_t want) -> asio::awaitable<void> {
        std::string buf(20000, '\0');
        while (into.size() < want) {
            auto [ec, n] = co_await s.read_some(asio::buffer(buf));
            if (ec) co_return;
            into.append(buf, 0, n);
        }
    };
    run(
        [&]() -> asio::awaitable<void> {
            std::tie(server_hs) = co_await server.handshake(stream::role::server);
            co_await receive_all(server, got_by_server, sent_by_client.size());
            co_await server.write(asio::buffer(sent_by_server));
        }(),
        [&]() -> asio::awaitable<void> {
            std::tie(client_hs) = co_await client.handshake(stream::role::client);
            co_await client.write(asio::buffer(sent_by_client));
            co_await receive_all(client, got_by_client, sent_by_server.size());
        }());
    EXPECT_FALSE(server_hs) << server_hs.message();
    EXPECT_FALSE(client_hs) << client_hs.message();
    EXPECT_EQ(SSL_get_verify_result(client.native_handle()), X509_V_OK);
    EXPECT_GE(SSL_version(client.native_handle()), TLS1_2_VERSION);
    EXPECT_TRUE(got_by_server == sent_by_client);
    EXPECT_TRUE(got_by_client == sent_by_server);
}

TEST_F(tls_pair_fixture, close_notify_reads_as_eof_and_shutdown_completes) {
    stream server(server_socket, SSL_new(server_ctx.get()));
    stream client(client_socket, client_ssl());
    error_code after_close_notify, shutdown_result = asio::error::fault;
    run(
        [&]() -> asio::awaitable<void> {
            co_await server.handshake(stream::role::server);
            std::string buf(100, '\0');
            auto [ec, n] = co_await server.read_some(asio::buffer(buf));   // the client's close_notify
            after_close_notify = ec;
            co_await server.shutdown();
        }(),
        [&]() -> asio::awaitable<void> {
            co_await client.handshake(stream::role::client);
            std::tie(shutdown_result) = co_await client.shutdown();       // waits for the server's answer
        }());
    EXPECT_EQ(after_close_notify, asio::error::eof);
    EXPECT_FALSE(shutdown_result) << shutdown_result.message();
}

TEST_F(tls_pair_fixture, a_tcp_close_without_close_notify_is_truncation) {
    stream server(server_socket, SSL_new(server_ctx.get()));
    std::optional<stream> client;
    client.emplace(client_socket, client_ssl());
    error_code seen;
    run(
        [&]() -> asio::awaitable<void> {
            co_await server.handshake(stream::role::server);
            std::string buf(100, '\0');
            std::tie(seen, std::ignore) = co_await server.read_some(asio::buffer(buf));
        }(),
        [&]() -> asio::awaitable<void> {
            co_await client->handshake(stream::role::client);
            client.reset();
            client_socket.close();
        }());
    EXPECT_EQ(seen, asio::ssl::error::stream_truncated) << seen.message();
}

TEST_F(tls_pair_fixture, an_unknown_issuer_fails_the_handshake_with_openssls_reason) {
    X509_STORE* empty = X509_STORE_new();
    SSL_CTX_set_cert_store(client_ctx.get(), empty);   // the lab root is no longer trusted
    stream server(server_socket, SSL_new(server_ctx.get()));
    stream client(client_socket, client_ssl());
    error_code client_hs;
    run(
        [&]() -> asio::awaitable<void> { co_await server.handshake(stream::role::server); }(),
        [&]() -> asio::awaitable<void> {
            std::tie(client_hs) = co_await client.handshake(stream::role::client);
            client_socket.close();
        }());
    ASSERT_TRUE(client_hs);
    EXPECT_EQ(client_hs.category(), asio::error::get_ssl_category());
    char text[256];
    ERR_error_string_n(static_cast<unsigned long>(client_hs.value()), text, sizeof text);
    EXPECT_NE(std::string(text).find("certificate verify failed"), std::string::npos) << text;
}

TEST_F(tls_pair_fixture, a_read_is_cancelled_by_the_timer_it_races) {
    stream server(server_socket, SSL_new(server_ctx.get()));
    stream client(client_socket, client_ssl());
    int winner = -1;
    run(
        [&]() -> asio::awaitable<void> {
            co_await server.handshake(stream::role::server);
            asio::steady_timer deadline(io, std::chrono::milliseconds(50));
            std::string buf(100, '\0');
            auto r = co_await (server.read_some(asio::buffer(buf)) || deadline.async_wait(use_tuple));
            winner = static_cast<int>(r.index());
            client_socket.close();
        }(),
        [&]() -> asio::awaitable<void> { co_await client.handshake(stream::role::client); }());
    EXPECT_EQ(winner, 1);   // nothing was sent: the timer ends the read
}

TEST_F(tls_pair_fixture, writing_to_a_peer_that_left_is_an_error_not_a_signal) {
    stream server(server_socket, SSL_new(server_ctx.get()));
    stream client(client_socket, client_ssl());
    error_code write_error;
    const std::string big = pattern(4 << 20);
    run(
        [&]() -> asio::awaitable<void> {
            co_await server.handshake(stream::role::server);
            server_socket.close();                  // gone, with unread data: the client gets RST
        }(),
        [&]() -> asio::awaitable<void> {
            co_await client.handshake(stream::role::client);
            for (int i = 0; i < 20 && !write_error; ++i)
                std::tie(write_error, std::ignore) = co_await client.write(asio::buffer(big));
        }());
    EXPECT_TRUE(write_error);   // EPIPE or ECONNRESET; the process is still here
}

}  // namespace
}  // namespace postern::tls
