// daemon/mail_pipeline.hpp: the durable part of `postern serve`, assembled in one place:
// queue store, receive and send protocol logs, resolver and the delivery engine.
//
// The receive side commits through `receive_store()`, a thin wrapper that wakes the
// delivery engine after every successful commit, so new mail goes out at once instead of
// at the next poll; it hands the engine the committed envelope and body, which the store
// gives back, so a relayed message is not read back from the store to be sent. The engine itself commits DSNs to the plain store.
//
// The `postern queue` operations (daemon/queue_operations.hpp) run here too, for the control
// socket: they and the engine's recipient updates share one envelope lock, and an update
// from the engine never changes the `held` flag (only hold and release do), so a delivery
// result that lands just after a hold cannot undo it.
#pragma once

#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>

#include "daemon/queue_operations.hpp"
#include "config/schema.hpp"
#include "delivery/engine.hpp"
#include "log/protocol_log.hpp"
#include "queue/store.hpp"
#include "route/resolver.hpp"
#include "tlsrpt/sender.hpp"

namespace postern::daemon {

/// `postern serve` exits with this status (EX_TEMPFAIL) when the queue store failed and
/// could not be reopened (README: the supervisor restarts it).
inline constexpr int exit_store_unrecoverable = 75;

/// [debug] save_outbound_dir, made (mode 0700) when set; throws std::runtime_error when it cannot be.
void prepare_save_outbound_dir(const config::configuration& cfg);

class mail_pipeline {
public:
    /// Opens the store and the logs and loads the client TLS material. Throws
    /// std::runtime_error (or tls::tls_error) with one clear line.
    explicit mail_pipeline(const config::configuration& cfg);
    ~mail_pipeline();

    queue::store& receive_store() { return *waking_store_; }
    log::protocol_log& receive_log() { return *receive_log_; }

    void start_delivery();
    void stop_delivery(std::chrono::seconds grace);
    /// Reload: new send connectors, [queue], [debug] and key material for next attempts.
    void reload(const config::configuration& cfg);
    void flush_logs();
    /// Flow control for the receive side: more than in_flow_backlog octets of bodies are
    /// due for delivery and not yet on their way.
    bool delivery_behind() const;
    /// About eighty 100 KB bodies: with this little waiting, a relayed body is usually sent
    /// and deleted while still in the queue store's memtable, never written to a blob file
    /// (queue/rocksdb_store.cpp). Measured on the relay benchmark: 32 MB let the queue grow
    /// to 0.3 s of mail and cost 18% more CPU per message.
    static constexpr std::uint64_t in_flow_backlog = 8ull * 1024 * 1024;

    /// One queue-* request of the control socket; changes go to the server log, and
    /// retry and release wake the delivery engine.
    queue_result queue_request(const nlohmann::json& request);
    /// `postern policy` against the engine's downgrade memory.
    queue_result policy_request(const nlohmann::json& request);
    /// `postern tlsrpt show` against the engine's TLS-RPT counts; `postern tlsrpt send`
    /// closes the period and sends its reports.
    queue_result tlsrpt_request(const nlohmann::json& request, const std::string& organization);

private:
    std::unique_ptr<queue::store> store_;
    std::unique_ptr<queue_operations> queue_ops_;
    std::unique_ptr<queue::store> waking_store_;
    std::unique_ptr<log::protocol_log> receive_log_;
    std::unique_ptr<log::protocol_log> send_log_;
    std::unique_ptr<route::resolver> resolver_;
    std::unique_ptr<delivery::engine> engine_;
    std::unique_ptr<route::next_hop_source> report_dns_;
    std::unique_ptr<tlsrpt::sender> reports_;   // commits through waking_store_: stops first
};

}  // namespace postern::daemon
