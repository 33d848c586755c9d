// config/load.cpp: TOML -> configuration (DESIGN.md §3).
//
// Every key is read through table_reader, which records the key's line, checks its type
// and marks it as known; whatever is left unread in a table is an unknown key, which is
// an error (a misspelt "requre_tls" must never silently mean "no TLS required").
// Cross-key rules live in validate.cpp; they run once the file has loaded cleanly.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "config/detail.hpp"

namespace postern::config {

namespace {

using detail::diagnostics;
using detail::enum_name;
using detail::source_lines;

std::string_view type_name(toml::node_type t) {
    switch (t) {
        case toml::node_type::string: return "a string";
        case toml::node_type::integer: return "an integer";
        case toml::node_type::floating_point: return "a number with a fraction";
        case toml::node_type::boolean: return "true or false";
        case toml::node_type::array: return "an array";
        case toml::node_type::table: return "a table";
        case toml::node_type::date: return "a date";
        case toml::node_type::time: return "a time";
        case toml::node_type::date_time: return "a date-time";
        default: return "nothing";
    }
}

std::uint32_t line_of(const toml::node& n) { return n.source().begin.line; }

// Reads the keys of one TOML table into typed fields. Missing keys keep the field's
// default; present keys of the wrong type or value are errors naming the key's line.
class table_reader {
public:
    table_reader(const toml::table& table, std::string prefix, diagnostics& out, source_lines& lines)
        : table_(table), prefix_(std::move(prefix)), out_(out), lines_(lines) {
        lines_.record(prefix_, line_of(table_));
        for (auto&& [key, node] : table_) lines_.record(dotted(key.str()), key.source().begin.line);
    }

    std::string dotted(std::string_view key) const { return fmt::format("{}.{}", prefix_, key); }
    bool has(std::string_view key) const { return table_.contains(key); }
    std::uint32_t line() const { return line_of(table_); }

    void text(std::string_view key, std::string& out) {
        if (auto* n = take(key, toml::node_type::string)) out = *n->value<std::string>();
    }

    void path(std::string_view key, std::filesystem::path& out) {
        if (auto* n = take(key, toml::node_type::string)) out = *n->value<std::string>();
    }

    void flag(std::string_view key, bool& out) {
        if (auto* n = take(key, toml::node_type::boolean)) out = *n->value<bool>();
    }

    template <class Unsigned>
    void count(std::string_view key, Unsigned& out, bool zero_allowed = false) {
        auto* n = take(key, toml::node_type::integer);
        if (!n) return;
        std::int64_t v = *n->value<std::int64_t>();
        constexpr auto max = static_cast<std::int64_t>(std::numeric_limits<Unsigned>::max());
        if (v < 0) return fail(key, *n, "must not be negative");
        if (v > max) return fail(key, *n, fmt::format("is too large (at most {})", max));
        if (v == 0 && !zero_allowed) return fail(key, *n, "must be greater than 0");
        out = static_cast<Unsigned>(v);
    }

    void size(std::string_view key, std::uint64_t& out, bool zero_allowed = false) {
        const toml::node* n = get(key);
        if (!n) return;
        seen_.insert(std::string(key));
        std::optional<std::uint64_t> octets;
        if (auto i = n->value_exact<std::int64_t>()) {
            if (*i < 0) return fail(key, *n, "must not be negative");
            octets = static_cast<std::uint64_t>(*i);
        } else if (auto s = n->value_exact<std::string>()) {
            octets = parse_size(*s);
            if (!octets)
                return fail(key, *n, fmt::format("\"{}\" is not a size; write e.g. \"35MB\" (KB, MB, GB are powers of 1024)", *s));
        } else {
            return wrong_type(key, *n, "a size such as \"35MB\"");
        }
        if (*octets == 0 && !zero_allowed) return fail(key, *n, "must be greater than 0");
        out = *octets;
    }

    void duration(std::string_view key, seconds& out, bool zero_allowed = false) {
        if (auto* n = take(key, toml::node_type::string, "a duration such as \"30s\", \"5m\", \"4h\" or \"2d\""))
            read_duration(key, *n, out, zero_allowed);
    }

