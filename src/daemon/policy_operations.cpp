// daemon/policy_operations.cpp: see policy_operations.hpp.
#include "daemon/policy_operations.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace postern::daemon {

namespace {

using json = nlohmann::json;

json entry_json(const std::string& domain, const policy::downgrade_entry& e, std::chrono::seconds max_age) {
    json events = json::array();
    for (const auto& ev : e.events)
        events.push_back({{"when", iso_time(ev.when)}, {"mx", ev.mx}, {"verdict", ev.verdict}, {"action", ev.action}});
    return {{"domain", domain},
            {"verdict", e.verdict},
            {"mx", e.mx},
            {"first_seen", iso_time(e.first_seen)},
            {"last_seen", iso_time(e.last_seen)},
            {"expires", iso_time(e.expires(max_age))},
            {"events", events}};
}

queue_result refused(std::string why) {
    queue_result r;
    r.error = std::move(why);
    r.bad_request = true;
    return r;
}

std::string entry_text(const json& e) {
    std::string out = fmt::format("{}: {} at {}; first seen {}, last seen {}, kept until {}\n",
                                  e.value("domain", ""), e.value("verdict", ""), e.value("mx", ""),
                                  e.value("first_seen", ""), e.value("last_seen", ""), e.value("expires", ""));
    for (const auto& ev : e.value("events", json::array()))
        out += fmt::format("  {} {} offered only {}: {}\n", ev.value("when", ""), ev.value("mx", ""),
                           ev.value("verdict", ""), ev.value("action", ""));
    return out;
}

}  // namespace

queue_result handle_policy_request(policy::downgrade_memory& memory, const json& request,
                                   std::chrono::system_clock::time_point now) {
    const auto action = request.value("action", std::string());
    std::string domain = request.value("domain", std::string());
    for (auto& c : domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    queue_result r;
    if (action == "report") {
        json list = json::array();
        for (const auto& [d, e] : memory.entries(now))
            if (!e.events.empty()) list.push_back(entry_json(d, e, memory.max_age()));
        r.ok = true;
        r.data = {{"domains", list}};
        return r;
    }
    if (action != "show" && action != "forget") return refused("policy needs \"action\": show, forget or report");
    if (domain.empty()) return refused("policy " + action + " needs \"domain\"");
    const auto entry = memory.find(domain, now);
    r.ok = true;
    r.data = entry ? entry_json(domain, *entry, memory.max_age()) : json(nullptr);
    if (action == "show") return r;
    if (!entry) {
        r.ok = false;
        r.error = "nothing is remembered for " + domain;
        return r;
    }
    if (request.value("dry_run", false)) {
        r.message = fmt::format("would forget {} ({} at {}); nothing changed", domain, entry->verdict, entry->mx);
        return r;
    }
    memory.forget(domain);
    r.message = fmt::format("forgot {} ({} at {})", domain, entry->verdict, entry->mx);
    spdlog::info("policy: {}", r.message);
    return r;
}

std::string policy_text(const std::string& action, const json& data) {
    if (action == "report") {
        const auto list = data.value("domains", json::array());
        if (list.empty()) return "no downgrades seen\n";
        std::string out;
        for (const auto& e : list) out += entry_text(e);
        return out;
    }
    if (data.is_null()) return "nothing remembered\n";
    return entry_text(data);
}

queue_result handle_tlsrpt_request(policy::tlsrpt_ledger& ledger, const json& request,
                                   std::chrono::system_clock::time_point now, const std::string& organization) {
    if (request.value("action", std::string()) != "show") return refused("tlsrpt needs \"action\": show or send");
    std::string only = request.value("domain", std::string());
    for (auto& c : only) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto period = ledger.current(now);
    json reports = json::array();
    for (const auto& [domain, policies] : period.domains) {
        (void)policies;
        if (!only.empty() && domain != only) continue;
        reports.push_back(policy::tlsrpt_report(period, domain, organization, "", ""));
    }
    queue_result r;
    r.ok = true;
    r.data = {{"start", iso_time(period.start)}, {"end", iso_time(period.end)}, {"reports", reports}};
    return r;
}

std::string tlsrpt_text(const json& data) {
    std::string out = fmt::format("TLS results since {} (until {}):\n", data.value("start", ""), data.value("end", ""));
    const auto reports = data.value("reports", json::array());
    if (reports.empty()) out += "  no outbound TLS sessions counted\n";
    for (const auto& report : reports)
        for (const auto& p : report.value("policies", json::array())) {
            const auto& policy = p["policy"];
            const auto& summary = p["summary"];
            out += fmt::format("{} ({}): {} successful, {} failed\n", policy.value("policy-domain", ""),
                               policy.value("policy-type", ""),
                               summary.value("total-successful-session-count", std::uint64_t{0}),
                               summary.value("total-failure-session-count", std::uint64_t{0}));
            for (const auto& f : p.value("failure-details", json::array()))
                out += fmt::format("  {} at {} ({}): {}\n", f.value("result-type", ""),
                                   f.value("receiving-mx-hostname", ""), f.value("receiving-ip", ""),
                                   f.value("failed-session-count", std::uint64_t{0}));
        }
    return out;
}

json tlsrpt_outcomes_json(const std::vector<tlsrpt::outcome>& outcomes) {
    json list = json::array();
    for (const auto& o : outcomes)
        list.push_back({{"domain", o.domain}, {"destination", o.destination}, {"ok", o.ok}, {"detail", o.detail}});
    return {{"outcomes", list}};
}

std::string tlsrpt_send_text(const json& data) {
    const auto outcomes = data.value("outcomes", json::array());
    if (outcomes.empty()) return "period closed; no outbound TLS sessions were counted, so no reports\n";
    std::string out = "period closed; reports:\n";
    for (const auto& o : outcomes) {
        const auto destination = o.value("destination", std::string());
        out += fmt::format("{}: {}{}\n", o.value("domain", ""), destination.empty() ? "" : destination + ": ",
                           o.value("detail", ""));
    }
    return out;
}

}  // namespace postern::daemon
