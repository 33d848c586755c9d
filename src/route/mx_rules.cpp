// route/mx_rules.cpp: MX rules over parsed answers (see mx_rules.hpp).
#include "route/mx_rules.hpp"

#include <algorithm>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "route/address_space.hpp"

namespace postern::route {
namespace {

next_hops decision(lookup_status status, std::string reason, dnssec mx_status = dnssec::insecure) {
    next_hops hops;
    hops.status = status;
    hops.reason = std::move(reason);
    hops.mx_status = mx_status;
    return hops;
}

bool is_own_name(std::string_view exchange, const std::vector<std::string>& own_names) {
    return std::any_of(own_names.begin(), own_names.end(),
                       [&](const std::string& own) { return !own.empty() && same_domain(own, exchange); });
}

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
    std::string out;
    for (const auto& part : parts) {
        if (!out.empty()) out += separator;
        out += part;
    }
    return out;
}

bool usable(const address_answer& answer) {
    // Bogus data is never used, whatever it says (RFC 4035 §4.3).
    return answer.outcome.kind == answer_kind::data;
}

}  // namespace

std::string describe_failure(const answer_outcome& outcome, std::string_view name, std::string_view type) {
    switch (outcome.kind) {
    case answer_kind::data:
        return fmt::format("{} {} answered", name, type);
    case answer_kind::nodata:
        return fmt::format("no {} records for {}", type, name);
    case answer_kind::nxdomain:
        return fmt::format("NXDOMAIN for {} {}", name, type);
    case answer_kind::failed:
        return fmt::format("{} for {} {}", outcome.detail.empty() ? "SERVFAIL" : outcome.detail, name, type);
    case answer_kind::bogus:
        return outcome.detail.empty()
                   ? fmt::format("DNSSEC-bogus answer for {} {}", name, type)
                   : fmt::format("DNSSEC-bogus answer for {} {} ({})", name, type, outcome.detail);
    case answer_kind::timed_out:
        return fmt::format("timeout for {} {}", name, type);
    }
    return fmt::format("unknown outcome for {} {}", name, type);
}

bool is_address_literal_name(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    boost::system::error_code ec;
    boost::asio::ip::make_address_v4(std::string(name), ec);
    return !ec;
}

mx_plan plan_from_mx(std::string_view domain_in, const mx_answer& mx,
                     const std::vector<std::string>& own_names, std::mt19937& tie_order) {
    const std::string domain = normalize_domain(domain_in);
    mx_plan plan;
    plan.mx_status = mx.outcome.status;

    switch (mx.outcome.kind) {
    case answer_kind::nxdomain:
        plan.decided = decision(lookup_status::no_such_domain, describe_failure(mx.outcome, domain, "MX"),
                                mx.outcome.status);
        return plan;
    case answer_kind::failed:
    case answer_kind::bogus:
    case answer_kind::timed_out:
        plan.decided = decision(lookup_status::defer, describe_failure(mx.outcome, domain, "MX"), mx.outcome.status);
        return plan;
    case answer_kind::nodata:
        // RFC 5321 §5.1: no MX records, so the domain itself is the implicit MX with
        // preference 0. Only NODATA means "no MX"; a failed MX query never falls back.
        plan.from_mx = false;
        plan.hosts.push_back({domain, 0});
        return plan;
    case answer_kind::data:
        break;
    }

    plan.from_mx = true;
    if (mx.records.empty()) {
        plan.decided = decision(lookup_status::defer, fmt::format("no readable MX records for {}", domain),
                                mx.outcome.status);
        return plan;
    }

    // RFC 7505 §3: a null MX is the single record "0 .". A "." among other records is
    // a misconfiguration; it names no host, so it is left out and the others are used.
    if (mx.records.size() == 1 && mx.records[0].exchange.empty() && mx.records[0].preference == 0) {
        plan.decided = decision(lookup_status::null_mx,
                                fmt::format("{} accepts no mail (null MX, RFC 7505)", domain), mx.outcome.status);
        return plan;
    }

    // RFC 5321 §5.1: when we are one of the MX hosts, only hosts with a strictly lower
    // preference value may receive the message; anything else would send it back to us.
    std::uint32_t own_preference = std::numeric_limits<std::uint32_t>::max();
    for (const auto& record : mx.records)
        if (!record.exchange.empty() && is_own_name(record.exchange, own_names))
            own_preference = std::min<std::uint32_t>(own_preference, record.preference);

    // One entry per host name, at its lowest preference.
    std::map<std::string, host_to_resolve> by_name;
    bool dropped_for_loop = false;
    for (const auto& record : mx.records) {
        if (record.preference >= own_preference) {
            dropped_for_loop = true;
            continue;
        }
        if (record.exchange.empty()) {
            plan.skipped.push_back(fmt::format("null MX record among other MX records of {} (RFC 7505 §3)", domain));
            continue;
        }
        if (is_address_literal_name(record.exchange)) {
            plan.skipped.push_back(
                fmt::format("MX {} of {} is an address, not a host name (RFC 5321 §5.1)", record.exchange, domain));
            continue;
        }
        const std::string key = normalize_domain(record.exchange);
        auto [it, inserted] = by_name.try_emplace(key, host_to_resolve{key, record.preference});
        if (!inserted) it->second.preference = std::min(it->second.preference, record.preference);
    }

    if (by_name.empty()) {
        if (dropped_for_loop && plan.skipped.empty()) {
            plan.decided = decision(lookup_status::defer, fmt::format("mail for {} loops back to myself", domain),
                                    mx.outcome.status);
        } else {
            std::string reason = dropped_for_loop
                                     ? fmt::format("mail for {} loops back to myself", domain)
                                     : fmt::format("no usable MX host for {}", domain);
            if (!plan.skipped.empty()) reason += ": " + join(plan.skipped, "; ");
            plan.decided = decision(lookup_status::defer, std::move(reason), mx.outcome.status);
        }
        return plan;
    }

    for (auto& [name, host] : by_name) plan.hosts.push_back(std::move(host));
    // Names are unique now, so shuffling before a stable sort gives a uniformly random
    // order within each preference and strict order between preferences.
    std::shuffle(plan.hosts.begin(), plan.hosts.end(), tie_order);
    std::stable_sort(plan.hosts.begin(), plan.hosts.end(),
                     [](const host_to_resolve& x, const host_to_resolve& y) { return x.preference < y.preference; });
    if (plan.hosts.size() > max_mx_hosts) {
        plan.skipped.push_back(fmt::format("{} MX hosts of {} beyond the first {} not tried",
                                           plan.hosts.size() - max_mx_hosts, domain, max_mx_hosts));
        plan.hosts.resize(max_mx_hosts);
    }
    return plan;
}

