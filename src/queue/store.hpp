// queue/store.hpp: the durable queue, behind a narrow interface (DESIGN.md §2).
//
// The one promise: when commit() reports success, envelope and body are on disk in one
// synced write, and survive a crash. Only then may a session answer 250.
// Concurrent commits share one sync (group commit), so the cost of an fsync is spread
// over every message that arrived while the previous one was running.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/envelope.hpp"

namespace postern::queue {

using smtp::envelope;
using smtp::recipient;
using smtp::recipient_state;
using smtp::sys_time;

struct commit_result {
    bool ok = false;
    std::string id;                      // queue id on success
    std::string reason;                  // on failure: exact cause, for the log only
                                         // ("rocksdb: IO error: No space left on device",
                                         //  "free space 12MB below min_free 1GB")
    bool store_failed = false;           // on failure: the store is in its failed state (an
                                         // I/O error other than a full disk, corruption):
                                         // 451 4.3.0 rather than 452 4.3.1 (DESIGN §5)
    // On success, what was committed, handed back rather than copied: a caller that
    // delivers the message next need not read it from the store again.
    envelope committed;
    std::string body;
};

struct store_stats {
    std::uint64_t commits = 0;           // messages made durable
    std::uint64_t syncs = 0;             // synced writes issued (group commits)
    std::uint64_t failed_commits = 0;    // commits answered with ok = false
};

struct store_options {
    std::filesystem::path dir;           // <data_dir>/queue
    std::uint64_t min_free = 1024ull * 1024 * 1024;  // below this, commit fails without writing
    /// After a fatal write error, how often recovery is tried (Resume, then close and reopen).
    std::chrono::seconds recovery_interval{5};
    /// Called once, from the store's thread, when the store could not be reopened after a
    /// fatal error: it cannot work again in this process. `postern serve` exits with
    /// status 75 so that its supervisor restarts it (README). Empty: the store stays failed.
    std::function<void(const std::string& reason)> on_unrecoverable{};
};

/// Whether the store takes writes now (DESIGN §5): low on space -> MAIL gets 452 4.3.1;
/// failed (I/O error, corruption; recovery under way) -> 451 4.3.0, and delivery waits.
enum class store_condition { ok, low_on_space, failed };

/// What a change() does with the message after looking at its current envelope.
enum class change_action { keep, update, remove };

/// A message committed in the same write as a change (a DSN and the recipient states
/// that caused it: both durable, or neither). The store assigns envelope.id.
struct new_message {
    envelope env;
    std::string body;
};

struct change_result {
    bool ok = false;                     // the write (if any) is synced; false: nothing changed
    bool found = false;                  // the message was in the queue when `apply` would run
    change_action action = change_action::keep;
    std::vector<std::string> new_ids;    // ids of the messages committed with the change
    std::string reason;                  // on failure, for the log
};

/// A large body on its way in (DESIGN §7 "Bodies"): the receive side appends it as it
/// arrives, so a session holds at most a chunk of it in memory; commit_spooled() makes it
/// durable with its envelope. Destroyed without a commit, it leaves nothing behind.
/// Used by one session at a time.
class body_spool {
public:
    virtual ~body_spool() = default;
    /// False once any append failed (the commit will then be refused with the reason).
    virtual bool append(std::string_view bytes) = 0;
    virtual std::uint64_t size() const = 0;
};

/// Looks at the current envelope and decides; may append messages to commit with it.
using envelope_change = std::function<change_action(envelope& current, std::vector<new_message>& also_commit)>;

class store {
public:
    virtual ~store() = default;

    /// Makes envelope + body durable in one synced write. Thread-safe; `done` is called
    /// exactly once, from a store thread, after the write returned (or failed). Keep it
    /// short (post to the session's executor): the next group's write waits for it.
    /// The store assigns envelope.id.
    virtual void commit(envelope env, std::string body, std::function<void(commit_result)> done) = 0;

    /// A new spool for a body too large to hold in memory. The default keeps it in memory
    /// (stores without files of their own: tests, tools).
    virtual std::unique_ptr<body_spool> open_spool();
    /// As commit(), for a body that is the spool's bytes followed by `tail`. Thread-safe;
    /// `done` once, from a store thread. The default joins them and calls commit().
    virtual void commit_spooled(envelope env, std::unique_ptr<body_spool> spool, std::string tail,
                                std::function<void(commit_result)> done);

    /// True when a commit would currently be refused for lack of space (MAIL gets 452 4.3.1).
    virtual bool low_on_space() const = 0;
    /// Failed wins over low on space: a failed store refuses every write.
    virtual store_condition condition() const {
        return low_on_space() ? store_condition::low_on_space : store_condition::ok;
    }

    virtual std::optional<envelope> load_envelope(const std::string& id) const = 0;
    virtual std::optional<std::string> load_body(const std::string& id) const = 0;
    /// At most the first `max_octets` of the body (a DSN returns no more than
    /// bounce_size_limit): a body in a file is not read whole.
    virtual std::optional<std::string> load_body_prefix(const std::string& id, std::uint64_t max_octets) const {
        auto body = load_body(id);
        if (body && body->size() > max_octets) body->resize(max_octets);
        return body;
    }
    /// Where the body of a message with envelope.body_in_file is (delivery streams it from
    /// there); empty for stores that keep every body inside.
    virtual std::filesystem::path body_file(const std::string& id) const { return {}; }
    /// Every envelope still in the queue, in id order.
    virtual std::vector<envelope> list() const = 0;
    /// Replace the envelope (recipient states), synced. False on failure.
    virtual bool update(const envelope& env, std::string* reason = nullptr) = 0;
    /// Remove envelope and body, synced. False on failure.
    virtual bool remove(const std::string& id, std::string* reason = nullptr) = 0;

    /// Read-modify-write of one envelope without blocking the caller, serialised with
    /// every other write of the store: `apply` runs on the store's writer thread with the
    /// envelope as it stands after every write submitted before this one, so two changes
    /// of one message (two destinations finishing at once, a delivery result and a
    /// `queue hold`) never overwrite each other. Changes submitted together share one
    /// synced write (group commit). `apply` must be quick and must not call the store's
    /// write functions; it is not called when the message is gone (found = false).
    /// Messages appended to `also_commit` are refused, with the change, when the disk is
    /// low on space. `done` is called once, from a store thread, after the write.
    virtual void change(std::string id, envelope_change apply, std::function<void(change_result)> done) = 0;

    virtual store_stats stats() const = 0;
};

/// change() for callers that may block (the command line, the control socket). Never call
/// it from a store callback.
change_result change_and_wait(store& s, std::string id, envelope_change apply);

/// The spool used by the default open_spool(): the bytes in memory.
class memory_spool final : public body_spool {
public:
    bool append(std::string_view bytes) override {
        bytes_.append(bytes);
        return true;
    }
    std::uint64_t size() const override { return bytes_.size(); }
    std::string take() { return std::move(bytes_); }

private:
    std::string bytes_;
};

/// Opens (creating if needed, mode 0700) the RocksDB store. Throws std::runtime_error
/// with a clear message when it cannot (locked by another process, damaged, permissions).
std::unique_ptr<store> open_rocksdb_store(const store_options& options);

}  // namespace postern::queue
