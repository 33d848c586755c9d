// net/connector_choice.cpp: connector choice (DESIGN.md §3) and connector -> policy.
#include "net/connector_choice.hpp"

#include <algorithm>

#include <unistd.h>

#include <fmt/format.h>

#include "route/address_space.hpp"

namespace postern::net {

namespace ip = boost::asio::ip;

ip::address unmapped(const ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
    return a;
}

std::string source_group(const boost::asio::ip::address& a) {
    const auto plain = unmapped(a);
    if (plain.is_v4()) return plain.to_string();
    auto bytes = plain.to_v6().to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

std::string endpoint_text(const ip::tcp::endpoint& e) {
    const auto a = unmapped(e.address());
    if (a.is_v6()) return fmt::format("[{}]:{}", a.to_string(), e.port());
    return a.to_string() + ":" + std::to_string(e.port());
}

std::string bind_key(const config::endpoint& e) {
    if (!e.text.empty()) return e.text;
    if (e.host.find(':') != std::string::npos) return "[" + e.host + "]:" + std::to_string(e.port);
    return e.host + ":" + std::to_string(e.port);
}

std::vector<std::size_t> connectors_on_bind(const config::configuration& cfg, const std::string& bind) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < cfg.receive_connectors.size(); ++i) {
        const auto& binds = cfg.receive_connectors[i].bind;
        if (std::any_of(binds.begin(), binds.end(), [&](const config::endpoint& e) { return bind_key(e) == bind; }))
            out.push_back(i);
    }
    return out;
}

std::optional<std::size_t> choose_connector(const config::configuration& cfg,
                                            const std::vector<std::size_t>& candidates,
                                            const ip::address& client) {
    const auto address = unmapped(client);
    std::optional<std::size_t> best;
    int best_prefix = -1;
    for (auto index : candidates) {
        const auto& ranges = cfg.receive_connectors[index].remote_ip_ranges;
        if (ranges.empty() && best_prefix < 0) {
            best = index;
            best_prefix = 0;
        }
        for (const auto& range : ranges) {
            if (!range.contains(address)) continue;
            if (static_cast<int>(range.prefix_length) > best_prefix) {
                best = index;
                best_prefix = static_cast<int>(range.prefix_length);
            }
        }
    }
    return best;
}

bool wants_mutual_tls(const config::receive_connector& c) {
    return std::find(c.auth_mechanisms.begin(), c.auth_mechanisms.end(), config::auth_mechanism::mutual_tls) !=
           c.auth_mechanisms.end();
}

namespace {

std::string local_host_name() {
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) == 0 && name[0]) return name;
    return "localhost";
}

bool has_group(const config::receive_connector& c, config::permission_group g) {
    return std::find(c.permission_groups.begin(), c.permission_groups.end(), g) != c.permission_groups.end();
}

}  // namespace

std::vector<std::string> unrouted_domains(const config::configuration& cfg) {
    std::vector<std::string> out;
    for (const auto& domain : config::all_accepted_domains(cfg)) {
        const std::string suffix = "@" + domain;
        const bool covered = std::any_of(cfg.send_connectors.begin(), cfg.send_connectors.end(), [&](const auto& s) {
            if (std::any_of(s.address_spaces.begin(), s.address_spaces.end(), [&](const std::string& space) {
                    return route::address_space_rank(space, domain).has_value();
                }))
                return true;
            // A domain whose addresses are routed by a list alone counts as covered.
            return s.recipients && std::any_of(s.recipients->addresses().begin(), s.recipients->addresses().end(),
                                               [&](const std::string& a) { return a.ends_with(suffix); });
        });
        if (!covered) out.push_back(domain);
    }
    return out;
}

