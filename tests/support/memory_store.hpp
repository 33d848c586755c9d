// tests/support/memory_store.hpp: the one in-memory queue::store of the unit tests.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "queue/store.hpp"

namespace postern::test_support {

/// The queue in memory, for the tests of the rooms that use a store (net, delivery): every
/// change wakes waiters. With completion::worker_thread a commit reports on a thread of its
/// own, as the real store's group writer does, so a caller cannot rely on it running inline.
class memory_store final : public queue::store {
public:
    enum class completion { inline_call, worker_thread };

    explicit memory_store(completion c = completion::inline_call) : completion_(c) {}
    ~memory_store() override {
        std::lock_guard lock(workers_mutex_);
        for (auto& t : workers_) t.join();
    }

    /// Commits fail as on a full disk (the receive side answers 452).
    std::atomic<bool> fail_commits{false};

    void commit(smtp::envelope env, std::string body, std::function<void(queue::commit_result)> done) override {
        if (completion_ == completion::worker_thread) {
            std::lock_guard lock(workers_mutex_);
            workers_.emplace_back([this, env = std::move(env), body = std::move(body), done = std::move(done)]() mutable {
                commit_now(std::move(env), std::move(body), std::move(done));
            });
            return;
        }
        commit_now(std::move(env), std::move(body), std::move(done));
    }
    void commit_now(smtp::envelope env, std::string body, const std::function<void(queue::commit_result)>& done) {
        queue::commit_result r;
        if (fail_commits) {
            r.reason = "rocksdb: IO error: No space left on device";
            done(std::move(r));
            return;
        }
        {
            std::lock_guard lock(mutex_);
            env.id = "Q" + std::to_string(++next_id_);
            r.ok = true;
            r.id = env.id;
            committed_.push_back(env);
            committed_bodies_.push_back(body);
            bodies_[env.id] = std::move(body);
            envelopes_[env.id] = std::move(env);
        }
        changed_.notify_all();
        done(r);
    }
    bool low_on_space() const override { return false; }
    queue::store_condition condition() const override {
        return down ? queue::store_condition::failed : queue::store_condition::ok;
    }
    std::atomic<bool> fail_writes{false};
    std::atomic<bool> down{false};
    int failed_changes() const { return failed_changes_; }
    std::optional<smtp::envelope> load_envelope(const std::string& id) const override {
        std::lock_guard lock(mutex_);
        auto it = envelopes_.find(id);
        if (it == envelopes_.end()) return std::nullopt;
        return it->second;
    }
    std::optional<std::string> load_body(const std::string& id) const override {
        std::lock_guard lock(mutex_);
        ++body_loads_;
        auto it = bodies_.find(id);
        if (it == bodies_.end()) return std::nullopt;
        return it->second;
    }
    std::vector<smtp::envelope> list() const override {
        std::lock_guard lock(mutex_);
        ++list_calls_;
        std::vector<smtp::envelope> out;
        for (const auto& [id, env] : envelopes_) out.push_back(env);
        return out;
    }
    bool update(const smtp::envelope& env, std::string* = nullptr) override {
        {
            std::lock_guard lock(mutex_);
            if (!envelopes_.contains(env.id)) return false;
            envelopes_[env.id] = env;
        }
        changed_.notify_all();
        return true;
    }
    bool remove(const std::string& id, std::string* = nullptr) override {
        {
            std::lock_guard lock(mutex_);
            envelopes_.erase(id);
            bodies_.erase(id);
            removed_.push_back(id);
        }
        changed_.notify_all();
        return true;
    }
    /// As the real store: changes run one at a time, each against the current envelope;
    /// messages `apply` adds are committed with it.
    void change(std::string id, queue::envelope_change apply, std::function<void(queue::change_result)> done) override {
        queue::change_result r;
        if (fail_writes) {                          // a failing disk: nothing is written,
            down = true;                            // and the store says so from now on
            r.found = load_envelope(id).has_value();
            r.reason = "rocksdb: IO error: While fdatasync: Input/output error";
            ++failed_changes_;
            changed_.notify_all();
            done(std::move(r));
            return;
        }
        {
            std::lock_guard serial(change_mutex_);
            auto env = load_envelope(id);
            if (env) {
                r.found = true;
                std::vector<queue::new_message> also;
                r.action = apply(*env, also);
                r.ok = true;
                for (auto& m : also) {
                    commit_now(std::move(m.env), std::move(m.body), [&](queue::commit_result c) { r.new_ids.push_back(c.id); });
                }
                if (r.action == queue::change_action::update) update(*env);
                if (r.action == queue::change_action::remove) remove(id);
            } else {
                r.reason = "no such message " + id;
            }
        }
        done(std::move(r));
    }
    queue::store_stats stats() const override { return {}; }

    /// Adds a message as the receive side would (without waking anyone).
    std::string add(smtp::envelope env, std::string body) {
        std::string id;
        commit_now(std::move(env), std::move(body), [&](queue::commit_result r) { id = r.id; });
        return id;
    }
    /// Waits (bounded) until `predicate` holds over the store; the store's own changes
    /// wake the wait, so no test sleeps.
    bool wait(const std::function<bool(const memory_store&)>& predicate, std::chrono::seconds limit = std::chrono::seconds(20)) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, limit, [&] {
            lock.unlock();
            const bool ok = predicate(*this);
            lock.lock();
            return ok;
        });
    }
    int body_loads() const {
        std::lock_guard lock(mutex_);
        return body_loads_;
    }
    int list_calls() const {
        std::lock_guard lock(mutex_);
        return list_calls_;
    }
    std::vector<smtp::envelope> committed() const {
        std::lock_guard lock(mutex_);
        return committed_;
    }
    std::string committed_body(std::size_t index) const {
        std::lock_guard lock(mutex_);
        return index < committed_bodies_.size() ? committed_bodies_[index] : std::string();
    }
    std::size_t count() const {
        std::lock_guard lock(mutex_);
        return committed_.size();
    }
    std::pair<smtp::envelope, std::string> message(std::size_t index) const {
        std::lock_guard lock(mutex_);
        return {committed_.at(index), committed_bodies_.at(index)};
    }
    bool was_removed(const std::string& id) const {
        std::lock_guard lock(mutex_);
        return std::find(removed_.begin(), removed_.end(), id) != removed_.end();
    }

private:
    const completion completion_;
    std::mutex workers_mutex_;
    std::vector<std::thread> workers_;
    mutable std::mutex mutex_;
    std::mutex change_mutex_;
    std::condition_variable_any changed_;
    std::uint64_t next_id_ = 0;
    std::map<std::string, smtp::envelope> envelopes_;
    std::map<std::string, std::string> bodies_;
    mutable int body_loads_ = 0;
    mutable int list_calls_ = 0;
    std::atomic<int> failed_changes_{0};
    std::vector<smtp::envelope> committed_;
    std::vector<std::string> committed_bodies_;   // kept after removal, for DSN checks
    std::vector<std::string> removed_;
};

}  // namespace postern::test_support
