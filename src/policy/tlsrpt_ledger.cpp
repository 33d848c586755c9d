// policy/tlsrpt_ledger.cpp: see tlsrpt_ledger.hpp.
#include "policy/tlsrpt_ledger.hpp"

#include <spdlog/spdlog.h>

#include "policy/state_file.hpp"

namespace postern::policy {

namespace {

using json = nlohmann::json;

long long seconds_of(sys_time t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string policy_key(const tlsrpt_session& s) {
    std::string key = s.policy_type;
    for (const auto& p : s.policy_strings) key += "\n" + p;
    return key;
}

}  // namespace

json tlsrpt_period_json(const tlsrpt_period& p) {
    json domains = json::object();
    for (const auto& [domain, policies] : p.domains) {
        json list = json::array();
        for (const auto& [key, c] : policies) {
            json failures = json::array();
            for (const auto& [f, n] : c.failures)
                failures.push_back({{"result", f.result}, {"mx", f.receiving_mx}, {"ip", f.receiving_ip}, {"count", n}});
            list.push_back({{"key", key},
                            {"type", c.type},
                            {"strings", c.strings},
                            {"mx_patterns", c.mx_patterns},
                            {"successes", c.successes},
                            {"failures", failures}});
        }
        domains[domain] = list;
    }
    json doc = {{"version", 1}, {"start", seconds_of(p.start)}, {"domains", domains}};
    if (p.end != sys_time{}) doc["end"] = seconds_of(p.end);
    return doc;
}

tlsrpt_period tlsrpt_period_from(const json& j) {
    tlsrpt_period p;
    p.start = sys_time(std::chrono::seconds(j.at("start").get<long long>()));
    if (j.contains("end")) p.end = sys_time(std::chrono::seconds(j.at("end").get<long long>()));
    for (const auto& [domain, list] : j.at("domains").items())
        for (const auto& c : list) {
            auto& counts = p.domains[domain][c.at("key").get<std::string>()];
            counts.type = c.value("type", "");
            counts.strings = c.value("strings", std::vector<std::string>{});
            counts.mx_patterns = c.value("mx_patterns", std::vector<std::string>{});
            counts.successes = c.value("successes", std::uint64_t{0});
            for (const auto& f : c.value("failures", json::array()))
                counts.failures[{f.value("result", ""), f.value("mx", ""), f.value("ip", "")}] =
                    f.value("count", std::uint64_t{0});
        }
    return p;
}

tlsrpt_ledger::tlsrpt_ledger(std::filesystem::path file, sys_time now) : file_(std::move(file)) {
    period_.start = now;
    const auto doc = read_state_file(file_, "TLS-RPT");
    if (!doc) return;
    try {
        period_ = tlsrpt_period_from(*doc);
    } catch (const std::exception& e) {
        spdlog::warn("TLS-RPT: {} is damaged ({}); counting starts again now", file_.string(), e.what());
        period_ = tlsrpt_period{};
        period_.start = now;
    }
}

void tlsrpt_ledger::record(const tlsrpt_session& s) {
    if (s.policy_domain.empty()) return;
    std::lock_guard lock(mutex_);
    auto& counts = period_.domains[s.policy_domain][policy_key(s)];
    if (counts.type.empty()) {
        counts.type = s.policy_type;
        counts.strings = s.policy_strings;
        counts.mx_patterns = s.mx_patterns;
    }
    if (s.result.empty()) ++counts.successes;
    else ++counts.failures[{s.result, s.receiving_mx, s.receiving_ip}];
    dirty_ = true;
}

void tlsrpt_ledger::flush() {
    std::lock_guard lock(mutex_);
    if (!dirty_) return;
    save_locked();
    dirty_ = false;
}

tlsrpt_period tlsrpt_ledger::current(sys_time now) const {
    std::lock_guard lock(mutex_);
    auto p = period_;
    p.end = now;
    return p;
}

sys_time tlsrpt_ledger::started() const {
    std::lock_guard lock(mutex_);
    return period_.start;
}

tlsrpt_period tlsrpt_ledger::close(sys_time now) {
    std::lock_guard lock(mutex_);
    auto closed = std::move(period_);
    closed.end = now;
    period_ = tlsrpt_period{};
    period_.start = now;
    save_locked();   // the new period starts empty on disk too: nothing is counted twice
    dirty_ = false;
    return closed;
}

void tlsrpt_ledger::save_locked() const { write_state_file(file_, tlsrpt_period_json(period_), "TLS-RPT"); }

json tlsrpt_report(const tlsrpt_period& period, const std::string& domain, const std::string& organization_name,
                   const std::string& contact_info, const std::string& report_id) {
    json policies = json::array();
    if (auto it = period.domains.find(domain); it != period.domains.end()) {
        for (const auto& [key, c] : it->second) {
            std::uint64_t failed = 0;
            json details = json::array();
            for (const auto& [f, n] : c.failures) {
                failed += n;
                json d = {{"result-type", f.result}, {"receiving-mx-hostname", f.receiving_mx}, {"failed-session-count", n}};
                if (!f.receiving_ip.empty()) d["receiving-ip"] = f.receiving_ip;
                details.push_back(std::move(d));
            }
            json policy = {{"policy-type", c.type}, {"policy-domain", domain}};
            if (!c.strings.empty()) policy["policy-string"] = c.strings;
            if (!c.mx_patterns.empty()) policy["mx-host"] = c.mx_patterns;
            json entry = {{"policy", policy},
                          {"summary", {{"total-successful-session-count", c.successes},
                                       {"total-failure-session-count", failed}}}};
            if (!details.empty()) entry["failure-details"] = details;
            policies.push_back(std::move(entry));
        }
    }
    return {{"organization-name", organization_name},
            {"date-range", {{"start-datetime", iso_utc(period.start)}, {"end-datetime", iso_utc(period.end)}}},
            {"contact-info", contact_info},
            {"report-id", report_id},
            {"policies", policies}};
}

}  // namespace postern::policy
