// log/throttle.cpp: see throttle.hpp.
#include "log/throttle.hpp"

#include <fmt/format.h>

namespace postern::log {

throttle::throttle(unsigned burst, std::chrono::seconds interval, clock_fn clock)
    : burst_(burst), interval_(interval), clock_(std::move(clock)) {
    if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
}

bool throttle::log(spdlog::level::level_enum level, std::string_view key, std::string_view text) {
    std::uint64_t report_held = 0;
    {
        std::lock_guard lock(mutex_);
        const auto now = clock_();
        auto it = kinds_.find(key);
        if (it == kinds_.end()) it = kinds_.emplace(std::string(key), state{now, 0, 0}).first;
        auto& s = it->second;
        if (now - s.window_start >= interval_) {
            report_held = s.held_back;
            s = state{now, 0, 0};
        }
        if (s.written >= burst_) {
            ++s.held_back;
            return false;
        }
        ++s.written;
        // Bounded: the kinds are a fixed set of keys chosen by the code, not by peers.
    }
    if (report_held > 0)
        spdlog::log(level, "{} more like this suppressed in the last interval: {}", report_held, key);
    spdlog::log(level, "{}", text);
    return true;
}

std::uint64_t throttle::suppressed(std::string_view key) const {
    std::lock_guard lock(mutex_);
    auto it = kinds_.find(key);
    return it == kinds_.end() ? 0 : it->second.held_back;
}

throttle& peer_caused() {
    static throttle t;
    return t;
}

}  // namespace postern::log
