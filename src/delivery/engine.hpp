// delivery/engine.hpp: the send side: takes queued mail to its next hops.
//
// Standards: RFC 5321 (SMTP client; §4.5.3.2 timeouts, §4.5.4.1 retry strategy), RFC 3207
// (STARTTLS), RFC 3464 (DSN bounces and delay notices), RFC 6125 (certificate names).
// Contract: DESIGN.md §3 ([[send_connector]], [queue], [dns] mx_port, [debug]), §6 (the
// send protocol log, with one '*' TLS verdict line per attempt).
//
// How a main program uses it (src/daemon/ does this; delivery/ knows nothing of it):
//
//     auto cfg      = config::load_file(path).config.value();
//     auto store    = queue::open_rocksdb_store({cfg.server.data_dir / "queue", cfg.queue.min_free});
//     route::resolver resolver(cfg.dns);
//     log::protocol_log send_log({cfg.log.dir, log::log_kind::send, cfg.log.max_age, cfg.log.max_size});
//     auto client_tls = delivery::client_tls_material::load(cfg);   // key ring roots + identities
//
//     delivery::engine engine(cfg, *store, resolver, client_tls, send_log);
//     engine.start();             // own threads; scans the queue: mail left by a restart goes out
//     ...                         // the receive side, after each successful store commit:
//     engine.wake();              // any thread, cheap; new mail goes out at once
//     ...
//     engine.update_configuration(new_cfg);                          // reload: next attempts
//     engine.set_client_tls(delivery::client_tls_material::load(new_cfg));
//     ...
//     engine.stop(cfg.server.shutdown_timeout);   // blocks until every connection is closed
//
// Delivery is at-least-once: a recipient's state changes in the store only after the next
// hop answered, so a crash between the next hop's 250 and our update sends that recipient
// again after the restart, and nothing is ever lost. A message leaves the store only when
// every recipient is delivered or bounced.
//
// Threads: one io_context on `options.threads` threads; each connection is a coroutine on
// its own strand; the scheduler's state is guarded by one mutex and never held across I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/schema.hpp"
#include "delivery/client_tls.hpp"
#include "log/protocol_log.hpp"
#include "policy/downgrade_memory.hpp"
#include "policy/tlsrpt_ledger.hpp"
#include "queue/store.hpp"
#include "route/next_hop_source.hpp"
#include "route/resolver.hpp"

namespace postern::delivery {

/// RFC 5321 §4.5.3.2 timeouts; tests shorten them.
struct client_timeouts {
    std::chrono::seconds connect{30};
    std::chrono::seconds greeting{300};         // §4.5.3.2.1
    std::chrono::seconds command{300};          // EHLO, STARTTLS, MAIL (§4.5.3.2.2), RCPT (§4.5.3.2.3), RSET, QUIT
    std::chrono::seconds data_start{120};       // §4.5.3.2.4
    std::chrono::seconds data_block{180};       // §4.5.3.2.5
    std::chrono::seconds data_end{600};         // §4.5.3.2.6
    std::chrono::seconds tls_handshake{300};
};

struct engine_options {
    /// Connections are coroutines on their own strands. One thread: on the relay benchmark
    /// a second one cost more in hand-offs between threads than it gained (DESIGN §2: a
    /// small fixed number).
    unsigned threads = 1;
    client_timeouts timeouts;
    /// How often the engine looks for messages that came due (retries, delay notices):
    /// only those, from an index of due times kept in memory.
    std::chrono::seconds poll_interval{1};
    /// How often the whole queue is read anyway (besides at start and on wake()), so that
    /// nothing the index missed waits longer than this.
    std::chrono::seconds full_scan_interval{300};
    /// How long a host that failed TLS may be sent to in plaintext (opportunistic only).
    std::chrono::seconds plaintext_memory{std::chrono::hours(1)};
};

/// The DNS the engine asks (route::resolver's calls); tests give it a fake without libunbound.
using next_hop_source = route::next_hop_source;

struct engine_stats {
    std::uint64_t attempts = 0;                 // connections tried
    std::uint64_t delivered = 0;                // recipients
    std::uint64_t deferred = 0;                 // recipient attempts that will be retried
    std::uint64_t bounced = 0;                  // recipients bounced (DSN sent or not possible)
    std::uint64_t dsn_sent = 0;                 // DSN messages committed
    std::uint64_t active_connections = 0;
};

class engine {
public:
    /// `store`, `resolver` and `send_log` must outlive the engine. `client_tls` may be null
    /// (no key ring): then only trust_system_store connectors can verify certificates.
    engine(const config::configuration& cfg, queue::store& store, route::resolver& resolver,
           std::shared_ptr<const client_tls_material> client_tls, log::protocol_log& send_log,
           engine_options options = {});
    /// Same, with any source of next hops (tests).
    engine(const config::configuration& cfg, queue::store& store, next_hop_source& resolver,
           std::shared_ptr<const client_tls_material> client_tls, log::protocol_log& send_log,
           engine_options options = {});
    ~engine();                                  // stop(0) when still running
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    /// Starts the threads and the first scan of the queue.
    void start();
    /// Thread-safe, never blocks: read the whole queue now (e.g. after `queue retry`).
    void wake();
    /// Thread-safe, never blocks: message `id` was just committed; look at it now. Cheaper
    /// than wake(): only that message is read.
    void committed(const std::string& id);
    /// Same, with what was committed (queue::commit_result hands it back): nothing is
    /// read from the store to plan the message, and its first delivery attempt sends this
    /// body rather than reading it again.
    void committed(smtp::envelope env, std::string body);
    /// Thread-safe. No new transaction starts; transactions under way get `grace`, then
    /// their connections are cut (a recipient cut mid-DATA stays pending: at-least-once).
    /// Returns when every thread has ended.
    void stop(std::chrono::seconds grace);

    /// Thread-safe. Next attempts use the new send connectors, [queue] and [debug].
    void update_configuration(const config::configuration& cfg);
    /// Thread-safe. New connections use the new key material.
    void set_client_tls(std::shared_ptr<const client_tls_material> client_tls);

    engine_stats stats() const;

    /// The downgrade memory (DESIGN §3), for `postern policy`: thread-safe.
    policy::downgrade_memory& downgrades();
    /// The TLS-RPT counts of the open period (RFC 8460), for `postern tlsrpt`: thread-safe.
    policy::tlsrpt_ledger& tlsrpt();
    /// TLS client context for HTTPS to hosts a domain publishes (TLS-RPT report endpoints):
    /// the system store and the key ring's roots, no client certificate. Thread-safe;
    /// throws tls::tls_error when it cannot be made.
    std::shared_ptr<SSL_CTX> published_https_context();

    /// Thread-safe, cheap: octets of message bodies whose delivery is due and not yet
    /// started. Arrival outpacing delivery shows here first (flow control in net/).
    std::uint64_t waiting_bytes() const;

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace postern::delivery
