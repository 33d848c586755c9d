// daemon/server_status.hpp: what a running server says about itself, for `postern status`
// (through the control socket) and the metrics endpoint.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/schema.hpp"
#include "log/metrics.hpp"
#include "net/server.hpp"
#include "queue/store.hpp"

namespace postern::daemon {

/// The version every command reports (`--version`, status).
std::string postern_version();

/// Every certificate of the key ring with its notAfter; empty when there is no key ring.
/// Throws when the key ring exists but cannot be opened.
std::vector<log::certificate_expiry> certificate_expiries(const config::configuration& cfg);

/// Counts the queue (one pass over the envelopes).
log::queue_gauges count_queue(const queue::store& store);

/// The queue counts for scrapes: counted again at most every `max_age`, so a frequent
/// scraper does not read a large queue over and over. Thread-safe.
class queue_counter {
public:
    queue_counter(const queue::store& store, std::chrono::seconds max_age) : store_(store), max_age_(max_age) {}
    log::queue_gauges get();

private:
    const queue::store& store_;
    const std::chrono::seconds max_age_;
    std::mutex mutex_;
    std::chrono::steady_clock::time_point counted_at_{};
    log::queue_gauges last_{};
    bool counted_ = false;
};

struct status_sources {
    const std::vector<net::bound_listener>& listeners;
    const net::server& server;
    const queue::store& store;
    std::chrono::steady_clock::time_point started;
};

/// {"version", "pid", "uptime_seconds", "connectors": [{"name", "addresses", "sessions"}],
///  "queue": {"messages", "deferred", "held"}, "certificates": [{"label", "not_after"}],
///  "counters": {"received", ...}} (DESIGN §4, `postern status`).
nlohmann::json status_json(const config::configuration& cfg, const status_sources& from);

/// The same, as the lines `postern status` prints.
std::string status_text(const nlohmann::json& status);

}  // namespace postern::daemon
