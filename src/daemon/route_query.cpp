// daemon/route_query.cpp: where one address goes (route_query.hpp).
#include "daemon/route_query.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "net/connector_choice.hpp"
#include "route/resolver.hpp"

namespace postern::daemon {

nlohmann::json describe_route(const config::configuration& cfg, const std::string& address) {
    const auto at = address.rfind('@');
    const std::string domain = config::fold_address(at == std::string::npos ? std::string() : address.substr(at + 1));
    const auto ours = config::all_accepted_domains(cfg);
    const bool accepted = std::find(ours.begin(), ours.end(), domain) != ours.end();
    nlohmann::json out = {{"address", address}, {"accepted", accepted}, {"domain_type", ""}, {"recipient", ""}};
    if (const auto* d = config::find_accepted_domain(cfg, domain)) {
        const bool authoritative = d->type == config::accepted_domain_type::authoritative;
        out["domain_type"] = authoritative ? "authoritative" : "internal_relay";
        const bool postmaster = at != std::string::npos && config::fold_address(address.substr(0, at)) == "postmaster";
        if (authoritative && postmaster) {
            out["recipient"] = "known";
        } else if (authoritative && !d->recipients_ldap.empty()) {
            const auto* source = config::find_ldap_source(cfg, d->recipients_ldap);
            const auto answer = source && source->lookup
                                    ? source->lookup->ask_and_wait(address)
                                    : config::lookup_answer{config::lookup_verdict::unavailable, false,
                                                            "no directory attached"};
            out["recipient"] = answer.verdict == config::lookup_verdict::found       ? "known"
                               : answer.verdict == config::lookup_verdict::not_found ? "unknown"
                                                                                     : "unavailable";
            if (!answer.detail.empty()) out["directory"] = answer.detail;
        } else if (authoritative) {
            out["recipient"] = d->recipients && d->recipients->contains(address) ? "known" : "unknown";
        }
    } else if (accepted) {
        out["domain_type"] = "internal_relay";
    }
    const auto choice = route::choose_route(cfg, address, route::directory_wait::yes);
    out["connector"] = choice.connector ? choice.connector->name : "";
    out["why"] = choice.why;
    return out;
}

std::string route_text(const nlohmann::json& r) {
    std::string text = r["address"].get<std::string>() + ": ";
    if (!r["accepted"].get<bool>()) {
        text += "not one of our domains (relayed only for clients with accept_any_recipient)";
    } else {
        text += "our domain (" + r["domain_type"].get<std::string>() + ")";
        if (r["recipient"] == "unknown") text += "; not a known recipient: RCPT gets 550 5.1.1";
        if (r["recipient"] == "known") text += "; a known recipient";
        if (r["recipient"] == "unavailable") text += "; the directory cannot say: RCPT gets 451 4.4.3";
        if (r.contains("directory")) text += "\n  directory: " + r["directory"].get<std::string>();
    }
    text += "\n";
    if (r["connector"].get<std::string>().empty())
        text += "  no route: " + r["why"].get<std::string>() + "\n";
    else
        text += fmt::format("  send connector \"{}\": {}\n", r["connector"].get<std::string>(), r["why"].get<std::string>());
    return text;
}

}  // namespace postern::daemon
