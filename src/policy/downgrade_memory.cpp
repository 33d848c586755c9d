// policy/downgrade_memory.cpp: see downgrade_memory.hpp.
#include "policy/downgrade_memory.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "policy/state_file.hpp"

namespace postern::policy {

namespace {

using json = nlohmann::json;

long long seconds_of(sys_time t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
sys_time time_of(long long s) { return sys_time(std::chrono::seconds(s)); }

json to_json(const downgrade_entry& e) {
    json events = json::array();
    for (const auto& ev : e.events)
        events.push_back({{"when", seconds_of(ev.when)}, {"mx", ev.mx}, {"verdict", ev.verdict}, {"action", ev.action}});
    return {{"verdict", e.verdict},
            {"mx", e.mx},
            {"first_seen", seconds_of(e.first_seen)},
            {"last_seen", seconds_of(e.last_seen)},
            {"events", events}};
}

downgrade_entry from_json(const json& j) {
    downgrade_entry e;
    e.verdict = j.value("verdict", "");
    e.mx = j.value("mx", "");
    e.first_seen = time_of(j.value("first_seen", 0LL));
    e.last_seen = time_of(j.value("last_seen", 0LL));
    for (const auto& ev : j.value("events", json::array()))
        e.events.push_back({time_of(ev.value("when", 0LL)), ev.value("mx", ""), ev.value("verdict", ""),
                            ev.value("action", "")});
    return e;
}

}  // namespace

downgrade_memory::downgrade_memory(std::filesystem::path file, std::chrono::seconds max_age, std::size_t capacity)
    : file_(std::move(file)), max_age_(max_age), capacity_(capacity) {
    const auto doc = read_state_file(file_, "downgrade memory");
    if (!doc) return;
    try {
        for (const auto& [domain, value] : doc->at("domains").items()) {
            auto e = from_json(value);
            if (rank(e.verdict) > 0) entries_[domain] = std::move(e);
        }
    } catch (const std::exception& e) {
        spdlog::warn("downgrade memory: {} is damaged ({}); starting empty", file_.string(), e.what());
        entries_.clear();
    }
}

int downgrade_memory::rank(std::string_view verdict) {
    if (verdict == "dane-ee" || verdict == "dane-ta") return 2;
    if (verdict == "mta-sts") return 1;
    return 0;
}

void downgrade_memory::seen(const std::string& domain, const std::string& verdict, const std::string& mx,
                            sys_time now) {
    const int level = rank(verdict);
    if (level == 0 || domain.empty()) return;
    std::lock_guard lock(mutex_);
    auto it = entries_.find(domain);
    const bool expired = it != entries_.end() && it->second.expires(max_age_) <= now;
    if (it == entries_.end() || expired || rank(it->second.verdict) < level) {
        auto& e = entries_[domain];
        e.verdict = verdict;
        e.mx = mx;
        if (it == entries_.end() || expired) e.first_seen = now;
        e.last_seen = now;
    } else if (rank(it->second.verdict) == level) {
        // A renewal: kept in memory at once, on disk when an hour has passed since.
        const bool write = now - it->second.last_seen >= std::chrono::hours(1);
        it->second.last_seen = now;
        it->second.mx = mx;
        it->second.verdict = verdict;
        if (!write) return;
    } else {
        return;   // lower than remembered: would_lower() is the caller's question
    }
    while (entries_.size() > capacity_) {
        auto soonest = entries_.begin();
        for (auto e = entries_.begin(); e != entries_.end(); ++e)
            if (e->second.last_seen < soonest->second.last_seen) soonest = e;
        entries_.erase(soonest);
    }
    save_locked();
}

std::optional<downgrade_entry> downgrade_memory::would_lower(const std::string& domain, std::string_view verdict,
                                                             sys_time now) const {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(domain);
    if (it == entries_.end() || it->second.expires(max_age_) <= now) return std::nullopt;
    if (rank(verdict) >= rank(it->second.verdict)) return std::nullopt;
    return it->second;
}

void downgrade_memory::note(const std::string& domain, downgrade_event event) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(domain);
    if (it == entries_.end()) return;
    it->second.events.push_back(std::move(event));
    while (it->second.events.size() > events_kept) it->second.events.pop_front();
    save_locked();
}

std::optional<downgrade_entry> downgrade_memory::find(const std::string& domain, sys_time now) const {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(domain);
    if (it == entries_.end() || it->second.expires(max_age_) <= now) return std::nullopt;
    return it->second;
}

bool downgrade_memory::forget(const std::string& domain) {
    std::lock_guard lock(mutex_);
    if (entries_.erase(domain) == 0) return false;
    save_locked();
    return true;
}

std::map<std::string, downgrade_entry> downgrade_memory::entries(sys_time now) const {
    std::lock_guard lock(mutex_);
    std::map<std::string, downgrade_entry> out;
    for (const auto& [domain, e] : entries_)
        if (e.expires(max_age_) > now) out.emplace(domain, e);
    return out;
}

void downgrade_memory::save_locked() const {
    if (file_.empty()) return;
    json doc = {{"version", 1}, {"domains", json::object()}};
    for (const auto& [domain, e] : entries_) doc["domains"][domain] = to_json(e);
    write_state_file(file_, doc, "downgrade memory");
}

}  // namespace postern::policy