next_hops hops_from_addresses(std::string_view domain_in, const mx_plan& plan,
                              const std::vector<host_answers>& answers) {
    if (plan.decided) return *plan.decided;
    const std::string domain = normalize_domain(domain_in);

    next_hops hops;
    hops.from_mx = plan.from_mx;
    hops.mx_status = plan.mx_status;

    std::vector<std::string> failures;
    for (std::size_t i = 0; i < plan.hosts.size(); ++i) {
        const auto& wanted = plan.hosts[i];
        static const host_answers unanswered{
            {{answer_kind::timed_out, dnssec::insecure, {}}, {}, {}},
            {{answer_kind::timed_out, dnssec::insecure, {}}, {}, {}},
        };
        const host_answers& got = i < answers.size() ? answers[i] : unanswered;

        host h;
        h.name = wanted.name;
        h.preference = wanted.preference;
        bool all_secure = true;
        for (const address_answer* answer : {&got.a, &got.aaaa}) {
            if (!usable(*answer)) continue;
            h.addresses.insert(h.addresses.end(), answer->addresses.begin(), answer->addresses.end());
            if (answer->outcome.status != dnssec::secure) all_secure = false;
            if (h.canonical_name.empty()) h.canonical_name = answer->canonical;
        }
        if (h.addresses.empty()) {
            std::vector<std::string> why;
            const bool both_empty = (got.a.outcome.kind == answer_kind::nodata ||
                                     got.a.outcome.kind == answer_kind::nxdomain) &&
                                    (got.aaaa.outcome.kind == answer_kind::nodata ||
                                     got.aaaa.outcome.kind == answer_kind::nxdomain);
            if (both_empty && got.a.outcome.kind == answer_kind::nxdomain)
                why.push_back(fmt::format("NXDOMAIN for {}", wanted.name));
            else if (both_empty)
                why.push_back(fmt::format("no A or AAAA records for {}", wanted.name));
            else {
                if (!usable(got.a)) why.push_back(describe_failure(got.a.outcome, wanted.name, "A"));
                if (!usable(got.aaaa)) why.push_back(describe_failure(got.aaaa.outcome, wanted.name, "AAAA"));
            }
            failures.push_back(join(why, ", "));
            continue;
        }
        h.address_status = all_secure ? dnssec::secure : dnssec::insecure;
        hops.hosts.push_back(std::move(h));
    }

    if (!hops.hosts.empty()) {
        hops.status = lookup_status::ok;
        return hops;
    }

    hops.status = lookup_status::defer;
    std::vector<std::string> all = failures;
    all.insert(all.end(), plan.skipped.begin(), plan.skipped.end());
    if (plan.from_mx)
        hops.reason = fmt::format("no MX host of {} has an address: {}", domain, join(all, "; "));
    else
        hops.reason = fmt::format("no MX for {} and no address for it: {}", domain, join(all, "; "));
    return hops;
}

}  // namespace postern::route
