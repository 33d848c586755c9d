// daemon/server_status.cpp: status and metrics sources (server_status.hpp).
#include "daemon/server_status.hpp"

#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <openssl/asn1.h>
#include <openssl/x509.h>

#include "directory/ldap_directory.hpp"
#include "tls/keyring/keyring.hpp"
#include "tls/keyring/stash.hpp"

namespace postern::daemon {

namespace {

std::string iso8601(std::int64_t seconds) {
    std::time_t t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                       tm.tm_min, tm.tm_sec);
}

std::int64_t epoch_of(const ASN1_TIME* time) {
    std::tm tm{};
    if (ASN1_TIME_to_tm(time, &tm) != 1) return 0;
    return static_cast<std::int64_t>(::timegm(&tm));
}

}  // namespace

std::string postern_version() { return POSTERN_VERSION; }

std::vector<log::certificate_expiry> certificate_expiries(const config::configuration& cfg) {
    std::vector<log::certificate_expiry> out;
    std::error_code ec;
    if (!std::filesystem::exists(cfg.tls.keyring, ec)) return out;
    const auto password = tls::read_stash(cfg.tls.stash);
    const auto ring = tls::keyring::read(cfg.tls.keyring, password.view());
    for (const auto& e : ring.entries())
        if (e.certificate) out.push_back({e.label, epoch_of(X509_get0_notAfter(e.certificate.get()))});
    return out;
}

log::queue_gauges count_queue(const queue::store& store) {
    log::queue_gauges g;
    for (const auto& env : store.list()) {
        ++g.messages;
        if (env.held) {
            ++g.held;
            continue;
        }
        for (const auto& r : env.recipients)
            if (r.state == smtp::recipient_state::pending && r.attempts > 0) {
                ++g.deferred;
                break;
            }
    }
    return g;
}

log::queue_gauges queue_counter::get() {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (!counted_ || now - counted_at_ >= max_age_) {
        last_ = count_queue(store_);
        counted_at_ = now;
        counted_ = true;
    }
    return last_;
}

nlohmann::json status_json(const config::configuration& cfg, const status_sources& from) {
    using nlohmann::json;
    const auto uptime =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - from.started).count();
    json status = {{"version", postern_version()}, {"pid", ::getpid()}, {"uptime_seconds", uptime},
                   {"hostname", cfg.server.hostname}};

    const auto sessions = from.server.sessions_by_connector();
    json connectors = json::array();
    for (const auto& rc : cfg.receive_connectors) {
        json addresses = json::array();
        for (const auto& l : from.listeners)
            for (const auto& name : l.connectors)
                if (name == rc.name)
                    addresses.push_back(l.endpoint.address().is_v6()
                                            ? fmt::format("[{}]:{}", l.endpoint.address().to_string(), l.endpoint.port())
                                            : fmt::format("{}:{}", l.endpoint.address().to_string(), l.endpoint.port()));
        const auto it = sessions.find(rc.name);
        connectors.push_back({{"name", rc.name},
                              {"tls", rc.tls == config::tls_mode::none       ? "none"
                                      : rc.tls == config::tls_mode::starttls ? "starttls"
                                                                             : "implicit"},
                              {"addresses", addresses},
                              {"sessions", it == sessions.end() ? 0 : it->second}});
    }
    status["connectors"] = connectors;
    status["sessions"] = from.server.active_sessions();

    const auto q = count_queue(from.store);
    status["queue"] = {{"messages", q.messages}, {"deferred", q.deferred}, {"held", q.held},
                       {"store", from.store.condition() == queue::store_condition::ok             ? "ok"
                                 : from.store.condition() == queue::store_condition::low_on_space ? "low on space"
                                                                                                  : "failed"}};

    json certificates = json::array();
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    for (const auto& c : log::metrics::global().certificates())
        certificates.push_back({{"label", c.label},
                                {"not_after", iso8601(c.not_after)},
                                {"days_left", (c.not_after - now) / 86400}});
    status["certificates"] = certificates;

    json directories = json::array();
    for (const auto& source : cfg.ldap_sources) {
        const auto* d = dynamic_cast<const directory::ldap_directory*>(source.lookup.get());
        if (!d) continue;
        const auto c = d->snapshot();
        directories.push_back({{"name", source.name}, {"uri", source.uri}, {"state", c.down ? "down" : "up"},
                               {"cached_answers", c.cached}, {"cache_hits", c.hits}, {"searches", c.searches},
                               {"failures", c.failures}, {"stale_answers", c.stale_answers},
                               {"last_failure", c.last_failure}});
    }
    status["directories"] = directories;

    const auto& m = log::metrics::global();
    status["counters"] = {{"received", m.received()},
                          {"delivered", m.delivered()},
                          {"deferred", m.deferred()},
                          {"bounced", m.bounced()}};
    return status;
}

std::string status_text(const nlohmann::json& s) {
    std::string out = fmt::format("postern {} running, pid {}, up {}s, host {}\n", s["version"].get<std::string>(),
                                  s["pid"].get<long>(), s["uptime_seconds"].get<long>(),
                                  s["hostname"].get<std::string>());
    out += "connectors:\n";
    for (const auto& c : s["connectors"]) {
        std::string addresses;
        for (const auto& a : c["addresses"]) addresses += (addresses.empty() ? "" : ", ") + a.get<std::string>();
        out += fmt::format("  {:<20} {:<9} {:<30} {} session(s)\n", c["name"].get<std::string>(),
                           c["tls"].get<std::string>(), addresses.empty() ? "(not bound)" : addresses,
                           c["sessions"].get<long>());
    }
    const auto& q = s["queue"];
    out += fmt::format("queue: {} message(s), {} deferred, {} held; store {}\n", q["messages"].get<long>(),
                       q["deferred"].get<long>(), q["held"].get<long>(), q["store"].get<std::string>());
    const auto& c = s["counters"];
    out += fmt::format("since start: {} received; {} delivered, {} deferred, {} bounced (per recipient)\n",
                       c["received"].get<long>(), c["delivered"].get<long>(), c["deferred"].get<long>(),
                       c["bounced"].get<long>());
    if (s.contains("directories") && !s["directories"].empty()) {
        out += "directories:\n";
        for (const auto& d : s["directories"]) {
            out += fmt::format("  {:<20} {:<4} {} cached, {} hits, {} searches, {} failed, {} stale answers used\n",
                               d["name"].get<std::string>(), d["state"].get<std::string>(),
                               d["cached_answers"].get<long>(), d["cache_hits"].get<long>(), d["searches"].get<long>(),
                               d["failures"].get<long>(), d["stale_answers"].get<long>());
            if (!d["last_failure"].get<std::string>().empty())
                out += "    last failure: " + d["last_failure"].get<std::string>() + "\n";
        }
    }
    out += "certificates:\n";
    if (s["certificates"].empty()) out += "  (no key ring)\n";
    for (const auto& c : s["certificates"])
        out += fmt::format("  {:<24} expires {} ({} days)\n", c["label"].get<std::string>(),
                           c["not_after"].get<std::string>(), c["days_left"].get<long>());
    return out;
}

}  // namespace postern::daemon
