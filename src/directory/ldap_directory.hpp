// directory/ldap_directory.hpp: an [[ldap_source]] at run time: a cache of answers in
// front of a few connections, each on a thread of its own (DESIGN §3 [[ldap_source]]).
//
// An answer is kept positive_ttl (found) or negative_ttl (not found). A miss is queued
// for the connections; the same address asked twice at once is searched once. When the
// directory cannot answer (connect, TLS, bind or search fails, or the timeout passes) the
// source counts as down for a few seconds, so a flood of RCPTs does not each wait out a
// timeout: meanwhile a cached answer younger than max_stale is used, marked stale, and an
// address without one is unavailable (451 4.4.3 at RCPT, never 550, never accepted).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/schema.hpp"

namespace postern::directory {

class ldap_directory final : public config::address_lookup {
public:
    using clock = std::chrono::steady_clock;
    /// How long the source counts as down after a failure before it is tried again.
    static constexpr std::chrono::seconds retry_after{5};
    /// Misses waiting for a connection beyond this are answered "unavailable" at once.
    static constexpr std::size_t max_waiting = 10000;
    /// Answers kept; past it the oldest are forgotten.
    static constexpr std::size_t max_cached = 500000;

    explicit ldap_directory(config::ldap_source settings);
    ~ldap_directory() override;

    std::optional<config::lookup_answer> answer_at_hand(std::string_view address) override;
    void ask(std::string address, std::function<void(config::lookup_answer)> done) override;
    config::lookup_answer ask_and_wait(std::string_view address) override;

    const config::ldap_source& settings() const { return settings_; }

    /// Ends the connections. Whoever still waits for an answer is answered "unavailable"
    /// (a reload replaced this source), or, with `forget_waiting`, forgotten unanswered
    /// (the server stops: their sessions are gone, and so is where they would be told).
    void stop(bool forget_waiting);

    struct counters {
        std::uint64_t cached = 0, hits = 0, searches = 0, failures = 0, stale_answers = 0;
        bool down = false;
        std::string last_failure;
    };
    counters snapshot() const;

private:
    struct entry {
        bool found = false;
        clock::time_point fetched;
    };
    using callback = std::function<void(config::lookup_answer)>;

    std::optional<config::lookup_answer> at_hand_locked(const std::string& key, clock::time_point now);
    config::lookup_answer unavailable_locked(const std::string& key, clock::time_point now);
    void enqueue_locked(const std::string& key, callback done);
    void work();
    void remember_locked(const std::string& key, bool found, clock::time_point now);

    const config::ldap_source settings_;
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::unordered_map<std::string, entry> cache_;
    std::unordered_map<std::string, std::vector<callback>> waiting_;   // address -> who waits for it
    std::deque<std::string> queue_;                                     // addresses to search, in order
    clock::time_point down_until_{};
    bool stopping_ = false;
    counters counters_;
    std::vector<std::thread> workers_;
};

/// Gives every [[ldap_source]] of `config` its lookup, taking over the one of `previous`
/// (the configuration in force) when its settings did not change, so a reload keeps the
/// cache (and its stale answers during an outage).
void attach_directories(config::configuration& config, const config::configuration* previous = nullptr);

/// The server stops: every source of `config` ends its connections (stop(true)).
void stop_directories(const config::configuration& config);

/// Connect, TLS and bind to each source: one line per source that cannot be reached.
std::vector<std::pair<std::string, std::string>> unreachable_sources(const config::configuration& config);

}  // namespace postern::directory
