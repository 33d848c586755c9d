// policy/sts_store.hpp: the MTA-STS policies Postern has fetched, kept across restarts.
//
// RFC 8461 §5.1: a policy is used until its max_age ends, refreshed when the TXT id
// changes (and, here, once half its max_age has passed); a failed refresh keeps the
// cached policy until it expires. The file is JSON, rewritten whole (files::replace_file:
// a crash leaves the old content or the new), mode 0600, in data_dir. A damaged file is
// set aside as empty (logged), never a reason not to start: policies are fetched again.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "policy/mta_sts.hpp"

namespace postern::policy {

class sts_store {
public:
    /// Reads `file` (missing: empty). `capacity` bounds the table: past it, the policies
    /// closest to expiry go first.
    explicit sts_store(std::filesystem::path file, std::size_t capacity = 100000);

    /// Thread-safe. The cached policy of `domain`, expired or not.
    std::optional<sts_policy> find(const std::string& domain) const;
    /// Thread-safe. Stores and writes the file; a write failure is logged (the policy
    /// still counts in memory).
    void put(const std::string& domain, sts_policy policy);
    std::size_t size() const;

private:
    void save_locked() const;

    std::filesystem::path file_;
    std::size_t capacity_;
    mutable std::mutex mutex_;
    std::map<std::string, sts_policy> policies_;
};

}  // namespace postern::policy
