// policy/https_fetch.cpp: see https_fetch.hpp.
#include "policy/https_fetch.hpp"

#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <fmt/format.h>

namespace postern::policy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

/// The verify error of a failed handshake, when the certificate was the reason.
std::string certificate_error(SSL* ssl) {
    const long v = SSL_get_verify_result(ssl);
    if (v == X509_V_OK) return {};
    return X509_verify_cert_error_string(v);
}

}  // namespace

namespace {

/// One HTTPS exchange: connect, handshake (the name checked), `request`, the response.
/// `result.ok` is left false; the callers judge the response.
struct exchange {
    https_result result;
    unsigned status = 0;
    std::string content_type;
};

asio::awaitable<exchange> https_exchange(asio::any_io_executor executor, asio::ip::tcp::endpoint endpoint,
                                         const std::string& host, http::request<http::string_body> request,
                                         std::shared_ptr<SSL_CTX> ctx, https_limits limits) {
    exchange out;
    auto& result = out.result;
    if (!ctx) {
        result.error = "no TLS client context";
        co_return out;
    }
    // asio's context takes ownership of the handle it is given: give it a reference of its own.
    SSL_CTX_up_ref(ctx.get());
    asio::ssl::context tls(ctx.get());
    asio::ssl::stream<beast::tcp_stream> stream(executor, tls);
    SSL* ssl = stream.native_handle();
    SSL_set_tlsext_host_name(ssl, host.c_str());
    // RFC 8461 §3.3 / RFC 6125: the host's own name, no partial wildcards.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
    SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);

    auto& tcp = beast::get_lowest_layer(stream);
    tcp.expires_after(limits.timeout);
    auto [connect_error] = co_await tcp.async_connect(endpoint, use_tuple);
    if (connect_error) {
        result.error = fmt::format("connect to {} failed: {}", endpoint.address().to_string(), connect_error.message());
        co_return out;
    }
    auto [handshake_error] = co_await stream.async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (handshake_error) {
        const auto why = certificate_error(ssl);
        result.certificate_problem = !why.empty();
        result.error = why.empty() ? "TLS handshake failed: " + handshake_error.message() : "certificate: " + why;
        co_return out;
    }
    request.set(http::field::host, host);
    request.set(http::field::user_agent, "Postern");
    request.set(http::field::connection, "close");
    request.prepare_payload();
    auto [write_error, written] = co_await http::async_write(stream, request, use_tuple);
    (void)written;
    if (write_error) {
        result.error = "sending the request failed: " + write_error.message();
        co_return out;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(limits.max_body);
    parser.header_limit(16 * 1024);
    auto [read_error, read] = co_await http::async_read(stream, buffer, parser, use_tuple);
    (void)read;
    if (read_error) {
        result.error = read_error == http::error::body_limit
                           ? fmt::format("the response is larger than {} octets", limits.max_body)
                           : "reading the response failed: " + read_error.message();
        co_return out;
    }
    const auto& response = parser.get();
    out.status = response.result_int();
    out.content_type = lower(std::string(response[http::field::content_type]));
    result.body = response.body();
    beast::error_code ignored;
    tcp.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    co_return out;
}

}  // namespace

asio::awaitable<https_result> https_get(asio::any_io_executor executor, asio::ip::tcp::endpoint endpoint,
                                        std::string host, std::string path, std::shared_ptr<SSL_CTX> ctx,
                                        https_limits limits) {
    http::request<http::string_body> request{http::verb::get, path, 11};
    auto got = co_await https_exchange(executor, endpoint, host, std::move(request), std::move(ctx), limits);
    auto& result = got.result;
    if (!result.error.empty()) co_return result;
    // §3.3: only a 200; a redirect is not followed.
    if (got.status != 200) {
        result.error = fmt::format("HTTP {} (only 200 counts; redirects are not followed)", got.status);
        co_return result;
    }
    if (!got.content_type.starts_with("text/plain")) {
        result.error = "media type \"" + got.content_type + "\" is not text/plain";
        co_return result;
    }
    result.ok = true;
    co_return result;
}

asio::awaitable<https_result> https_post(asio::any_io_executor executor, asio::ip::tcp::endpoint endpoint,
                                         std::string host, std::string path, std::string content_type,
                                         std::string body, std::shared_ptr<SSL_CTX> ctx, https_limits limits) {
    http::request<http::string_body> request{http::verb::post, path, 11};
    request.set(http::field::content_type, content_type);
    request.body() = std::move(body);
    auto got = co_await https_exchange(executor, endpoint, host, std::move(request), std::move(ctx), limits);
    auto& result = got.result;
    if (!result.error.empty()) co_return result;
    if (got.status < 200 || got.status > 299) {
        result.error = fmt::format("HTTP {} (a 2xx is success; redirects are not followed)", got.status);
        co_return result;
    }
    result.ok = true;
    co_return result;
}

}  // namespace postern::policy