    void durations(std::string_view key, std::vector<seconds>& out) {
        auto* array = take_array(key);
        if (!array) return;
        std::vector<seconds> values;
        for (const auto& element : *array) {
            seconds value{};
            if (!element.is_string()) return wrong_type(key, element, "a duration such as \"5m\"");
            if (!read_duration(key, element, value, false)) return;
            values.push_back(value);
        }
        if (values.empty()) return fail(key, *array, "needs at least one interval");
        out = std::move(values);
    }

    void strings(std::string_view key, std::vector<std::string>& out) {
        auto* array = take_array(key);
        if (!array) return;
        std::vector<std::string> values;
        for (const auto& element : *array) {
            auto s = element.value_exact<std::string>();
            if (!s) return wrong_type(key, element, "a string");
            values.push_back(*s);
        }
        out = std::move(values);
    }

    template <class E, std::size_t N>
    void choice(std::string_view key, E& out, const enum_name<E> (&names)[N]) {
        auto* n = take(key, toml::node_type::string);
        if (!n) return;
        if (auto v = lookup(key, *n, names)) out = *v;
    }

    template <class E, std::size_t N>
    void choices(std::string_view key, std::vector<E>& out, const enum_name<E> (&names)[N]) {
        auto* array = take_array(key);
        if (!array) return;
        std::vector<E> values;
        for (const auto& element : *array) {
            if (!element.is_string()) return wrong_type(key, element, "a string");
            auto v = lookup(key, element, names);
            if (!v) return;
            if (std::find(values.begin(), values.end(), *v) == values.end()) values.push_back(*v);
        }
        out = std::move(values);
    }

    void endpoints(std::string_view key, std::vector<endpoint>& out, detail::host_kind kind,
                   std::uint16_t default_port) {
        auto* array = take_array(key);
        if (!array) return;
        std::vector<endpoint> values;
        for (const auto& element : *array) {
            auto s = element.value_exact<std::string>();
            if (!s) return wrong_type(key, element, "a string such as \"127.0.0.1:25\"");
            std::string why;
            auto e = detail::parse_endpoint(*s, kind, default_port, why);
            if (!e) return fail(key, element, why);
            values.push_back(std::move(*e));
        }
        out = std::move(values);
    }

    void ranges(std::string_view key, std::vector<ip_range>& out) {
        auto* array = take_array(key);
        if (!array) return;
        std::vector<ip_range> values;
        for (const auto& element : *array) {
            auto s = element.value_exact<std::string>();
            if (!s) return wrong_type(key, element, "a string such as \"192.0.2.0/24\"");
            std::string why;
            auto r = detail::parse_ip_range(*s, why);
            if (!r) return fail(key, element, why);
            values.push_back(std::move(*r));
        }
        if (values.empty()) return fail(key, *array, "is empty: no client could ever use this connector");
        out = std::move(values);
    }

    void fingerprints(std::string_view key, std::vector<std::string>& out) {
        auto* array = take_array(key);
        if (!array) return;
        std::vector<std::string> values;
        for (const auto& element : *array) {
            auto s = element.value_exact<std::string>();
            if (!s) return wrong_type(key, element, "a string \"sha256:<hex>\"");
            std::string why;
            auto fp = detail::normalise_fingerprint(*s, why);
            if (!fp) return fail(key, element, why);
            values.push_back(std::move(*fp));
        }
        out = std::move(values);
    }

    /// A key that must be present; reports it on the table's line when it is not.
    bool require(std::string_view key) {
        known_.emplace(key);
        if (table_.contains(key)) return true;
        out_.error(dotted(key), line(), "is required");
        return false;
    }

    void fail(std::string_view key, const toml::node& n, std::string message) {
        out_.error(dotted(key), line_of(n), std::move(message));
    }

