// daemon/metrics_endpoint.hpp: `[metrics] listen`, the HTTP endpoint Prometheus scrapes.
//
// Boost.Beast over its own io_context and thread. GET /metrics answers 200 with the
// exposition (text format 0.0.4); GET of anything else 404; any other method 405 with
// "Allow: GET". Bounded: 8 KB of request header, no request body read (a request that
// has one is answered from its header, then the connection closes), 10 s per request, 32
// connections at once (more are closed at accept), 100 requests per connection.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>

namespace postern::daemon {

class metrics_endpoint {
public:
    /// Binds and listens on `listen` ("127.0.0.1:9025", "[::1]:9025"; port 0 = any free
    /// one) at once, so it can happen before privileges are dropped. `exposition` makes the
    /// body of each scrape (on the endpoint's thread). Throws std::system_error naming the
    /// address when the bind fails.
    metrics_endpoint(const std::string& listen, std::function<std::string()> exposition);
    ~metrics_endpoint();   // stop()
    metrics_endpoint(const metrics_endpoint&) = delete;
    metrics_endpoint& operator=(const metrics_endpoint&) = delete;

    /// Starts answering, on a thread of its own.
    void start();
    /// Closes the listener and every connection; joins the thread.
    void stop();

    boost::asio::ip::tcp::endpoint local_endpoint() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace postern::daemon
