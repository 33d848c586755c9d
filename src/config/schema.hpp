// config/schema.hpp: the typed configuration, one struct per TOML table of DESIGN.md §3.
//
// Every default here is the default of the contract; config/load.cpp fills these from
// a TOML file and config/validate.cpp refuses impossible or weak combinations.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "config/address_lookup.hpp"
#include "config/recipient_list.hpp"

namespace postern::config {

using seconds = std::chrono::seconds;

/// A CIDR range such as "192.0.2.0/24" or "::/0". IPv4-mapped IPv6 addresses match as IPv4.
struct ip_range {
    boost::asio::ip::address network;
    unsigned prefix_length = 0;
    std::string text;                                   // as written in the file
    bool contains(const boost::asio::ip::address& a) const;
    bool is_everything() const { return prefix_length == 0; }   // 0.0.0.0/0 or ::/0
};

/// "127.0.0.1:2525" or "[::1]:2525". Port 0 = any free port.
struct endpoint {
    std::string host;
    std::uint16_t port = 0;
    std::string text;
};

enum class tls_mode { starttls, implicit, none };
enum class auth_mechanism { tls, mutual_tls };
enum class permission_group { anonymous_users, partners };
enum class tls_auth_level { encryption_only, certificate_validation, domain_validation };
enum class smart_host_tls { starttls, implicit };
enum class protocol_logging { verbose, none };
/// DANE (RFC 7672) for connectors that route by MX: off; opportunistic (TLSA records
/// published on DNSSEC-secure hosts are enforced); required (only DANE-authenticated
/// hosts; others defer). Not yet a key of the file: delivery does not apply it yet.
enum class dane_mode { off, opportunistic, required };
enum class downgrade_protection { off, report, enforce };

struct server_section {
    std::string hostname;                               // default: the system's FQDN
    std::filesystem::path data_dir = "/var/lib/postern";
    std::filesystem::path control_socket;               // default: <data_dir>/control.sock
    std::vector<std::string> accepted_domains;
    std::string user;
    std::uint32_t max_inbound_connections = 1000;         // every session, on every bind
    /// Sessions from one address (IPv6: one /64) on every bind together, connectors or not.
    std::uint32_t max_connections_per_source = 50;
    std::uint32_t max_outbound_connections = 100;
    seconds shutdown_timeout{30};
};

struct tls_section {
    std::filesystem::path keyring = "keyring.p12";      // resolved against data_dir by the loader
    std::filesystem::path stash = "keyring.sth";        // resolved against data_dir by the loader
    std::string certificate;                            // label; "" = the only one
    std::string min_version = "1.2";
    std::string ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20";
    std::string ciphersuites =
        "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
    std::uint32_t session_cache_size = 8192;
};

struct receive_connector {
    std::string name;
    std::vector<endpoint> bind;
    std::vector<ip_range> remote_ip_ranges;             // default: 0.0.0.0/0 and ::/0
    tls_mode tls = tls_mode::starttls;
    bool require_tls = false;
    std::vector<auth_mechanism> auth_mechanisms{auth_mechanism::tls};
    std::vector<std::string> partner_names;
    std::vector<std::string> partner_fingerprints;      // normalised: lower-case hex, no colons
    /// Key ring labels of the roots (and pinned peers) that verify client certificates
    /// here; empty: every root of the key ring and no pinned peer.
    std::vector<std::string> trusted_roots;
    std::vector<permission_group> permission_groups{permission_group::anonymous_users};
    bool accept_any_recipient = false;
    std::uint64_t max_message_size = 35ull * 1024 * 1024;
    std::uint32_t max_recipients = 200;
    std::uint64_t max_header_size = 256ull * 1024;
    std::uint32_t max_hop_count = 50;
    std::uint32_t max_inbound_connections_per_source = 20;
    std::uint32_t max_protocol_errors = 5;
    std::uint32_t max_junk_commands = 100;
    bool allow_untrusted_routing = false;
    seconds connection_timeout{600};
    seconds connection_inactivity_timeout{300};
    protocol_logging logging = protocol_logging::verbose;   // key: protocol_logging

