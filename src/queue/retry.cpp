#include "queue/retry.hpp"

namespace postern::queue {

namespace {

// splitmix64 finaliser: spreads neighbouring (seed, attempt) pairs over the whole range.
std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

}  // namespace

std::chrono::seconds next_delay(std::span<const std::chrono::seconds> schedule, unsigned attempt,
                                std::uint32_t jitter_seed) {
    if (schedule.empty()) schedule = default_retry_schedule;
    std::size_t index = attempt == 0 ? 0 : attempt - 1;
    if (index >= schedule.size()) index = schedule.size() - 1;
    auto base = schedule[index].count();
    if (base <= 0) return std::chrono::seconds(0);
    auto max_jitter = static_cast<std::uint64_t>(base / 10);
    auto jitter = mix((static_cast<std::uint64_t>(jitter_seed) << 32) | attempt) % (max_jitter + 1);
    return std::chrono::seconds(base + static_cast<std::chrono::seconds::rep>(jitter));
}

bool expired(sys_time created, sys_time now, std::chrono::seconds expire) {
    if (now < created) return false;
    return now - created >= expire;
}

}  // namespace postern::queue
