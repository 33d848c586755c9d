// route/address_space.cpp: address space matching and the choice of a send connector.
#include "route/address_space.hpp"

#include <limits>

#include "route/resolver.hpp"

namespace postern::route {

std::string normalize_domain(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    std::string out(name);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

bool same_domain(std::string_view a, std::string_view b) {
    return normalize_domain(a) == normalize_domain(b);
}

std::optional<std::size_t> address_space_rank(std::string_view pattern, std::string_view domain) {
    constexpr std::size_t exact_rank = std::numeric_limits<std::size_t>::max();
    const std::string want = normalize_domain(domain);
    const std::string space = normalize_domain(pattern);
    if (want.empty() || space.empty()) return std::nullopt;
    if (space == "*") return 0;
    if (space.starts_with("*.")) {
        // "*.partner.test" covers a.partner.test and x.y.partner.test, but neither
        // partner.test itself nor evilpartner.test: the match must end on a label boundary.
        const std::string_view suffix = std::string_view(space).substr(1);   // ".partner.test"
        if (want.size() > suffix.size() && want.ends_with(suffix)) return suffix.size();
        return std::nullopt;
    }
    if (space == want) return exact_rank;
    return std::nullopt;
}

const config::send_connector* choose_send_connector(const config::configuration& cfg,
                                                    const std::string& domain) {
    const config::send_connector* best = nullptr;
    std::size_t best_rank = 0;
    for (const auto& connector : cfg.send_connectors) {
        for (const auto& space : connector.address_spaces) {
            auto rank = address_space_rank(space, domain);
            // On equal rank the connector listed first in the file keeps the domain.
            if (rank && (!best || *rank > best_rank)) {
                best = &connector;
                best_rank = *rank;
            }
        }
    }
    return best;
}

route_choice choose_route(const config::configuration& cfg, const std::string& address, directory_wait wait) {
    route_choice out;
    for (const auto& connector : cfg.send_connectors) {
        if (connector.recipients && connector.recipients->contains(address)) {
            out.connector = &connector;
            out.why = "listed in " + connector.recipients_file.string();
            return out;
        }
        if (connector.recipients_ldap.empty()) continue;
        const auto* source = config::find_ldap_source(cfg, connector.recipients_ldap);
        std::optional<config::lookup_answer> answer;
        if (source && source->lookup)
            answer = wait == directory_wait::yes ? source->lookup->ask_and_wait(address)
                                                 : source->lookup->answer_at_hand(address);
        else
            answer = config::lookup_answer{config::lookup_verdict::unavailable, false, "no directory attached"};
        if (answer && answer->verdict == config::lookup_verdict::not_found) continue;
        if (answer && answer->verdict == config::lookup_verdict::found) {
            out.connector = &connector;
            out.why = "found in directory " + connector.recipients_ldap + (answer->stale ? " (" + answer->detail + ")" : "");
            return out;
        }
        // Not knowing would be a guess at the next hop: wait for the directory instead.
        out.undecided = true;
        out.why = answer ? answer->detail : "directory " + connector.recipients_ldap + " has not answered yet";
        return out;
    }
    const auto at = address.rfind('@');
    const std::string domain = at == std::string::npos ? std::string() : address.substr(at + 1);
    out.connector = choose_send_connector(cfg, domain);
    if (!out.connector) {
        out.why = "no send connector's address_spaces cover " + (domain.empty() ? address : domain);
        return out;
    }
    std::size_t best = 0;
    std::string space_text;
    for (const auto& space : out.connector->address_spaces)
        if (auto rank = address_space_rank(space, domain); rank && *rank >= best) {
            best = *rank;
            space_text = space;
        }
    out.why = "address space \"" + space_text + "\" (" +
              (space_text == "*" ? "everything else" : space_text.starts_with("*.") ? "wildcard domain" : "exact domain") +
              ")";
    return out;
}

}  // namespace postern::route
