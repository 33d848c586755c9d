// daemon/metrics_endpoint.cpp: the Prometheus scrape endpoint (metrics_endpoint.hpp).
#include "daemon/metrics_endpoint.hpp"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace postern::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t header_limit = 8 * 1024;
constexpr auto request_time_limit = std::chrono::seconds(10);
constexpr int max_connections = 32;
constexpr int max_requests_per_connection = 100;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// "127.0.0.1:9025" or "[::1]:9025" (config/ has already validated it).
tcp::endpoint parse_listen(const std::string& listen) {
    std::string host, port;
    if (!listen.empty() && listen.front() == '[') {
        const auto close = listen.find(']');
        host = listen.substr(1, close - 1);
        port = listen.substr(close + 2);
    } else {
        const auto colon = listen.rfind(':');
        host = listen.substr(0, colon);
        port = listen.substr(colon + 1);
    }
    return {asio::ip::make_address(host), static_cast<unsigned short>(std::stoul(port))};
}

}  // namespace

struct metrics_endpoint::impl {
    asio::io_context io{1};
    tcp::acceptor acceptor{io};
    std::function<std::string()> exposition;
    std::thread thread;
    std::atomic<int> connections{0};
    bool started = false;

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
            if (!acceptor.is_open()) co_return;
            if (ec) continue;
            if (connections.load() >= max_connections) continue;   // closed as it goes out of scope
            ++connections;
            asio::co_spawn(io, serve(std::move(socket)), [this](std::exception_ptr) { --connections; });
        }
    }

    http::response<http::string_body> answer(const http::request<http::empty_body>& req) const {
        http::response<http::string_body> res;
        res.version(req.version());
        res.keep_alive(req.keep_alive());
        res.set(http::field::server, "postern");
        if (req.method() != http::verb::get) {
            res.result(http::status::method_not_allowed);
            res.set(http::field::allow, "GET");
            res.set(http::field::content_type, "text/plain; charset=utf-8");
            res.body() = "only GET is served here\n";
        } else if (req.target() != "/metrics") {
            res.result(http::status::not_found);
            res.set(http::field::content_type, "text/plain; charset=utf-8");
            res.body() = "metrics are at /metrics\n";
        } else {
            res.result(http::status::ok);
            res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
            res.body() = exposition();
        }
        if (req.method() == http::verb::head) res.body().clear();   // a HEAD answer has no body
        res.prepare_payload();
        return res;
    }

    asio::awaitable<void> serve(tcp::socket socket) {
        beast::tcp_stream stream(std::move(socket));
        beast::flat_buffer buffer;
        for (int n = 0; n < max_requests_per_connection; ++n) {
            // The header decides the answer; a scrape has no body, and the body of any
            // other request is not read: the connection closes after the answer instead.
            http::request_parser<http::empty_body> parser;
            parser.header_limit(header_limit);
            stream.expires_after(request_time_limit);
            auto [read_error, ignored] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
            (void)ignored;
            if (read_error) break;   // closed, timed out, oversized or not HTTP
            auto res = answer(parser.get());
            if (!parser.is_done()) res.keep_alive(false);   // a body follows that we will not read
            auto [write_error, written] = co_await http::async_write(stream, res, use_tuple);
            (void)written;
            if (write_error || !res.keep_alive()) break;
        }
        beast::error_code ec;
        stream.socket().shutdown(tcp::socket::shutdown_both, ec);
        co_return;
    }
};

metrics_endpoint::metrics_endpoint(const std::string& listen, std::function<std::string()> exposition)
    : impl_(std::make_unique<impl>()) {
    impl_->exposition = std::move(exposition);
    const auto endpoint = parse_listen(listen);
    boost::system::error_code ec;
    impl_->acceptor.open(endpoint.protocol(), ec);
    if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) impl_->acceptor.bind(endpoint, ec);
    if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::system_error(ec, "[metrics] listen " + listen);
}

metrics_endpoint::~metrics_endpoint() { stop(); }

void metrics_endpoint::start() {
    if (impl_->started) return;
    impl_->started = true;
    asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
    impl_->thread = std::thread([this] {
        try {
            impl_->io.run();
        } catch (const std::exception& e) {
            spdlog::error("metrics endpoint: {}", e.what());
        }
    });
}

void metrics_endpoint::stop() {
    if (impl_->thread.joinable()) {
        asio::post(impl_->io, [this] {
            boost::system::error_code ignored;
            impl_->acceptor.close(ignored);
            impl_->io.stop();
        });
        impl_->thread.join();
    } else {
        boost::system::error_code ignored;
        impl_->acceptor.close(ignored);
    }
}

tcp::endpoint metrics_endpoint::local_endpoint() const {
    boost::system::error_code ec;
    return impl_->acceptor.local_endpoint(ec);
}

}  // namespace postern::daemon
