// policy/sts_store.cpp: see sts_store.hpp.
#include "policy/sts_store.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "policy/state_file.hpp"

namespace postern::policy {

namespace {

using json = nlohmann::json;
using clock = std::chrono::system_clock;

json to_json(const sts_policy& p) {
    return {{"id", p.id},
            {"mode", to_string(p.what)},
            {"mx", p.mx},
            {"max_age", p.max_age.count()},
            {"fetched_at", std::chrono::duration_cast<std::chrono::seconds>(p.fetched_at.time_since_epoch()).count()}};
}

std::optional<sts_policy> from_json(const json& j) {
    sts_policy p;
    const auto mode = j.value("mode", "");
    if (mode == "enforce") p.what = sts_policy::mode::enforce;
    else if (mode == "testing") p.what = sts_policy::mode::testing;
    else if (mode == "none") p.what = sts_policy::mode::none;
    else return std::nullopt;
    p.id = j.value("id", "");
    p.mx = j.value("mx", std::vector<std::string>{});
    p.max_age = std::chrono::seconds(j.value("max_age", 0LL));
    p.fetched_at = clock::time_point(std::chrono::seconds(j.value("fetched_at", 0LL)));
    return p;
}

}  // namespace

sts_store::sts_store(std::filesystem::path file, std::size_t capacity) : file_(std::move(file)), capacity_(capacity) {
    const auto doc = read_state_file(file_, "MTA-STS");
    if (!doc) return;
    try {
        for (const auto& [domain, value] : doc->at("policies").items())
            if (auto p = from_json(value)) policies_[domain] = std::move(*p);
    } catch (const std::exception& e) {
        spdlog::warn("MTA-STS: {} is damaged ({}); policies will be fetched again", file_.string(), e.what());
        policies_.clear();
    }
}

std::optional<sts_policy> sts_store::find(const std::string& domain) const {
    std::lock_guard lock(mutex_);
    auto it = policies_.find(domain);
    if (it == policies_.end()) return std::nullopt;
    return it->second;
}

void sts_store::put(const std::string& domain, sts_policy policy) {
    std::lock_guard lock(mutex_);
    policies_[domain] = std::move(policy);
    while (policies_.size() > capacity_) {
        auto soonest = policies_.begin();
        for (auto it = policies_.begin(); it != policies_.end(); ++it)
            if (it->second.fetched_at + it->second.max_age < soonest->second.fetched_at + soonest->second.max_age)
                soonest = it;
        policies_.erase(soonest);
    }
    save_locked();
}

std::size_t sts_store::size() const {
    std::lock_guard lock(mutex_);
    return policies_.size();
}

void sts_store::save_locked() const {
    json doc = {{"version", 1}, {"policies", json::object()}};
    for (const auto& [domain, p] : policies_) doc["policies"][domain] = to_json(p);
    write_state_file(file_, doc, "MTA-STS");
}

}  // namespace postern::policy
