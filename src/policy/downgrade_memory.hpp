// policy/downgrade_memory.hpp: per recipient domain, the best authenticated TLS seen, so
// that a later delivery that would go lower is noticed (DESIGN §3 downgrade_protection).
//
// Only verdicts that authenticate the next hop through what the domain itself published
// count: DANE (dane-ee, dane-ta; rank 2) and an enforced MTA-STS policy (mta-sts; rank 1).
// An MX name from insecure DNS never counts (pkix from an administrator's tls_domain
// proves nothing about what the domain publishes). Each success renews the entry for
// `max_age` (as HSTS does); the table is bounded (the entries closest to expiry go
// first) and kept in a JSON file in data_dir (0600), rewritten whole when something
// changed that a restart should keep: a new or higher level, a renewal older than an
// hour, an event, a forget.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::policy {

using sys_time = std::chrono::system_clock::time_point;

struct downgrade_event {
    sys_time when{};
    std::string mx;
    std::string verdict;          // the lower verdict word offered
    std::string action;           // "deferred" (enforce) | "reported" (report)
};

struct downgrade_entry {
    std::string verdict;          // the best word seen: dane-ee, dane-ta, mta-sts
    std::string mx;               // the MX it was seen at
    sys_time first_seen{}, last_seen{};
    std::deque<downgrade_event> events;   // the most recent ones, newest last
    sys_time expires(std::chrono::seconds max_age) const { return last_seen + max_age; }
};

class downgrade_memory {
public:
    static constexpr std::size_t events_kept = 10;

    /// Reads `file` (missing: empty; damaged: empty, logged). An empty path keeps nothing
    /// on disk (tests).
    explicit downgrade_memory(std::filesystem::path file, std::chrono::seconds max_age = std::chrono::days(30),
                              std::size_t capacity = 100000);

    /// 2 for dane-ee / dane-ta, 1 for mta-sts, 0 for every other word.
    static int rank(std::string_view verdict);

    /// A delivery to `domain` at `mx` was authenticated with `verdict` (thread-safe).
    void seen(const std::string& domain, const std::string& verdict, const std::string& mx, sys_time now);
    /// The remembered entry when `verdict` would go below it, else nothing (thread-safe).
    std::optional<downgrade_entry> would_lower(const std::string& domain, std::string_view verdict, sys_time now) const;
    /// Keeps what enforcement held, or would have held (thread-safe).
    void note(const std::string& domain, downgrade_event event);

    std::optional<downgrade_entry> find(const std::string& domain, sys_time now) const;
    /// Removes `domain`; false when it was not remembered.
    bool forget(const std::string& domain);
    /// Every entry still in force, by domain.
    std::map<std::string, downgrade_entry> entries(sys_time now) const;
    std::chrono::seconds max_age() const { return max_age_; }

private:
    void save_locked() const;

    std::filesystem::path file_;
    std::chrono::seconds max_age_;
    std::size_t capacity_;
    mutable std::mutex mutex_;
    std::map<std::string, downgrade_entry> entries_;
};

}  // namespace postern::policy
