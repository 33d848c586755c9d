// delivery/scheduler.cpp: grouping, retry and bounce decisions (see scheduler.hpp).
#include "delivery/scheduler.hpp"

#include <algorithm>
#include <cctype>
#include <map>

#include "queue/retry.hpp"
#include "route/resolver.hpp"
#include "smtp/address.hpp"

namespace postern::delivery {

std::string recipient_domain(const std::string& address) {
    const auto at = address.rfind('@');
    std::string domain = at == std::string::npos ? std::string() : address.substr(at + 1);
    for (auto& c : domain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return domain;
}

namespace {

std::string duration_text(std::chrono::seconds d) {
    // The largest exact unit, as the configuration writes it: "2d", "36h", "90m", "3s".
    const auto s = d.count();
    constexpr std::pair<long long, char> units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    if (s != 0)
        for (auto [unit, name] : units)
            if (s % unit == 0) return std::to_string(s / unit) + name;
    return std::to_string(s) + "s";
}

}  // namespace

std::uint32_t jitter_seed(const std::string& message_id) {
    std::uint32_t h = 2166136261u;   // FNV-1a
    for (unsigned char c : message_id) h = (h ^ c) * 16777619u;
    return h;
}

plan plan_message(const config::configuration& cfg, const smtp::envelope& env, smtp::sys_time now,
                  const std::function<bool(std::size_t)>& busy) {
    plan p;
    if (env.held) return p;
    std::map<destination, std::size_t> index;   // destination -> position in p.jobs
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
        const auto& r = env.recipients[i];
        if (r.state != smtp::recipient_state::pending || r.next_attempt > now) continue;
        if (busy && busy(i)) continue;
        const std::string domain = recipient_domain(r.address);
        const auto route = route::choose_route(cfg, r.address);
        if (route.undecided) continue;   // a directory is asked; the next scan decides
        const config::send_connector* connector = route.connector;
        if (!connector) {
            p.unroutable.push_back({env.id, i, "no send connector routes " + (domain.empty() ? r.address : domain)});
            continue;
        }
        // Smart hosts take every domain on one connection, unless domain validation
        // checks each recipient domain's own name (no tls_domain): then one per domain.
        const bool per_domain = connector->smart_hosts.empty() ||
                                (connector->require_tls && connector->tls_domain.empty() &&
                                 connector->auth_level == config::tls_auth_level::domain_validation);
        // RFC 8689 §5: TLS-Required: No is ignored on a message that also asks REQUIRETLS.
        const tls_demand demand = env.requiretls                                    ? tls_demand::requiretls
                                  : env.receive_connector == smtp::tls_report_origin ? tls_demand::report
                                  : env.tls_optional                                 ? tls_demand::optional
                                                                                     : tls_demand::usual;
        destination d{connector->name, per_domain ? domain : std::string(), demand};
        auto [it, inserted] = index.try_emplace(d, p.jobs.size());
        if (inserted) p.jobs.push_back(job{env.id, d, {}});
        p.jobs[it->second].recipients.push_back(i);
    }
    return p;
}

std::optional<smtp::sys_time> next_due(const smtp::envelope& env, const config::queue_section& queue,
                                        const std::function<bool(std::size_t)>& busy) {
    if (env.held) return std::nullopt;
    std::optional<smtp::sys_time> earliest;
    bool notice_wanted = false;
    for (std::size_t i = 0; i < env.recipients.size(); ++i) {
        const auto& r = env.recipients[i];
        if (r.state != smtp::recipient_state::pending) continue;
        // As delay_notice_due(): only after an attempt (else a passed notice time would
        // bring the message back at every tick while nothing can be said yet).
        notice_wanted = notice_wanted || (r.attempts > 0 && wants_notice(r, dsn_kind::delay));
        if (busy && busy(i)) continue;
        if (!earliest || r.next_attempt < *earliest) earliest = r.next_attempt;
    }
    if (notice_wanted && !env.delay_notice_sent && !env.mail_from.empty() && queue.delay_notice.count() > 0 &&
        queue.delay_notice < queue.expire) {
        const auto notice = env.received_at + queue.delay_notice;
        if (!earliest || notice < *earliest) earliest = notice;
    }
    return earliest;
}

decision apply_result(smtp::recipient& rcpt, const recipient_result& result, const smtp::envelope& env,
                      const config::queue_section& queue, smtp::sys_time now) {
    ++rcpt.attempts;
    rcpt.last_reply = result.describe();
    if (!result.tls.empty()) rcpt.last_tls = result.tls;
    switch (result.what) {
    case verdict::delivered:
        rcpt.state = smtp::recipient_state::delivered;
        return decision::done;
    case verdict::permanent:
        return decision::bounce;
    case verdict::transient:
        break;
    }
    // RFC 5321 §4.5.4.1: give up after the configured time in the queue (default 2 days;
    // the RFC suggests 4-5); the DSN then carries the last reason. A TLS-RPT report is
    // tried for a day at most (RFC 8460 §5.4).
    const auto lifetime = env.receive_connector == smtp::tls_report_origin
                              ? std::min<std::chrono::seconds>(queue.expire, std::chrono::hours(24))
                              : queue.expire;
    if (queue::expired(env.received_at, now, lifetime)) {
        rcpt.last_reply = "expired after " + duration_text(lifetime) + " in the queue; last attempt: " +
                          rcpt.last_reply;
        return decision::bounce;
    }
    const auto delay = queue::next_delay(queue.retry, rcpt.attempts, jitter_seed(env.id));
    rcpt.next_attempt = now + delay;
    return decision::retry;
}

bool delay_notice_due(const smtp::envelope& env, const config::queue_section& queue, smtp::sys_time now) {
    if (env.delay_notice_sent || env.mail_from.empty()) return false;
    if (queue.delay_notice.count() <= 0 || queue.delay_notice >= queue.expire) return false;
    if (now < env.received_at || now - env.received_at < queue.delay_notice) return false;
    return std::any_of(env.recipients.begin(), env.recipients.end(), [](const smtp::recipient& r) {
        return r.state == smtp::recipient_state::pending && r.attempts > 0 && wants_notice(r, dsn_kind::delay);
    });
}

std::vector<dsn_recipient> delay_notice_recipients(const smtp::envelope& env) {
    std::vector<dsn_recipient> list;
    for (const auto& r : env.recipients)
        if (r.state == smtp::recipient_state::pending && wants_notice(r, dsn_kind::delay))
            list.push_back({r.address, r.orcpt, "4.4.7", r.last_reply.empty() ? "not yet delivered" : r.last_reply, {}});
    return list;
}

transaction transaction_for(const smtp::envelope& env, const std::vector<std::size_t>& which, std::string body) {
    transaction tx;
    tx.mail_from = env.mail_from;
    tx.body_8bit = env.body_8bit;
    tx.smtputf8 = env.smtputf8;
    tx.requiretls = env.requiretls;
    tx.envid = env.envid;
    tx.ret = env.ret;
    tx.body = std::move(body);
    for (auto i : which) {
        if (i >= env.recipients.size()) continue;
        const auto& r = env.recipients[i];
        smtp::recipient_dsn params{r.notify, r.orcpt};
        const bool ascii = std::all_of(r.address.begin(), r.address.end(),
                                       [](char c) { return static_cast<unsigned char>(c) < 0x80; });
        if (params.orcpt.empty() && ascii && !r.address.empty())
            params.orcpt = "rfc822;" + smtp::xtext_encode(r.address);
        tx.recipients.push_back(r.address);
        tx.recipient_params.push_back(std::move(params));
    }
    return tx;
}

bool finished(const smtp::envelope& env) {
    return std::all_of(env.recipients.begin(), env.recipients.end(),
                       [](const smtp::recipient& r) { return r.state != smtp::recipient_state::pending; });
}

}  // namespace postern::delivery
