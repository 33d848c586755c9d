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
        if (authoritative) out["recipient"] = d->recipients && d->recipients->contains(address) ? "known" : "unknown";
    } else if (accepted) {
        out["domain_type"] = "internal_relay";
    }
    const auto choice = route::choose_route(cfg, address);
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
    }
    text += "\n";
    if (r["connector"].get<std::string>().empty())
        text += "  no route: " + r["why"].get<std::string>() + "\n";
    else
        text += fmt::format("  send connector \"{}\": {}\n", r["connector"].get<std::string>(), r["why"].get<std::string>());
    return text;
}

}  // namespace postern::daemon
