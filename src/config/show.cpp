// config/show.cpp: configuration -> TOML or JSON text, defaults included.
//
// The document is first built as an insertion-ordered JSON value (so keys come out in
// the order of DESIGN.md §3, not alphabetically), then written either as JSON or as
// TOML. Values use the file's notation ("35MB", "10m", "sha256:…") in both formats, so
// what a script reads from --json is what it would write into the file.
#include <algorithm>
#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/detail.hpp"
#include "config/show.hpp"

namespace postern::config {

namespace {

using json = nlohmann::ordered_json;
using detail::name_of;

template <class T, class F>
json list(const std::vector<T>& values, F&& to_value) {
    json out = json::array();
    for (const auto& v : values) out.push_back(to_value(v));
    return out;
}

json strings(const std::vector<std::string>& values) {
    return list(values, [](const std::string& s) { return s; });
}

json server_json(const server_section& s) {
    return {{"hostname", s.hostname},
            {"data_dir", s.data_dir.string()},
            {"control_socket", s.control_socket.string()},
            {"accepted_domains", strings(s.accepted_domains)},
            {"user", s.user},
            {"max_inbound_connections", s.max_inbound_connections},
            {"max_connections_per_source", s.max_connections_per_source},
            {"max_outbound_connections", s.max_outbound_connections},
            {"shutdown_timeout", detail::format_duration(s.shutdown_timeout)}};
}

json tls_json(const tls_section& t) {
    return {{"keyring", t.keyring.string()},
            {"stash", t.stash.string()},
            {"certificate", t.certificate},
            {"min_version", t.min_version},
            {"ciphers", t.ciphers},
            {"ciphersuites", t.ciphersuites},
            {"session_cache_size", t.session_cache_size}};
}

json receive_json(const receive_connector& c) {
    return {{"name", c.name},
            {"bind", list(c.bind, [](const endpoint& e) { return e.text; })},
            {"remote_ip_ranges", list(c.remote_ip_ranges, [](const ip_range& r) { return r.text; })},
            {"tls", name_of(detail::tls_mode_names, c.tls)},
            {"require_tls", c.require_tls},
            {"auth_mechanisms",
             list(c.auth_mechanisms, [](auth_mechanism m) { return name_of(detail::auth_mechanism_names, m); })},
            {"partner_names", strings(c.partner_names)},
            {"partner_fingerprints", list(c.partner_fingerprints, [](const std::string& hex) { return "sha256:" + hex; })},
            {"trusted_roots", strings(c.trusted_roots)},
            {"permission_groups",
             list(c.permission_groups, [](permission_group g) { return name_of(detail::permission_group_names, g); })},
            {"accept_any_recipient", c.accept_any_recipient},
            {"max_message_size", detail::format_size(c.max_message_size)},
            {"max_recipients", c.max_recipients},
            {"max_header_size", detail::format_size(c.max_header_size)},
            {"max_hop_count", c.max_hop_count},
            {"max_inbound_connections_per_source", c.max_inbound_connections_per_source},
            {"max_protocol_errors", c.max_protocol_errors},
            {"max_junk_commands", c.max_junk_commands},
            {"allow_untrusted_routing", c.allow_untrusted_routing},
            {"connection_timeout", detail::format_duration(c.connection_timeout)},
            {"connection_inactivity_timeout", detail::format_duration(c.connection_inactivity_timeout)},
            {"protocol_logging", name_of(detail::protocol_logging_names, c.logging)}};
}

json send_json(const send_connector& c) {
    return {{"name", c.name},
            {"address_spaces", strings(c.address_spaces)},
            {"smart_hosts", list(c.smart_hosts, [](const endpoint& e) { return e.text; })},
            {"smart_host_tls", name_of(detail::smart_host_tls_names, c.smart_host_tls_mode)},
            {"require_tls", c.require_tls},
            {"tls_auth_level", name_of(detail::tls_auth_level_names, c.auth_level)},
            {"tls_domain", c.tls_domain},
            {"ignore_starttls", c.ignore_starttls},
            {"dane", name_of(detail::dane_mode_names, c.dane)},
            {"mta_sts", c.mta_sts},
            {"downgrade_protection", name_of(detail::downgrade_protection_names, c.downgrades)},
            {"client_certificate", c.client_certificate},
            {"trust_system_store", c.trust_system_store},
            {"trusted_roots", strings(c.trusted_roots)},
            {"recipients", c.recipients_file.string()},
            {"recipients_ldap", c.recipients_ldap},
            {"max_per_destination", c.max_per_destination},
            {"connection_cache_time", detail::format_duration(c.connection_cache_time)},
            {"protocol_logging", name_of(detail::protocol_logging_names, c.logging)}};
}

json document(const configuration& c) {
    json doc = json::object();
    doc["server"] = server_json(c.server);
    doc["tls"] = tls_json(c.tls);
    doc["receive_connector"] = list(c.receive_connectors, receive_json);
    doc["send_connector"] = list(c.send_connectors, send_json);
    doc["accepted_domain"] = list(c.accepted_domains, [](const accepted_domain& d) -> json {
        return {{"name", d.name},
                {"type", name_of(detail::accepted_domain_type_names, d.type)},
                {"recipients", d.recipients_file.string()},
                {"recipients_ldap", d.recipients_ldap}};
    });
    doc["ldap_source"] = list(c.ldap_sources, [](const ldap_source& l) -> json {
        return {{"name", l.name},
                {"uri", l.uri},
                {"ca_file", l.ca_file.string()},
                {"bind_dn", l.bind_dn},
                {"bind_password_file", l.bind_password_file.string()},
                {"base", l.base},
                {"filter", l.filter},
                {"attributes", l.attributes},
                {"timeout", detail::format_duration(l.timeout)},
                {"positive_ttl", detail::format_duration(l.positive_ttl)},
                {"negative_ttl", detail::format_duration(l.negative_ttl)},
                {"max_stale", detail::format_duration(l.max_stale)},
                {"connections", l.connections}};
    });
    doc["queue"] = {{"retry", list(c.queue.retry, [](seconds s) { return detail::format_duration(s); })},
                    {"expire", detail::format_duration(c.queue.expire)},
                    {"delay_notice", detail::format_duration(c.queue.delay_notice)},
                    {"min_free", detail::format_size(c.queue.min_free)},
                    {"bounce_size_limit", detail::format_size(c.queue.bounce_size_limit)},
                    {"double_bounce_recipient", c.queue.double_bounce_recipient}};
    doc["dns"] = {{"resolver", c.dns.resolver},
                  {"unbound_config", c.dns.unbound_config.string()},
                  {"mx_port", c.dns.mx_port},
                  {"mta_sts_port", c.dns.mta_sts_port}};
    doc["tls_rpt"] = {{"enabled", c.tls_rpt.enabled},
                      {"organization_name", c.tls_rpt.organization_name},
                      {"contact_info", c.tls_rpt.contact_info},
                      {"submitter", c.tls_rpt.submitter},
                      {"from_address", c.tls_rpt.from_address}};
    doc["log"] = {{"dir", c.log.dir.string()},
                  {"max_age", detail::format_duration(c.log.max_age)},
                  {"max_size", detail::format_size(c.log.max_size)}};
    doc["metrics"] = {{"listen", c.metrics.listen}};
    doc["debug"] = {{"smtp_server_debug", c.debug.smtp_server_debug},
                    {"smtp_client_debug", c.debug.smtp_client_debug},
                    {"smtp_io_trace", c.debug.smtp_io_trace},
                    {"save_outbound_dir", c.debug.save_outbound_dir.string()},
                    {"trace_tls_handshake", c.debug.trace_tls_handshake},
                    {"report_tls_handshake_errors", c.debug.report_tls_handshake_errors}};
    return doc;
}

bool is_connector_section(std::string_view s) {
    return s == "receive_connector" || s == "send_connector" || s == "accepted_domain" || s == "ldap_source";
}

json only_fields(const json& table, const std::vector<std::string>& fields, bool keep_name) {
    json out = json::object();
    for (auto it = table.begin(); it != table.end(); ++it) {
        bool wanted = std::find(fields.begin(), fields.end(), it.key()) != fields.end() ||
                      (keep_name && it.key() == "name");
        if (wanted) out[it.key()] = it.value();
    }
    return out;
}

json filtered(const json& doc, const show_filter& filter) {
    if (!filter.section.empty() && !doc.contains(filter.section))
        throw std::invalid_argument(fmt::format("unknown section \"{}\"; sections are {}", filter.section,
                                                fmt::join(section_names(), ", ")));
    if (!filter.name.empty() && !is_connector_section(filter.section))
        throw std::invalid_argument(
            fmt::format("a NAME selects a connector: use it after receive_connector or send_connector"));

    std::set<std::string> known_fields;
    json out = json::object();
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        const std::string& section = it.key();
        if (!filter.section.empty() && section != filter.section) continue;
        if (is_connector_section(section)) {
            json connectors = json::array();
            bool found = false;
            for (const auto& c : it.value()) {
                if (!filter.name.empty() && c["name"] != filter.name) continue;
                found = true;
                for (auto f = c.begin(); f != c.end(); ++f) known_fields.insert(f.key());
                connectors.push_back(filter.fields.empty() ? c : only_fields(c, filter.fields, true));
            }
            if (!filter.name.empty() && !found)
                throw std::invalid_argument(fmt::format("no {} is named \"{}\"", section, filter.name));
            if (!connectors.empty()) out[section] = std::move(connectors);
        } else {
            for (auto f = it.value().begin(); f != it.value().end(); ++f) known_fields.insert(f.key());
            json table = filter.fields.empty() ? it.value() : only_fields(it.value(), filter.fields, false);
            if (!table.empty()) out[section] = std::move(table);
        }
    }
    for (const auto& f : filter.fields)
        if (!known_fields.count(f))
            throw std::invalid_argument(
                fmt::format("unknown field \"{}\"{}", f,
                            filter.section.empty() ? std::string() : fmt::format(" in [{}]", filter.section)));
    return out;
}

}  // namespace

