// policy/https_fetch.hpp: one HTTPS GET of an MTA-STS policy (RFC 8461 §3.3), or one
// POST of a TLS-RPT report (RFC 8460 §5.2), with Boost.Beast over Asio and OpenSSL.
//
// RFC 8461 §3.3: the certificate must be valid for the policy host (PKIX, name checked
// per RFC 6125); only a 200 counts; redirects are not followed; the media type is
// text/plain. Limits (the RFC suggests 64 KB and a minute): the caller's.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <openssl/ssl.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace postern::policy {

struct https_limits {
    std::size_t max_body = 64 * 1024;
    std::chrono::seconds timeout{30};       // the whole exchange: connect, handshake, request, response
};

struct https_result {
    bool ok = false;
    std::string body;                        // the response body (the policy text of a GET)
    std::string error;                       // why not: "certificate ...", "HTTP 404", "timed out", ...
    bool certificate_problem = false;        // the failure was the server's certificate (sts-webpki-invalid)
};

/// GET https://`host``path` from `endpoint` (the address the caller resolved for `host`).
/// `ctx` holds the trust (roots) and TLS settings; the name is checked here. Never throws.
boost::asio::awaitable<https_result> https_get(boost::asio::any_io_executor executor,
                                               boost::asio::ip::tcp::endpoint endpoint, std::string host,
                                               std::string path, std::shared_ptr<SSL_CTX> ctx, https_limits limits);

/// POST `body` to https://`host``path` (RFC 8460 §5.2): ok on a 2xx answer; redirects are
/// not followed. The certificate is checked as for https_get. Never throws.
boost::asio::awaitable<https_result> https_post(boost::asio::any_io_executor executor,
                                                boost::asio::ip::tcp::endpoint endpoint, std::string host,
                                                std::string path, std::string content_type, std::string body,
                                                std::shared_ptr<SSL_CTX> ctx, https_limits limits);

}  // namespace postern::policy
