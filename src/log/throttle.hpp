// log/throttle.hpp: server-log lines that a peer can cause, rate-limited per kind.
//
// A flood (handshake failures, connections over a limit, accept errors) must not grow the
// server log without bound or push other lines out of retention (DESIGN.md §6). Each kind
// of line (its key) may be written `burst` times per `interval`; further lines of that
// kind are counted, and the count is written as one line when the kind next logs after
// the interval has passed. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace postern::log {

class throttle {
public:
    using clock_fn = std::function<std::chrono::steady_clock::time_point()>;

    explicit throttle(unsigned burst = 5, std::chrono::seconds interval = std::chrono::seconds(10),
                      clock_fn clock = {});

    /// Writes `text` at `level` unless `key` has used its burst in this interval. Returns
    /// whether it was written. When a new interval starts after lines were held back, one
    /// line says how many ("N more like this suppressed: KEY") before `text`.
    bool log(spdlog::level::level_enum level, std::string_view key, std::string_view text);
    bool warn(std::string_view key, std::string_view text) { return log(spdlog::level::warn, key, text); }

    /// Lines of `key` held back so far in the current interval.
    std::uint64_t suppressed(std::string_view key) const;

private:
    struct state {
        std::chrono::steady_clock::time_point window_start;
        unsigned written = 0;
        std::uint64_t held_back = 0;
    };
    unsigned burst_;
    std::chrono::seconds interval_;
    clock_fn clock_;
    mutable std::mutex mutex_;
    std::map<std::string, state, std::less<>> kinds_;
};

/// The server log's throttle for lines caused by peers.
throttle& peer_caused();

}  // namespace postern::log