    /// Every key that no read above asked for is unknown.
    void finish() {
        for (auto&& [key, node] : table_) {
            if (seen_.count(std::string(key.str()))) continue;
            std::string message = node.is_table() ? "unknown table" : "unknown key";
            const auto guess = detail::closest_word(key.str(), {known_.begin(), known_.end()});
            if (!guess.empty()) message += fmt::format("; did you mean \"{}\"?", guess);
            out_.error(dotted(key.str()), key.source().begin.line, std::move(message));
        }
    }

private:
    /// The key's node, or null; either way the key is one this table knows ("did you mean").
    const toml::node* get(std::string_view key) {
        known_.emplace(key);
        return table_.get(key);
    }

    const toml::node* take(std::string_view key, toml::node_type type, std::string_view expected = {}) {
        const toml::node* n = get(key);
        if (!n) return nullptr;
        seen_.insert(std::string(key));
        if (n->type() != type) {
            wrong_type(key, *n, expected.empty() ? type_name(type) : expected);
            return nullptr;
        }
        return n;
    }

    const toml::array* take_array(std::string_view key) {
        auto* n = take(key, toml::node_type::array);
        return n ? n->as_array() : nullptr;
    }

    void wrong_type(std::string_view key, const toml::node& n, std::string_view expected) {
        fail(key, n, fmt::format("expected {}, found {}", expected, type_name(n.type())));
    }

    bool read_duration(std::string_view key, const toml::node& n, seconds& out, bool zero_allowed) {
        std::string text = *n.value<std::string>();
        auto d = parse_duration(text);
        if (!d) {
            fail(key, n, fmt::format("\"{}\" is not a duration; write e.g. \"30s\", \"5m\", \"4h\" or \"2d\"", text));
            return false;
        }
        if (d->count() == 0 && !zero_allowed) {
            fail(key, n, "must be longer than 0s");
            return false;
        }
        out = *d;
        return true;
    }

    template <class E, std::size_t N>
    std::optional<E> lookup(std::string_view key, const toml::node& n, const enum_name<E> (&names)[N]) {
        std::string text = *n.value<std::string>();
        std::string allowed;
        for (const auto& name : names) {
            if (name.name == text) return name.value;
            allowed += fmt::format("{}\"{}\"", allowed.empty() ? "" : ", ", name.name);
        }
        fail(key, n, fmt::format("\"{}\" is not one of {}", text, allowed));
        return std::nullopt;
    }