// TOML basic string (TOML 1.0 §String): escapes for quote, backslash and control bytes.
std::string detail::toml_string(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\t': out += "\\t"; break;
            case '\n': out += "\\n"; break;
            case '\f': out += "\\f"; break;
            case '\r': out += "\\r"; break;
            default:
                if (c < 0x20 || c == 0x7F) out += fmt::format("\\u{:04X}", c);
                else out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

namespace {

std::string toml_value(const json& v) {
    switch (v.type()) {
        case json::value_t::string: return detail::toml_string(v.get<std::string>());
        case json::value_t::boolean: return v.get<bool>() ? "true" : "false";
        case json::value_t::number_unsigned: return std::to_string(v.get<std::uint64_t>());
        case json::value_t::number_integer: return std::to_string(v.get<std::int64_t>());
        case json::value_t::array: {
            std::string out = "[";
            for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + toml_value(v[i]);
            return out + "]";
        }
        default: throw std::logic_error("config show: no TOML form for this value");
    }
}

void toml_table(std::string& out, const json& table) {
    for (auto it = table.begin(); it != table.end(); ++it) out += fmt::format("{} = {}\n", it.key(), toml_value(it.value()));
}

std::string to_toml(const json& doc) {
    std::string out;
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        if (it.value().is_array()) {
            for (const auto& element : it.value()) {
                if (!out.empty()) out += "\n";
                out += fmt::format("[[{}]]\n", it.key());
                toml_table(out, element);
            }
        } else {
            if (!out.empty()) out += "\n";
            out += fmt::format("[{}]\n", it.key());
            toml_table(out, it.value());
        }
    }
    return out;
}

}  // namespace

const std::vector<std::string>& section_names() {
    static const std::vector<std::string> names = {"server", "tls",   "receive_connector", "send_connector",
                                                   "accepted_domain", "ldap_source", "queue", "dns", "log",
                                                   "metrics", "debug"};
    return names;
}

std::string show(const configuration& config, const show_filter& filter, show_format format) {
    json doc = filtered(document(config), filter);
    if (format == show_format::json) return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    return to_toml(doc);
}

}  // namespace postern::config
