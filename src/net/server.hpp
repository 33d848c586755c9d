// net/server.hpp: the receive side on the network: listeners, sessions, graceful stop.
//
// Standards: RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS, port 465 style).
// Contract: DESIGN.md §3 ([[receive_connector]], [server] limits), §5 (421 replies), §6
// (protocol log).
//
// How a main program uses it (src/daemon/ does this; net/ knows nothing of it):
//
//     auto cfg   = config::load_file(path).config.value();
//     auto tls   = tls::server_context::build(cfg);                 // may be null: no TLS
//     auto store = queue::open_rocksdb_store({cfg.server.data_dir / "queue", cfg.queue.min_free});
//     log::protocol_log receive_log({cfg.log.dir, log::log_kind::receive, cfg.log.max_age, cfg.log.max_size});
//
//     net::server server(cfg, tls, *store, receive_log);              // threads: 2 by default
//     for (const auto& l : server.start())                           // binds every bind address;
//         ready_file.add(l.connector, l.endpoint);                   // port 0 -> the OS's port
//     // privileges may be dropped here: the sockets are bound
//     std::thread runner([&] { server.run(); });                     // returns when all sessions ended
//     ...
//     server.set_tls_context(tls::server_context::build(new_cfg));    // reload: new sessions only
//     server.update_configuration(new_cfg);                          // reload: connector settings
//     ...
//     server.stop(cfg.server.shutdown_timeout);                      // any thread, e.g. on SIGTERM
//     runner.join();
//
// stop(grace) closes the listeners at once; sessions in a transaction may finish it (the
// 250 is only sent once the store has made the message durable) for up to `grace`; then
// every session still open gets "421 4.3.2" and is closed. Nothing acknowledged is lost.
//
// Threads: one io_context run by `threads` threads; each connection runs on its own strand,
// so a session never needs a lock. The store's commit callback comes from a store thread
// and is posted back to the session's strand.
#pragma once

#include <chrono>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>

#include "config/schema.hpp"
#include "log/protocol_log.hpp"
#include "queue/store.hpp"
#include "tls/server_context.hpp"

namespace postern::net {

struct bound_listener {
    std::string connector;                        // the first connector using this bind
    std::vector<std::string> connectors;          // every connector sharing it
    std::string configured;                       // the bind as written: "127.0.0.1:0"
    boost::asio::ip::tcp::endpoint endpoint;      // as bound: the OS's port for port 0
};

struct server_options {
    unsigned threads = 2;                         // DESIGN §2: a small fixed number
    /// How long the last words (421, TLS close_notify) may take before the socket is cut.
    std::chrono::seconds farewell_timeout{10};
    /// Flow control (as Postfix's in_flow_delay): true while delivery is behind arrival.
    /// Then a session that has just had a message accepted waits, up to in_flow_delay,
    /// before it reads the client's next command. Empty: never.
    std::function<bool()> delivery_behind;
    std::chrono::milliseconds in_flow_delay{1000};
};

class server {
public:
    /// `tls` may be null: STARTTLS is then not offered and implicit-TLS connectors refuse
    /// connections (logged). `store` and `receive_log` must outlive the server.
    server(const config::configuration& cfg, std::shared_ptr<tls::server_context> tls, queue::store& store,
           log::protocol_log& receive_log, server_options options = {});
    /// For tests and tools that hold a bare SSL_CTX (shared ownership, may be null).
    server(const config::configuration& cfg, std::shared_ptr<SSL_CTX> tls, queue::store& store,
           log::protocol_log& receive_log, server_options options = {});
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// Binds and listens on every bind address of every [[receive_connector]] and starts
    /// accepting. Throws std::system_error naming the address when a bind fails.
    std::vector<bound_listener> start();

    /// Runs the io_context on options.threads threads (the caller's included) and returns
    /// once stop() was called and every session has ended.
    void run();

    /// Thread-safe. Closes the listeners; sessions finish their transaction for up to
    /// `grace`, then get 421 4.3.2. Calling it again with a shorter grace shortens it.
    void stop(std::chrono::seconds grace);

    /// Thread-safe. New connections use this TLS context; running sessions keep theirs.
    void set_tls_context(std::shared_ptr<tls::server_context> tls);
    void set_tls_context(std::shared_ptr<SSL_CTX> tls);

    /// Thread-safe. New connections use the new connector settings and [server] limits.
    /// Binds cannot change without a restart: returns the binds that were added or removed
    /// (and therefore not applied); empty when everything took effect.
    std::vector<std::string> update_configuration(const config::configuration& cfg);

    /// Sessions currently open (admitted or being refused).
    std::size_t active_sessions() const;
    /// Sessions currently open per receive connector, by name (connectors without one are absent).
    std::map<std::string, std::size_t> sessions_by_connector() const;
    /// True once stop() was called and every session has ended.
    bool stopped() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace postern::net