    const toml::table& table_;
    std::string prefix_;
    diagnostics& out_;
    source_lines& lines_;
    std::set<std::string, std::less<>> seen_;
    std::set<std::string, std::less<>> known_;   // every key a read asked for, present or not
};

void read_server(table_reader& r, server_section& s) {
    r.text("hostname", s.hostname);
    r.path("data_dir", s.data_dir);
    r.path("control_socket", s.control_socket);
    r.strings("accepted_domains", s.accepted_domains);
    r.text("user", s.user);
    r.count("max_inbound_connections", s.max_inbound_connections);
    r.count("max_connections_per_source", s.max_connections_per_source);
    r.count("max_outbound_connections", s.max_outbound_connections);
    r.duration("shutdown_timeout", s.shutdown_timeout, /*zero_allowed=*/true);
}

void read_tls(table_reader& r, tls_section& t) {
    r.path("keyring", t.keyring);
    r.path("stash", t.stash);
    r.text("certificate", t.certificate);
    r.text("min_version", t.min_version);
    r.text("ciphers", t.ciphers);
    r.text("ciphersuites", t.ciphersuites);
    r.count("session_cache_size", t.session_cache_size);
}

void read_receive_connector(table_reader& r, receive_connector& c) {
    r.require("name");
    r.require("bind");
    r.text("name", c.name);
    r.endpoints("bind", c.bind, detail::host_kind::ip_address, 0);
    r.ranges("remote_ip_ranges", c.remote_ip_ranges);
    r.choice("tls", c.tls, detail::tls_mode_names);
    r.flag("require_tls", c.require_tls);
    // The default ["tls"] only means something when TLS is offered; with tls = "none"
    // an unwritten auth_mechanisms is empty rather than an error the user never wrote.
    if (c.tls == tls_mode::none && !r.has("auth_mechanisms")) c.auth_mechanisms.clear();
    r.choices("auth_mechanisms", c.auth_mechanisms, detail::auth_mechanism_names);
    r.strings("partner_names", c.partner_names);
    r.fingerprints("partner_fingerprints", c.partner_fingerprints);
    r.strings("trusted_roots", c.trusted_roots);
    r.choices("permission_groups", c.permission_groups, detail::permission_group_names);
    r.flag("accept_any_recipient", c.accept_any_recipient);
    r.size("max_message_size", c.max_message_size);
    r.count("max_recipients", c.max_recipients);
    r.size("max_header_size", c.max_header_size);
    r.count("max_hop_count", c.max_hop_count);
    r.count("max_inbound_connections_per_source", c.max_inbound_connections_per_source);
    r.count("max_protocol_errors", c.max_protocol_errors);
    r.count("max_junk_commands", c.max_junk_commands);
    r.flag("allow_untrusted_routing", c.allow_untrusted_routing);
    r.duration("connection_timeout", c.connection_timeout);
    r.duration("connection_inactivity_timeout", c.connection_inactivity_timeout);
    r.choice("protocol_logging", c.logging, detail::protocol_logging_names);
}

void read_send_connector(table_reader& r, send_connector& c) {
    r.require("name");
    if (!r.has("recipients") && !r.has("recipients_ldap")) r.require("address_spaces");   // a list alone is enough
    r.path("recipients", c.recipients_file);
    r.text("recipients_ldap", c.recipients_ldap);
    r.text("name", c.name);
    r.strings("address_spaces", c.address_spaces);
    r.choice("smart_host_tls", c.smart_host_tls_mode, detail::smart_host_tls_names);
    // A smart host written without a port gets the port of its TLS mode.
    std::uint16_t default_port = c.smart_host_tls_mode == smart_host_tls::implicit ? 465 : 25;
    r.endpoints("smart_hosts", c.smart_hosts, detail::host_kind::ip_or_name, default_port);
    r.flag("require_tls", c.require_tls);
    r.choice("tls_auth_level", c.auth_level, detail::tls_auth_level_names);
    r.text("tls_domain", c.tls_domain);
    r.flag("ignore_starttls", c.ignore_starttls);
    r.choice("dane", c.dane, detail::dane_mode_names);
    r.flag("mta_sts", c.mta_sts);
    r.choice("downgrade_protection", c.downgrades, detail::downgrade_protection_names);
    r.text("client_certificate", c.client_certificate);
    r.strings("trusted_roots", c.trusted_roots);
    r.flag("trust_system_store", c.trust_system_store);
    r.count("max_per_destination", c.max_per_destination);
    r.duration("connection_cache_time", c.connection_cache_time, /*zero_allowed=*/true);
    r.choice("protocol_logging", c.logging, detail::protocol_logging_names);
}

void read_accepted_domain(table_reader& r, accepted_domain& d) {
    r.require("name");
    r.text("name", d.name);
    r.choice("type", d.type, detail::accepted_domain_type_names);
    r.path("recipients", d.recipients_file);
    r.text("recipients_ldap", d.recipients_ldap);
}

void read_ldap_source(table_reader& r, ldap_source& l) {
    r.require("name");
    r.require("uri");
    r.require("base");
    r.text("name", l.name);
    r.text("uri", l.uri);
    r.path("ca_file", l.ca_file);
    r.text("bind_dn", l.bind_dn);
    r.path("bind_password_file", l.bind_password_file);
    r.text("base", l.base);
    r.text("filter", l.filter);
    r.strings("attributes", l.attributes);
    r.duration("timeout", l.timeout);
    r.duration("positive_ttl", l.positive_ttl);
    r.duration("negative_ttl", l.negative_ttl);
    r.duration("max_stale", l.max_stale, /*zero_allowed=*/true);
    r.count("connections", l.connections);
}

void read_queue(table_reader& r, queue_section& q) {
    r.durations("retry", q.retry);
    r.duration("expire", q.expire);
    r.duration("delay_notice", q.delay_notice);
    r.size("min_free", q.min_free, /*zero_allowed=*/true);
    r.size("bounce_size_limit", q.bounce_size_limit);
    r.text("double_bounce_recipient", q.double_bounce_recipient);
}

void read_dns(table_reader& r, dns_section& d) {
    r.text("resolver", d.resolver);
    r.path("unbound_config", d.unbound_config);
    r.count("mx_port", d.mx_port);
    r.count("mta_sts_port", d.mta_sts_port);
}

void read_tls_rpt(table_reader& r, tls_rpt_section& t) {
    r.flag("enabled", t.enabled);
    r.text("organization_name", t.organization_name);
    r.text("contact_info", t.contact_info);
    r.text("submitter", t.submitter);
    r.text("from_address", t.from_address);
}

void read_log(table_reader& r, log_section& l) {
    r.path("dir", l.dir);
    r.duration("max_age", l.max_age);
    r.size("max_size", l.max_size);
}

void read_metrics(table_reader& r, metrics_section& m) { r.text("listen", m.listen); }

void read_debug(table_reader& r, debug_section& d) {
    r.flag("smtp_server_debug", d.smtp_server_debug);
    r.flag("smtp_client_debug", d.smtp_client_debug);
    r.flag("smtp_io_trace", d.smtp_io_trace);
    r.path("save_outbound_dir", d.save_outbound_dir);
    r.flag("trace_tls_handshake", d.trace_tls_handshake);
    r.flag("report_tls_handshake_errors", d.report_tls_handshake_errors);
}

template <class Section>
void read_section(const toml::table& root, std::string_view name, Section& section,
                  void (*read)(table_reader&, Section&), diagnostics& out, source_lines& lines) {
    const toml::node* n = root.get(name);
    if (!n) return;
    const toml::table* table = n->as_table();
    if (!table) {
        out.error(std::string(name), line_of(*n),
                  fmt::format("expected a table [{}], found {}", name, type_name(n->type())));
        return;
    }
    table_reader r(*table, std::string(name), out, lines);
    read(r, section);
    r.finish();
}

template <class Connector>
void read_connectors(const toml::table& root, std::string_view kind, std::vector<Connector>& connectors,
                     void (*read)(table_reader&, Connector&), diagnostics& out, source_lines& lines) {
    const toml::node* n = root.get(kind);
    if (!n) return;
    const toml::array* array = n->as_array();
    if (!array || !array->is_array_of_tables()) {
        out.error(std::string(kind), line_of(*n), fmt::format("write each one as a [[{}]] table", kind));
        return;
    }
    for (const auto& element : *array) {
        table_reader r(*element.as_table(), detail::connector_key(kind, connectors.size()), out, lines);
        Connector c;
        read(r, c);
        r.finish();
        connectors.push_back(std::move(c));
    }
}

// Relative paths for files Postern owns live under data_dir (DESIGN.md §3).
void resolve(std::filesystem::path& p, const std::filesystem::path& data_dir) {
    if (!p.empty() && p.is_relative()) p = data_dir / p;
}

void fill_defaults(configuration& c) {
    if (c.server.hostname.empty()) c.server.hostname = detail::system_fqdn();
    // A relative data_dir means the working directory, as for any process; it is made
    // explicit so that the paths under it (and `config show`) do not depend on it later.
    if (!c.server.data_dir.empty() && c.server.data_dir.is_relative())
        c.server.data_dir = std::filesystem::absolute(c.server.data_dir).lexically_normal();
    if (c.server.control_socket.empty()) c.server.control_socket = "control.sock";
    resolve(c.server.control_socket, c.server.data_dir);
    if (c.tls_rpt.organization_name.empty()) c.tls_rpt.organization_name = c.server.hostname;
    if (c.tls_rpt.submitter.empty()) c.tls_rpt.submitter = c.server.hostname;
    if (c.tls_rpt.from_address.empty()) c.tls_rpt.from_address = "noreply-tls-reports@" + c.tls_rpt.submitter;
    resolve(c.tls.keyring, c.server.data_dir);
    resolve(c.tls.stash, c.server.data_dir);
    resolve(c.log.dir, c.server.data_dir);
    resolve(c.debug.save_outbound_dir, c.server.data_dir);
    // Files an [[ldap_source]] names sit beside the configuration, as recipient lists do.
    for (auto& l : c.ldap_sources)
        for (auto* p : {&l.ca_file, &l.bind_password_file})
            if (!p->empty() && p->is_relative()) *p = c.file.parent_path() / *p;
    for (auto& rc : c.receive_connectors)
        if (rc.remote_ip_ranges.empty()) {
            std::string why;
            rc.remote_ip_ranges.push_back(*detail::parse_ip_range("0.0.0.0/0", why));
            rc.remote_ip_ranges.push_back(*detail::parse_ip_range("::/0", why));
        }
}

}  // namespace

load_result load_string(std::string_view toml_text, const std::filesystem::path& file_name, bool with_lists) {
    load_result result;
    diagnostics out(file_name);
    source_lines lines;
    toml::table root;
    try {
        root = toml::parse(toml_text, std::string_view(file_name.string()));
    } catch (const toml::parse_error& e) {
        out.error({}, e.source().begin.line, std::string(e.description()));
        result.errors = std::move(out.errors);
        return result;
    }

    configuration config;
    config.file = file_name;
    read_section(root, "server", config.server, &read_server, out, lines);
    read_section(root, "tls", config.tls, &read_tls, out, lines);
    read_connectors(root, "receive_connector", config.receive_connectors, &read_receive_connector, out, lines);
    read_connectors(root, "send_connector", config.send_connectors, &read_send_connector, out, lines);
    read_connectors(root, "accepted_domain", config.accepted_domains, &read_accepted_domain, out, lines);
    read_connectors(root, "ldap_source", config.ldap_sources, &read_ldap_source, out, lines);
    read_section(root, "queue", config.queue, &read_queue, out, lines);
    read_section(root, "dns", config.dns, &read_dns, out, lines);
    read_section(root, "tls_rpt", config.tls_rpt, &read_tls_rpt, out, lines);
    read_section(root, "log", config.log, &read_log, out, lines);
    read_section(root, "metrics", config.metrics, &read_metrics, out, lines);
    read_section(root, "debug", config.debug, &read_debug, out, lines);

    static const std::set<std::string, std::less<>> known = {
        "server", "tls", "receive_connector", "send_connector", "accepted_domain", "ldap_source", "queue", "dns",
        "tls_rpt", "log", "metrics", "debug"};
    for (auto&& [key, node] : root)
        if (!known.count(key.str())) {
            std::string message = node.is_table() || node.is_array_of_tables() ? "unknown table" : "unknown key";
            const auto guess = detail::closest_word(key.str(), {known.begin(), known.end()});
            if (!guess.empty()) message += fmt::format("; did you mean \"{}\"?", guess);
            out.error(std::string(key.str()), key.source().begin.line, std::move(message));
        }

    // Cross-key rules only make sense once every single value has been understood;
    // otherwise one typo would be reported again as a string of follow-on errors.
    if (out.errors.empty()) {
        fill_defaults(config);
        detail::validate(config, lines, out);
        if (out.errors.empty() && with_lists) detail::load_recipient_lists(config, lines, out);
    }
    result.errors = std::move(out.errors);
    result.warnings = std::move(out.warnings);
    name_connectors(config, result.errors);
    name_connectors(config, result.warnings);
    result.lines = std::move(lines);
    if (result.errors.empty()) result.config = std::move(config);
    return result;
}

load_result load_file(const std::filesystem::path& file, bool with_lists) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        load_result result;
        result.errors.push_back({diagnostic::severity::error, file, 0, {},
                                 fmt::format("cannot read the file: {}", std::strerror(errno)), {}});
        return result;
    }
    std::ostringstream text;
    text << in.rdbuf();
    return load_string(text.str(), file, with_lists);
}

}  // namespace postern::config