    bool mutual_tls() const;
};

struct send_connector {
    std::string name;
    std::vector<std::string> address_spaces;
    std::vector<endpoint> smart_hosts;
    smart_host_tls smart_host_tls_mode = smart_host_tls::starttls;   // key: smart_host_tls
    bool require_tls = false;
    tls_auth_level auth_level = tls_auth_level::encryption_only;     // key: tls_auth_level
    std::string tls_domain;
    bool ignore_starttls = false;
    /// DANE for next hops found by MX (RFC 7672; no effect with smart_hosts). Without a
    /// DNSSEC trust anchor in [dns] unbound_config it cannot apply (preflight warns).
    dane_mode dane = dane_mode::opportunistic;
    /// MTA-STS (RFC 8461) for next hops found by MX: honour the policies domains publish.
    bool mta_sts = true;
    /// A domain once reached with DANE or MTA-STS that now offers less: delivered and
    /// reported, deferred, or not looked at (DESIGN §3 downgrade memory).
    downgrade_protection downgrades = downgrade_protection::report;   // key: downgrade_protection
    std::string client_certificate;
    bool trust_system_store = false;
    /// Key ring labels of the roots (and pinned peers) that verify next hops here; empty:
    /// every root of the key ring and no pinned peer.
    std::vector<std::string> trusted_roots;
    /// Key `recipients`: a file of addresses that take this connector ahead of any
    /// address_spaces match (relative: to the configuration file's directory).
    std::filesystem::path recipients_file;
    std::shared_ptr<const recipient_list> recipients;   // loaded with the configuration
    /// Key `recipients_ldap`: the [[ldap_source]] whose answers take this connector (after
    /// the file list, ahead of address_spaces).
    std::string recipients_ldap;
    std::uint32_t max_per_destination = 10;
    /// An idle connection waits this long for more mail to the same next hop before QUIT
    /// (Postfix: smtp_connection_cache_time_limit); 0 = QUIT at once.
    seconds connection_cache_time{2};
    protocol_logging logging = protocol_logging::verbose;            // key: protocol_logging
};

/// [[accepted_domain]]: a domain that is ours, with Exchange's two types.
enum class accepted_domain_type {
    internal_relay,   // every recipient accepted and routed (what accepted_domains = [...] means)
    authoritative,    // only listed recipients; others get 550 5.1.1 at RCPT
};

struct accepted_domain {
    std::string name;
    accepted_domain_type type = accepted_domain_type::internal_relay;
    std::filesystem::path recipients_file;               // relative: to the configuration file's directory
    std::shared_ptr<const recipient_list> recipients;    // loaded with the configuration
    std::string recipients_ldap;                         // or: the [[ldap_source]] that knows them
};

/// [[ldap_source]]: a directory (Active Directory, Domino, OpenLDAP) that says whether an
/// address exists; [[accepted_domain]] and [[send_connector]] name it in recipients_ldap.
struct ldap_source {
    std::string name;
    std::string uri;                                     // ldap://host[:port] (StartTLS required) or ldaps://
    std::filesystem::path ca_file;                       // roots for the server's certificate; empty: system store
    std::string bind_dn;                                 // empty: anonymous bind
    std::filesystem::path bind_password_file;            // first line is the password; relative: config dir
    std::string base;
    /// %s the address, %u its local part, %d its domain, each escaped per RFC 4515; %% a %.
    std::string filter = "(mail=%s)";
    /// Values compared with the address (case ignored; an "smtp:" prefix is dropped).
    std::vector<std::string> attributes{"mail"};
    seconds timeout{5};                                  // connect, StartTLS, bind, and each search
    seconds positive_ttl{std::chrono::minutes(10)};
    seconds negative_ttl{std::chrono::minutes(1)};
    /// While the directory cannot answer, a cached answer is used until it is this old.
    seconds max_stale{std::chrono::hours(4)};
    std::uint32_t connections = 2;
    /// Attached after loading by the server (directory room); null in a file only read.
    std::shared_ptr<address_lookup> lookup;
    /// Whether two sources are the same directory asked the same way (reload keeps its cache).
    bool same_settings(const ldap_source& other) const;
};

struct queue_section {
    std::vector<seconds> retry{std::chrono::minutes(1), std::chrono::minutes(5),
                               std::chrono::minutes(15), std::chrono::minutes(30),
                               std::chrono::hours(1)};
    seconds expire = std::chrono::hours(48);
    seconds delay_notice = std::chrono::hours(4);
    std::uint64_t min_free = 1024ull * 1024 * 1024;
    /// The most of an original that a DSN returns (Postfix: bounce_size_limit): a larger
    /// message goes back as its header section alone, and that is cut at this size too.
    std::uint64_t bounce_size_limit = 50 * 1024;
    /// Where a bounce that cannot be delivered goes (Postfix: double_bounce_sender's mail to
    /// postmaster); "" = nowhere, only the warning in the server log.
    std::string double_bounce_recipient;
};

struct dns_section {
    std::string resolver;
    std::filesystem::path unbound_config;
    std::uint16_t mx_port = 25;
    std::uint16_t mta_sts_port = 443;                   // where MTA-STS policy hosts are asked (tests move it)
};

/// TLS-RPT reports sent (RFC 8460; DESIGN §3 [tls_rpt]). Counting happens whether or not.
struct tls_rpt_section {
    bool enabled = false;
    std::string organization_name;                      // "organization-name" (default: [server] hostname)
    std::string contact_info;                           // "contact-info": required when enabled
    std::string submitter;                              // TLS-Report-Submitter (default: [server] hostname)
    std::string from_address;                           // From: of mailed reports (default: noreply-tls-reports@submitter)
};

struct log_section {
    std::filesystem::path dir = "log";                  // resolved against data_dir by the loader
    seconds max_age = std::chrono::hours(24 * 30);
    std::uint64_t max_size = 1024ull * 1024 * 1024;
};

struct metrics_section {
    std::string listen;
};

struct debug_section {
    bool smtp_server_debug = false;
    bool smtp_client_debug = false;
    bool smtp_io_trace = false;
    std::filesystem::path save_outbound_dir;
    bool trace_tls_handshake = false;
    bool report_tls_handshake_errors = true;
};

struct configuration {
    std::filesystem::path file;                         // where it was loaded from
    server_section server;
    tls_section tls;
    std::vector<receive_connector> receive_connectors;
    std::vector<send_connector> send_connectors;
    std::vector<accepted_domain> accepted_domains;   // [[accepted_domain]] tables
    std::vector<ldap_source> ldap_sources;           // [[ldap_source]] tables
    queue_section queue;
    dns_section dns;
    tls_rpt_section tls_rpt;
    log_section log;
    metrics_section metrics;
    debug_section debug;
};

/// Every domain that is ours: [server] accepted_domains and [[accepted_domain]] names,
/// lower-cased.
std::vector<std::string> all_accepted_domains(const configuration& config);
/// The [[accepted_domain]] for `domain` (case ignored); null for a plain accepted_domains
/// entry or a domain that is not ours.
const accepted_domain* find_accepted_domain(const configuration& config, std::string_view domain);
/// The [[ldap_source]] called `name`; null when there is none.
const ldap_source* find_ldap_source(const configuration& config, std::string_view name);

/// One problem in a configuration file: "FILE:LINE: KEY: MESSAGE".
/// Where the commands look for the configuration when -c is not given (the package
/// installs it there, a conffile).
inline constexpr const char* default_config_file = "/etc/postern/postern.toml";

struct diagnostic {
    enum class severity { error, warning } level = severity::error;
    std::filesystem::path file;
    std::uint32_t line = 0;                              // 0 when the file as a whole is meant
    std::string key;                                     // dotted: "receive_connector[0].tls"
    std::string message;
    std::string connector;                               // the name of the connector `key` is in, if any
    /// "FILE:LINE: KEY (connector "NAME"): [warning: ]MESSAGE"
    std::string to_string() const;
};

/// The line each dotted key was written on ("receive_connector[0].tls" -> 14), so that
/// checks made after loading can still name the line. Tables are recorded too, so a
/// key left at its default is reported on its table's header line.
class source_lines {
public:
    void record(std::string key, std::uint32_t line) { lines_[std::move(key)] = line; }
    /// The key's own line, else the nearest enclosing table's, else 0.
    std::uint32_t line_of(std::string_view key) const;

private:
    std::map<std::string, std::uint32_t, std::less<>> lines_;
};

/// Names the connector of every diagnostic whose key is inside one ("send_connector[1].x").
void name_connectors(const configuration& config, std::vector<diagnostic>& list);


struct load_result {
    std::optional<configuration> config;                 // empty when there is any error
    std::vector<diagnostic> errors;
    std::vector<diagnostic> warnings;
    source_lines lines;                                  // for checks made after loading
    bool ok() const { return errors.empty(); }
};

/// Parses, fills defaults, resolves relative paths against data_dir, validates.
/// `with_lists` false: recipient lists are not read (a client of the running server needs
/// only where its control socket is, and a list being edited must not stop it asking).
/// Whether an unbound configuration file names a DNSSEC trust anchor (trust-anchor:,
/// trust-anchor-file:, auto-trust-anchor-file:, trusted-keys-file:): without one no
/// answer is ever secure, so DANE cannot apply.
bool names_trust_anchor(const std::filesystem::path& unbound_config);
/// [dns] gives Postern a validating resolver (unbound_config naming a trust anchor).
bool validates_dnssec(const dns_section& dns);

load_result load_file(const std::filesystem::path& file, bool with_lists = true);
load_result load_string(std::string_view toml_text, const std::filesystem::path& file_name, bool with_lists = true);

/// "35MB" -> 36700160; "30s"/"5m"/"2h"/"2d" -> seconds. Empty optional on bad syntax.
std::optional<std::uint64_t> parse_size(std::string_view text);
std::optional<seconds> parse_duration(std::string_view text);

}  // namespace postern::config
