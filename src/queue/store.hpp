// queue/store.hpp: the durable queue, behind a narrow interface (DESIGN.md §2).
//
// The one promise: when commit() reports success, envelope and body are on disk in one
// synced write, and survive a crash. Only then may a session answer 250.
// Concurrent commits share one sync (group commit), so the cost of an fsync is spread
// over every message that arrived while the previous one was running.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "queue/message.hpp"

namespace postern::queue {

struct commit_result {
    bool ok = false;
    std::string id;                      // queue id on success
    std::string reason;                  // on failure: exact cause, for the log only
                                         // ("rocksdb: IO error: No space left on device",
                                         //  "free space 12MB below min_free 1GB")
};

struct store_stats {
    std::uint64_t commits = 0;           // messages made durable
    std::uint64_t syncs = 0;             // synced writes issued (group commits)
    std::uint64_t failed_commits = 0;    // commits answered with ok = false
};

struct store_options {
    std::filesystem::path dir;           // <data_dir>/queue
    std::uint64_t min_free = 1024ull * 1024 * 1024;  // below this, commit fails without writing
};

class store {
public:
    virtual ~store() = default;

    /// Makes envelope + body durable in one synced write. Thread-safe; `done` is called
    /// exactly once, from a store thread, after the write returned (or failed). Keep it
    /// short (post to the session's executor): the next group's write waits for it.
    /// The store assigns envelope.id.
    virtual void commit(envelope env, std::string body, std::function<void(commit_result)> done) = 0;

    /// True when a commit would currently be refused for lack of space (MAIL gets 452 4.3.1).
    virtual bool low_on_space() const = 0;

    virtual std::optional<envelope> load_envelope(const std::string& id) const = 0;
    virtual std::optional<std::string> load_body(const std::string& id) const = 0;
    /// Every envelope still in the queue, in id order.
    virtual std::vector<envelope> list() const = 0;
    /// Replace the envelope (recipient states), synced. False on failure.
    virtual bool update(const envelope& env, std::string* reason = nullptr) = 0;
    /// Remove envelope and body, synced. False on failure.
    virtual bool remove(const std::string& id, std::string* reason = nullptr) = 0;

    virtual store_stats stats() const = 0;
};

/// Opens (creating if needed, mode 0700) the RocksDB store. Throws std::runtime_error
/// with a clear message when it cannot (locked by another process, damaged, permissions).
std::unique_ptr<store> open_rocksdb_store(const store_options& options);

}  // namespace postern::queue
