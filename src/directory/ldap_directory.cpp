// directory/ldap_directory.cpp: see ldap_directory.hpp.
#include "directory/ldap_directory.hpp"

#include <future>

#include <fmt/format.h>

#include "config/recipient_list.hpp"
#include "directory/ldap_client.hpp"

namespace postern::directory {

using config::lookup_answer;
using config::lookup_verdict;

ldap_directory::ldap_directory(config::ldap_source settings) : settings_(std::move(settings)) {
    for (std::uint32_t i = 0; i < std::max<std::uint32_t>(settings_.connections, 1); ++i)
        workers_.emplace_back([this] { work(); });
}

ldap_directory::~ldap_directory() { stop(false); }

void ldap_directory::stop(bool forget_waiting) {
    std::unordered_map<std::string, std::vector<callback>> waiting;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        waiting.swap(waiting_);
        queue_.clear();
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    if (forget_waiting) return;
    for (auto& [key, callbacks] : waiting)
        for (auto& done : callbacks) done({lookup_verdict::unavailable, false, "the directory was replaced by a reload"});
}

std::optional<lookup_answer> ldap_directory::at_hand_locked(const std::string& key, clock::time_point now) {
    const auto it = cache_.find(key);
    if (it == cache_.end()) return std::nullopt;
    const auto age = now - it->second.fetched;
    const auto ttl = it->second.found ? settings_.positive_ttl : settings_.negative_ttl;
    if (age < ttl) {
        ++counters_.hits;
        return lookup_answer{it->second.found ? lookup_verdict::found : lookup_verdict::not_found, false, {}};
    }
    return std::nullopt;
}

lookup_answer ldap_directory::unavailable_locked(const std::string& key, clock::time_point now) {
    if (const auto it = cache_.find(key); it != cache_.end() && now - it->second.fetched < settings_.max_stale) {
        ++counters_.stale_answers;
        const auto age = std::chrono::duration_cast<std::chrono::seconds>(now - it->second.fetched).count();
        return {it->second.found ? lookup_verdict::found : lookup_verdict::not_found, true,
                fmt::format("directory {} cannot answer ({}); answer cached {} s ago used", settings_.name,
                            counters_.last_failure, age)};
    }
    return {lookup_verdict::unavailable, false,
            fmt::format("directory {} cannot answer: {}", settings_.name, counters_.last_failure)};
}

void ldap_directory::enqueue_locked(const std::string& key, callback done) {
    auto [it, fresh] = waiting_.try_emplace(key);
    if (done) it->second.push_back(std::move(done));
    if (fresh) {
        queue_.push_back(key);
        wake_.notify_one();
    }
}

std::optional<lookup_answer> ldap_directory::answer_at_hand(std::string_view address) {
    const auto key = config::fold_address(address);
    const auto now = clock::now();
    std::lock_guard lock(mutex_);
    if (auto a = at_hand_locked(key, now)) return a;
    if (now < down_until_) return unavailable_locked(key, now);
    if (queue_.size() < max_waiting) enqueue_locked(key, {});
    return std::nullopt;
}

void ldap_directory::ask(std::string address, std::function<void(lookup_answer)> done) {
    const auto key = config::fold_address(address);
    const auto now = clock::now();
    std::optional<lookup_answer> answer;
    {
        std::lock_guard lock(mutex_);
        answer = at_hand_locked(key, now);
        if (!answer && (now < down_until_ || queue_.size() >= max_waiting || stopping_)) {
            if (now >= down_until_) counters_.last_failure = "too many searches waiting";
            answer = unavailable_locked(key, now);
        }
        if (!answer) {
            enqueue_locked(key, std::move(done));
            return;
        }
    }
    done(std::move(*answer));   // outside the lock: it may ask again
}

lookup_answer ldap_directory::ask_and_wait(std::string_view address) {
    auto promise = std::make_shared<std::promise<lookup_answer>>();
    auto future = promise->get_future();
    ask(std::string(address), [promise](lookup_answer a) { promise->set_value(std::move(a)); });
    return future.get();
}

void ldap_directory::remember_locked(const std::string& key, bool found, clock::time_point now) {
    if (cache_.size() >= max_cached && !cache_.count(key)) {
        // Forget what is too old to use even while the directory is down; if that is not
        // enough, start over (a cache this size only refills, it is never wrong).
        const auto longest = std::max(std::max(settings_.positive_ttl, settings_.negative_ttl), settings_.max_stale);
        std::erase_if(cache_, [&](const auto& kv) { return now - kv.second.fetched >= longest; });
        if (cache_.size() >= max_cached) cache_.clear();
    }
    cache_[key] = entry{found, now};
}

void ldap_directory::work() {
    ldap_client client(settings_);
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        const std::string key = std::move(queue_.front());
        queue_.pop_front();
        const auto started = clock::now();
        ldap_client::result result = ldap_client::result::failed;
        std::string why = "the directory is down";
        if (started >= down_until_) {   // else: another connection just failed; do not wait out a timeout again
            ++counters_.searches;
            lock.unlock();
            result = client.search(key);
            why = client.why();
            lock.lock();
        }
        const auto now = clock::now();
        lookup_answer answer;
        if (result == ldap_client::result::failed) {
            if (started >= down_until_) {
                ++counters_.failures;
                counters_.last_failure = why;
                down_until_ = now + retry_after;
            }
            answer = unavailable_locked(key, now);
        } else {
            const bool found = result == ldap_client::result::found;
            remember_locked(key, found, now);
            answer = {found ? lookup_verdict::found : lookup_verdict::not_found, false, {}};
        }
        auto node = waiting_.extract(key);
        lock.unlock();
        if (!node.empty())
            for (auto& done : node.mapped()) done(answer);
        lock.lock();
    }
}

ldap_directory::counters ldap_directory::snapshot() const {
    std::lock_guard lock(mutex_);
    auto c = counters_;
    c.cached = cache_.size();
    c.down = clock::now() < down_until_;
    return c;
}

void attach_directories(config::configuration& config, const config::configuration* previous) {
    for (auto& source : config.ldap_sources) {
        if (previous)
            if (const auto* old = config::find_ldap_source(*previous, source.name);
                old && old->lookup && old->same_settings(source)) {
                source.lookup = old->lookup;
                continue;
            }
        source.lookup = std::make_shared<ldap_directory>(source);
    }
}

void stop_directories(const config::configuration& config) {
    for (const auto& source : config.ldap_sources)
        if (auto* d = dynamic_cast<ldap_directory*>(source.lookup.get())) d->stop(true);
}

std::vector<std::pair<std::string, std::string>> unreachable_sources(const config::configuration& config) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& source : config.ldap_sources) {
        ldap_client client(source);
        if (auto why = client.check(); !why.empty()) out.emplace_back(source.name, std::move(why));
    }
    return out;
}

}  // namespace postern::directory