namespace {

using recipient_status = smtp::server_policy::recipient_status;

/// Who says whether an address of an authoritative domain exists: a list or a directory.
struct authority {
    std::string domain;                                      // folded
    std::shared_ptr<const config::recipient_list> list;
    std::shared_ptr<config::address_lookup> directory;
    bool uses_directory = false;
};

std::vector<authority> authorities(const config::configuration& cfg) {
    std::vector<authority> out;
    for (const auto& d : cfg.accepted_domains) {
        if (d.type != config::accepted_domain_type::authoritative) continue;
        authority a{config::fold_address(d.name), d.recipients, nullptr, !d.recipients_ldap.empty()};
        if (const auto* source = config::find_ldap_source(cfg, d.recipients_ldap)) a.directory = source->lookup;
        out.push_back(std::move(a));
    }
    return out;
}

/// The authority for `address`, or null: an internal_relay domain, or postmaster, whom
/// RFC 5321 §4.5.1 makes exist in every domain we take mail for.
const authority* authority_for(const std::vector<authority>& all, const std::string& address) {
    const auto at = address.rfind('@');
    if (at == std::string::npos) return nullptr;
    if (config::fold_address(address.substr(0, at)) == "postmaster") return nullptr;
    const auto domain = config::fold_address(address.substr(at + 1));
    for (const auto& a : all)
        if (a.domain == domain) return &a;
    return nullptr;
}

recipient_status status_of(const config::lookup_answer& a) {
    switch (a.verdict) {
    case config::lookup_verdict::found: return recipient_status::known;
    case config::lookup_verdict::not_found: return recipient_status::unknown;
    case config::lookup_verdict::unavailable: return recipient_status::unavailable;
    }
    return recipient_status::unavailable;
}

/// RCPT in an authoritative domain: listed or not, or, for a directory, its fresh cached
/// answer; anything else (a miss, a stale answer, an outage) is asked through the session
/// (recipient_asker) so the wait does not hold the thread and the log says why.
std::function<recipient_status(const std::string&)> recipient_checker(const config::configuration& cfg) {
    auto all = authorities(cfg);
    if (all.empty()) return {};
    return [all = std::move(all)](const std::string& address) {
        const auto* a = authority_for(all, address);
        if (!a) return recipient_status::known;
        if (!a->uses_directory) return a->list && a->list->contains(address) ? recipient_status::known
                                                                             : recipient_status::unknown;
        if (!a->directory) return recipient_status::unavailable;
        const auto answer = a->directory->answer_at_hand(address);
        if (!answer || answer->stale || answer->verdict == config::lookup_verdict::unavailable)
            return recipient_status::ask;
        return status_of(*answer);
    };
}

}  // namespace

std::function<void(const std::string&, session_setup::recipient_answer)> recipient_asker(
    const config::configuration& cfg) {
    auto all = authorities(cfg);
    if (std::none_of(all.begin(), all.end(), [](const authority& a) { return a.uses_directory; })) return {};
    return [all = std::move(all)](const std::string& address, session_setup::recipient_answer done) {
        const auto* a = authority_for(all, address);
        if (!a || !a->directory) {
            done(a ? recipient_status::unavailable : recipient_status::known, a ? "no directory attached" : "");
            return;
        }
        a->directory->ask(address, [done = std::move(done)](config::lookup_answer answer) {
            done(status_of(answer), std::move(answer.detail));
        });
    };
}

smtp::server_policy policy_for(const config::configuration& cfg, const config::receive_connector& c) {
    smtp::server_policy p;
    p.hostname = cfg.server.hostname.empty() ? local_host_name() : cfg.server.hostname;
    p.connector_name = c.name;
    switch (c.tls) {
    case config::tls_mode::none: p.tls = smtp::server_policy::tls_offer::none; break;
    case config::tls_mode::starttls: p.tls = smtp::server_policy::tls_offer::starttls; break;
    case config::tls_mode::implicit: p.tls = smtp::server_policy::tls_offer::implicit; break;
    }
    p.require_tls = c.require_tls;
    p.mutual_tls = wants_mutual_tls(c);
    p.relay_for_anonymous = c.accept_any_recipient && has_group(c, config::permission_group::anonymous_users);
    p.relay_for_partners = c.accept_any_recipient && has_group(c, config::permission_group::partners);
    p.accepted_domains = config::all_accepted_domains(cfg);
    p.check_recipient = recipient_checker(cfg);
    p.max_message_size = c.max_message_size;
    p.max_recipients = c.max_recipients;
    p.max_header_size = c.max_header_size;
    p.max_hop_count = c.max_hop_count;
    p.max_protocol_errors = c.max_protocol_errors;
    p.max_junk_commands = c.max_junk_commands;
    // DESIGN §7 "Bodies": a session holds at most this much of a message; the rest goes to
    // the queue store's spool as it arrives. Messages below it stay whole in memory and
    // go into the store's synced write with their envelope, as before.
    p.body_chunk_size = 256 * 1024;
    p.allow_untrusted_routing = c.allow_untrusted_routing;
    p.unrouted_domains = unrouted_domains(cfg);
    return p;
}

}  // namespace postern::net
