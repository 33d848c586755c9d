// config/validate.cpp: the combinations DESIGN.md §3 refuses ("Errors, not warnings").
//
// Weak TLS is judged by OpenSSL itself: the configured cipher string is expanded on a
// scratch context and every resulting suite is inspected, so aliases such as "DEFAULT"
// or "HIGH" cannot smuggle a CBC or anonymous suite past a list of forbidden words.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "config/detail.hpp"

namespace postern::config {

bool names_trust_anchor(const std::filesystem::path& unbound_config) {
    std::ifstream in(unbound_config);
    std::string line;
    while (std::getline(in, line)) {
        const auto start = line.find_first_not_of(" \t");
        if (start == std::string::npos || line[start] == '#') continue;
        for (std::string_view key : {"trust-anchor:", "trust-anchor-file:", "auto-trust-anchor-file:",
                                     "trusted-keys-file:"})
            if (std::string_view(line).substr(start).starts_with(key)) return true;
    }
    return false;
}

bool validates_dnssec(const dns_section& dns) {
    return !dns.unbound_config.empty() && names_trust_anchor(dns.unbound_config);
}

}  // namespace postern::config

namespace postern::config::detail {

namespace {

using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

ssl_ctx_ptr scratch_context() { return ssl_ctx_ptr(SSL_CTX_new(TLS_method()), &SSL_CTX_free); }

std::vector<std::string> split_cipher_string(std::string_view text) {
    // OpenSSL separates cipher string elements with ':', ',' or spaces.
    std::vector<std::string> out;
    std::string current;
    for (char c : text) {
        if (c == ':' || c == ',' || c == ' ') {
            if (!current.empty()) out.push_back(std::move(current));
            current.clear();
        } else {
            current += c;
        }
    }
    if (!current.empty()) out.push_back(std::move(current));
    return out;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

// Why a cipher name (or alias) is weak, judged by its name; "" when nothing is known
// against it. Used for names OpenSSL no longer enables at all (RC4 and export suites
// are gone from the default provider), so that the error still says why.
std::string weakness_by_name(std::string_view name) {
    std::string n = upper(name);
    auto has = [&](std::string_view word) { return n.find(word) != std::string::npos; };
    if (has("RC4")) return "RC4 is broken";
    if (has("3DES") || has("DES-CBC3") || has("DES")) return "3DES/DES has 64-bit blocks (Sweet32)";
    if (has("EXP")) return "export ciphers are deliberately weak";
    if (has("NULL")) return "NULL means no encryption or no authentication";
    if (has("ADH") || has("AECDH")) return "anonymous key exchange has no certificate";
    if (has("MD5")) return "MD5 is broken";
    if (has("IDEA") || has("SEED") || has("CAMELLIA") || has("CBC")) return "CBC-mode ciphers are not AEAD";
    if (has("SSLV3") || n == "TLSV1" || has("TLSV1.0") || has("TLSV1.1")) return "SSLv3, TLS 1.0 and 1.1 are refused";
    return {};
}

// Why one expanded TLS 1.2 suite is refused; "" when it is acceptable.
std::string weakness_of(const SSL_CIPHER* cipher) {
    std::string name = SSL_CIPHER_get_name(cipher);
    int auth = SSL_CIPHER_get_auth_nid(cipher);
    int kx = SSL_CIPHER_get_kx_nid(cipher);
    if (auth == NID_auth_null) return "anonymous: the server presents no certificate";
    if (auth == NID_auth_psk || kx == NID_kx_psk || kx == NID_kx_ecdhe_psk || kx == NID_kx_dhe_psk ||
        kx == NID_kx_rsa_psk)
        return "pre-shared-key suites are not certificate-authenticated";
    if (auth == NID_auth_srp || kx == NID_kx_srp) return "SRP suites are not certificate-authenticated";
    if (!SSL_CIPHER_is_aead(cipher)) {
        std::string by_name = weakness_by_name(name);
        if (!by_name.empty()) return by_name;
        return fmt::format("not an AEAD cipher ({} with a separate {} MAC)", "CBC mode",
                           name.find("SHA384") != std::string::npos   ? "SHA-384"
                           : name.find("SHA256") != std::string::npos ? "SHA-256"
                                                                      : "SHA-1");
    }
    return {};
}

bool is_tls13(const SSL_CIPHER* cipher) {
    return std::string_view(SSL_CIPHER_get_version(cipher)) == "TLSv1.3";
}

bool has_group(const receive_connector& c, permission_group g) {
    return std::find(c.permission_groups.begin(), c.permission_groups.end(), g) != c.permission_groups.end();
}

std::string endpoint_identity(const endpoint& e) {
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(e.host, ec);
    return fmt::format("{}|{}", ec ? e.host : address.to_string(), e.port);
}

std::set<std::string> range_identities(const std::vector<ip_range>& ranges) {
    std::set<std::string> out;
    for (const auto& r : ranges) out.insert(fmt::format("{}/{}", r.network.to_string(), r.prefix_length));
    return out;
}

// "*", "*.partner.test" or "partner.test".
bool is_address_space(std::string_view s) {
    if (s == "*") return true;
    if (s.size() > 2 && s.substr(0, 2) == "*.") s.remove_prefix(2);
    return is_domain_name(s);
}

void validate_server(const configuration& config, const source_lines& lines, diagnostics& out) {
    const auto& s = config.server;
    if (!is_domain_name(s.hostname))
        out.error("server.hostname", lines.line_of("server.hostname"),
                  fmt::format("\"{}\" is not a host name", s.hostname));
    for (const auto& d : s.accepted_domains)
        if (!is_domain_name(d))
            out.error("server.accepted_domains", lines.line_of("server.accepted_domains"),
                      fmt::format("\"{}\" is not a domain name", d));
    if (s.data_dir.empty())
        out.error("server.data_dir", lines.line_of("server.data_dir"), "must not be empty");
    if (::geteuid() == 0 && s.user.empty())
        out.warning("server.user", lines.line_of("server.user"),
                    "running as root with no user to drop to; set user = \"postern\" (or another service user)");
}

void validate_tls(const configuration& config, const source_lines& lines, diagnostics& out) {
    const auto& t = config.tls;
    if (auto why = check_min_version(t.min_version); !why.empty())
        out.error("tls.min_version", lines.line_of("tls.min_version"), why);
    if (t.ciphers.empty()) {
        if (t.min_version != "1.3")
            out.error("tls.ciphers", lines.line_of("tls.ciphers"),
                      "is empty, so TLS 1.2 clients would find no cipher; set min_version = \"1.3\" for TLS 1.3 only");
    } else if (auto why = check_cipher_list(t.ciphers); !why.empty()) {
        out.error("tls.ciphers", lines.line_of("tls.ciphers"), why);
    }
    if (t.ciphersuites.empty()) {
        if (t.min_version == "1.3")
            out.error("tls.ciphersuites", lines.line_of("tls.ciphersuites"),
                      "is empty while min_version = \"1.3\": no suite could be negotiated");
    } else if (auto why = check_ciphersuites(t.ciphersuites); !why.empty()) {
        out.error("tls.ciphersuites", lines.line_of("tls.ciphersuites"), why);
    }
}

/// A connector name is unique among its kind and made of letters, digits, '-', '_' and
/// '.' (it appears in protocol-log lines and file names).
void check_connector_name(std::string_view kind, const std::string& name, std::size_t index,
                          std::map<std::string, std::size_t>& names, const std::string& key, std::uint32_t line,
                          diagnostics& out) {
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char ch) {
            return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.';
        }))
        out.error(key, line, fmt::format("\"{}\": a connector name is letters, digits, '-', '_' and '.'", name));
    else if (auto [it, fresh] = names.emplace(name, index); !fresh)
        out.error(key, line, fmt::format("\"{}\" is already the name of {}[{}]", name, kind, it->second));
}

void validate_receive_connectors(const configuration& config, const source_lines& lines, diagnostics& out) {
    const auto& connectors = config.receive_connectors;
    std::map<std::string, std::size_t> names;
    for (std::size_t i = 0; i < connectors.size(); ++i) {
        const auto& c = connectors[i];
        auto key = [&](std::string_view k) { return connector_key("receive_connector", i, k); };
        auto line = [&](std::string_view k) { return lines.line_of(key(k)); };

        check_connector_name("receive_connector", c.name, i, names, key("name"), line("name"), out);
        if (c.bind.empty()) out.error(key("bind"), line("bind"), "needs at least one address:port");
        for (const auto& partner : c.partner_names) {
            // RFC 6125 reference identifiers: a host name, or "*.domain" for a wildcard certificate.
            std::string_view host = partner;
            if (host.substr(0, 2) == "*.") host.remove_prefix(2);
            if (!is_domain_name(host))
                out.error(key("partner_names"), line("partner_names"),
                          fmt::format("\"{}\" is not a host name a certificate could carry", partner));
        }

        if (c.tls == tls_mode::none && c.require_tls)
            out.error(key("require_tls"), line("require_tls"),
                      "require_tls = true needs tls = \"starttls\" or \"implicit\" (tls is \"none\")");
        if (c.tls == tls_mode::none && !c.auth_mechanisms.empty())
            out.error(key("auth_mechanisms"), line("auth_mechanisms"),
                      "TLS authentication needs tls = \"starttls\" or \"implicit\" (tls is \"none\"); "
                      "write auth_mechanisms = []");
        if (c.mutual_tls() && !c.require_tls)
            out.error(key("auth_mechanisms"), line("auth_mechanisms"),
                      "mutual_tls needs require_tls = true, or a client could skip TLS and its certificate");
        if (c.mutual_tls() && c.partner_names.empty() && c.partner_fingerprints.empty())
            out.error(key("auth_mechanisms"), line("auth_mechanisms"),
                      "mutual_tls needs partner_names or partner_fingerprints: which certificates are partners?");
        if (has_group(c, permission_group::partners) && !c.mutual_tls())
            out.warning(key("permission_groups"), line("permission_groups"),
                        "\"partners\" without auth_mechanisms = [\"mutual_tls\"]: no client can become a partner");
        if (c.accept_any_recipient && has_group(c, permission_group::anonymous_users)) {
            auto everything = std::find_if(c.remote_ip_ranges.begin(), c.remote_ip_ranges.end(),
                                           [](const ip_range& r) { return r.is_everything(); });
            if (everything != c.remote_ip_ranges.end())
                out.error(key("accept_any_recipient"), line("accept_any_recipient"),
                          fmt::format("open relay: anonymous_users may send anywhere and remote_ip_ranges "
                                      "includes \"{}\"; narrow the ranges or require partners",
                                      everything->text));
        }
        if (c.max_recipients < 100)
            out.warning(key("max_recipients"), line("max_recipients"),
                        fmt::format("{} is below the 100 recipients RFC 5321 §4.5.3.1.8 asks servers to accept",
                                    c.max_recipients));
        if (c.max_header_size > c.max_message_size)
            out.warning(key("max_header_size"), line("max_header_size"),
                        "is larger than max_message_size, which will be reached first");
    }

    // Connector choice is by bind, then by the most specific range: two connectors on one
    // address with identical ranges would leave the choice to file order.
    for (std::size_t i = 0; i < connectors.size(); ++i)
        for (std::size_t j = 0; j < i; ++j) {
            if (range_identities(connectors[i].remote_ip_ranges) != range_identities(connectors[j].remote_ip_ranges))
                continue;
            for (const auto& a : connectors[i].bind) {
                if (a.port == 0) continue;   // each gets its own free port
                bool shared = std::any_of(connectors[j].bind.begin(), connectors[j].bind.end(),
                                          [&](const endpoint& b) { return endpoint_identity(a) == endpoint_identity(b); });
                if (shared) {
                    auto k = connector_key("receive_connector", i, "bind");
                    out.error(k, lines.line_of(k),
                              fmt::format("\"{}\" with the same remote_ip_ranges as receive_connector[{}] (\"{}\"): "
                                          "no way to tell which one a client gets",
                                          a.text, j, connectors[j].name));
                    break;
                }
            }
        }
}

void validate_send_connectors(const configuration& config, const source_lines& lines, diagnostics& out) {
    const auto& connectors = config.send_connectors;
    std::map<std::string, std::size_t> names;
    std::map<std::string, std::size_t> spaces;
    for (std::size_t i = 0; i < connectors.size(); ++i) {
        const auto& c = connectors[i];
        auto key = [&](std::string_view k) { return connector_key("send_connector", i, k); };
        auto line = [&](std::string_view k) { return lines.line_of(key(k)); };

        check_connector_name("send_connector", c.name, i, names, key("name"), line("name"), out);

        if (c.address_spaces.empty() && c.recipients_file.empty() && c.recipients_ldap.empty())
            out.error(key("address_spaces"), line("address_spaces"),
                      "needs at least one domain, \"*.domain\" or \"*\" (or recipients, recipients_ldap)");
        if (!c.recipients_ldap.empty() && !find_ldap_source(config, c.recipients_ldap))
            out.error(key("recipients_ldap"), line("recipients_ldap"),
                      fmt::format("no [[ldap_source]] is called \"{}\"", c.recipients_ldap));
        for (const auto& space : c.address_spaces) {
            if (!is_address_space(space)) {
                out.error(key("address_spaces"), line("address_spaces"),
                          fmt::format("\"{}\" is not a domain, \"*.domain\" or \"*\"", space));
                continue;
            }
            std::string folded = upper(space);
            if (auto [it, fresh] = spaces.emplace(folded, i); !fresh && it->second != i)
                out.error(key("address_spaces"), line("address_spaces"),
                          fmt::format("\"{}\" is already routed by send_connector[{}] (\"{}\")", space, it->second,
                                      connectors[it->second].name));
        }
        if (c.auth_level != tls_auth_level::encryption_only && !c.require_tls)
            out.error(key("tls_auth_level"), line("tls_auth_level"),
                      fmt::format("\"{}\" needs require_tls = true; without it a failed check would fall back "
                                  "to plaintext",
                                  name_of(tls_auth_level_names, c.auth_level)));
        if (c.ignore_starttls && c.require_tls)
            out.error(key("ignore_starttls"), line("ignore_starttls"),
                      "ignore_starttls = true contradicts require_tls = true");
        if (c.dane == dane_mode::required && !c.smart_hosts.empty())
            out.error(key("dane"), line("dane"),
                      "dane = \"required\" applies to routing by MX; a smart-host connector keeps the TLS rules it "
                      "is configured with (tls_auth_level, tls_domain)");
        if (c.dane == dane_mode::required && c.smart_hosts.empty() &&
            !validates_dnssec(config.dns))
            out.error(key("dane"), line("dane"),
                      "dane = \"required\" needs DNSSEC validation: [dns] unbound_config naming a trust anchor "
                      "(e.g. auto-trust-anchor-file: \"/var/lib/unbound/root.key\")");
        if (!c.tls_domain.empty() && !is_domain_name(c.tls_domain))
            out.error(key("tls_domain"), line("tls_domain"), fmt::format("\"{}\" is not a domain name", c.tls_domain));
    }
}

/// [tls_rpt]: who we are in the reports we send (RFC 8460 §4.4).
void validate_tls_rpt(const configuration& config, const source_lines& lines, diagnostics& out) {
    const auto& t = config.tls_rpt;
    for (const auto& [key, value] : {std::pair{"tls_rpt.organization_name", t.organization_name},
                                     std::pair{"tls_rpt.contact_info", t.contact_info},
                                     std::pair{"tls_rpt.submitter", t.submitter}})
        if (value.find_first_of("\r\n") != std::string::npos || value.size() > 256)
            out.error(key, lines.line_of(key), "must be one line of at most 256 characters");
    if (!t.submitter.empty() && !is_domain_name(t.submitter))
        out.error("tls_rpt.submitter", lines.line_of("tls_rpt.submitter"),
                  fmt::format("\"{}\" is not a domain name", t.submitter));
    if (t.enabled && t.contact_info.empty())
        out.error("tls_rpt.contact_info", lines.line_of("tls_rpt.enabled"),
                  "enabled = true needs contact_info: an address or URL where the domains that receive the "
                  "reports can reach whoever runs this server (RFC 8460 §4.4 \"contact-info\")");
}

void validate_other_sections(const configuration& config, const source_lines& lines, diagnostics& out) {
    std::string why;
    if (!config.dns.resolver.empty() &&
        !parse_endpoint(config.dns.resolver, host_kind::ip_address, 53, why))
        out.error("dns.resolver", lines.line_of("dns.resolver"), why);
    if (!config.metrics.listen.empty() &&
        !parse_endpoint(config.metrics.listen, host_kind::ip_address, 0, why))
        out.error("metrics.listen", lines.line_of("metrics.listen"), why);
    if (config.queue.delay_notice >= config.queue.expire)
        out.warning("queue.delay_notice", lines.line_of("queue.delay_notice"),
                    "is not shorter than expire, so no delay notice is ever sent");
    // A DSN returns whole header lines only; a limit below one line may return nothing.
    if (config.queue.bounce_size_limit < 1000)
        out.warning("queue.bounce_size_limit", lines.line_of("queue.bounce_size_limit"),
                    fmt::format("{} octets is less than one line may take (1000, RFC 5321 §4.5.3.1.6), so "
                                "DSNs may return none of the original's headers",
                                config.queue.bounce_size_limit));
    for (const auto& [key, address] : {std::pair{"queue.double_bounce_recipient", config.queue.double_bounce_recipient},
                                       std::pair{"tls_rpt.from_address", config.tls_rpt.from_address}}) {
        if (address.empty()) continue;
        const auto at = address.rfind('@');
        const bool plain = address.find_first_of(" <>\"\t\r\n") == std::string::npos;
        if (at == std::string::npos || at == 0 || !plain || !is_domain_name(address.substr(at + 1)))
            out.error(key, lines.line_of(key),
                      fmt::format("\"{}\" is not a mail address (local@domain, without angle brackets)", address));
    }
    validate_tls_rpt(config, lines, out);
}

}  // namespace

std::string check_min_version(std::string_view version) {
    if (version == "1.2" || version == "1.3") return {};
    static const std::set<std::string, std::less<>> older = {
        "1", "1.0", "1.1", "3", "3.0", "2", "2.0", "TLSv1", "TLSv1.0", "TLSv1.1", "SSLv3", "SSLv2", "tls1", "ssl3"};
    if (older.count(version))
        return fmt::format("\"{}\" is refused: SSLv3, TLS 1.0 and TLS 1.1 are broken; write \"1.2\" or \"1.3\"", version);
    return fmt::format("\"{}\" is not a TLS version; write \"1.2\" or \"1.3\"", version);
}

std::string check_cipher_list(std::string_view ciphers) {
    auto ctx = scratch_context();
    if (!ctx) return "OpenSSL could not create a TLS context to check the ciphers";
    for (const auto& element : split_cipher_string(ciphers)) {
        if (element.front() == '!' || element.front() == '-' || element.front() == '+') continue;
        if (element.front() == '@') {
            std::string u = upper(element);
            if (u.rfind("@SECLEVEL=", 0) == 0 && u.size() > 10 && u[10] < '2')
                return fmt::format("\"{}\" lowers OpenSSL's security level below 2 and admits weak keys", element);
            continue;
        }
        // An element that expands to nothing is a typo or a suite OpenSSL has disabled
        // outright (RC4, export): either way the configuration does not say what it means.
        if (SSL_CTX_set_cipher_list(ctx.get(), element.c_str()) != 1) {
            ERR_clear_error();
            if (auto why = weakness_by_name(element); !why.empty())
                return fmt::format("\"{}\" is refused: {}", element, why);
            return fmt::format("\"{}\" matches no cipher OpenSSL knows", element);
        }
    }
    if (SSL_CTX_set_cipher_list(ctx.get(), std::string(ciphers).c_str()) != 1) {
        ERR_clear_error();
        return fmt::format("\"{}\" selects no cipher", ciphers);
    }
    STACK_OF(SSL_CIPHER)* list = SSL_CTX_get_ciphers(ctx.get());
    bool any_tls12 = false;
    for (int i = 0; i < sk_SSL_CIPHER_num(list); ++i) {
        const SSL_CIPHER* cipher = sk_SSL_CIPHER_value(list, i);
        if (is_tls13(cipher)) continue;   // ciphersuites' business
        any_tls12 = true;
        if (auto why = weakness_of(cipher); !why.empty())
            return fmt::format("includes {}, which is refused: {}", SSL_CIPHER_get_name(cipher), why);
    }
    if (!any_tls12) return fmt::format("\"{}\" selects no TLS 1.2 cipher", ciphers);
    return {};
}

std::string check_ciphersuites(std::string_view suites) {
    auto ctx = scratch_context();
    if (!ctx) return "OpenSSL could not create a TLS context to check the ciphersuites";
    for (const auto& element : split_cipher_string(suites)) {
        if (SSL_CTX_set_ciphersuites(ctx.get(), element.c_str()) != 1) {
            ERR_clear_error();
            return fmt::format("\"{}\" is not a TLS 1.3 ciphersuite (e.g. TLS_AES_256_GCM_SHA384)", element);
        }
        // set_ciphersuites accepts unknown names silently in some versions; confirm.
        bool found = false;
        STACK_OF(SSL_CIPHER)* list = SSL_CTX_get_ciphers(ctx.get());
        for (int i = 0; i < sk_SSL_CIPHER_num(list); ++i) {
            const SSL_CIPHER* cipher = sk_SSL_CIPHER_value(list, i);
            if (element != SSL_CIPHER_get_name(cipher) || !is_tls13(cipher)) continue;
            found = true;
            if (!SSL_CIPHER_is_aead(cipher))
                return fmt::format("includes {}, which is refused: not an AEAD cipher", element);
        }
        if (!found) return fmt::format("\"{}\" is not a TLS 1.3 ciphersuite (e.g. TLS_AES_256_GCM_SHA384)", element);
    }
    return {};
}

// [[accepted_domain]]: each a domain, named once, in one form only.
void validate_accepted_domains(const configuration& config, const source_lines& lines, diagnostics& out) {
    std::set<std::string> seen;
    for (std::size_t i = 0; i < config.accepted_domains.size(); ++i) {
        const auto& d = config.accepted_domains[i];
        auto key = [&](std::string_view k) { return connector_key("accepted_domain", i, k); };
        auto line = [&](std::string_view k) { return lines.line_of(key(k)); };
        const std::string name = fold_domain(d.name);
        if (!is_domain_name(name)) {
            out.error(key("name"), line("name"), fmt::format("\"{}\" is not a domain name", d.name));
            continue;
        }
        if (!seen.insert(name).second)
            out.error(key("name"), line("name"), fmt::format("\"{}\" is already an [[accepted_domain]]", d.name));
        for (const auto& listed : config.server.accepted_domains)
            if (fold_domain(listed) == name)
                out.error(key("name"), line("name"),
                          fmt::format("\"{}\" is also in [server] accepted_domains: name it in one place only", d.name));
        const bool listed = !d.recipients_file.empty(), in_directory = !d.recipients_ldap.empty();
        if (d.type == accepted_domain_type::authoritative && !listed && !in_directory)
            out.error(key("recipients"), line("type"),
                      "type = \"authoritative\" needs recipients (a file) or recipients_ldap (a directory): "
                      "what says which addresses exist");
        if (listed && in_directory)
            out.error(key("recipients_ldap"), line("recipients_ldap"),
                      "give recipients or recipients_ldap, not both: one source says who exists");
        if (in_directory && !find_ldap_source(config, d.recipients_ldap))
            out.error(key("recipients_ldap"), line("recipients_ldap"),
                      fmt::format("no [[ldap_source]] is called \"{}\"", d.recipients_ldap));
        if (d.type == accepted_domain_type::internal_relay && (listed || in_directory))
            out.warning(key(listed ? "recipients" : "recipients_ldap"), line(listed ? "recipients" : "recipients_ldap"),
                        "an internal_relay domain accepts every recipient: this source is not used");
    }
}

// The filter's placeholders: %s, %u, %d and %%; at least one of the first three, or every
// address would get the same answer.
std::string check_ldap_filter(std::string_view filter) {
    if (filter.empty() || filter.front() != '(' || filter.back() != ')')
        return "must be an LDAP filter in parentheses (RFC 4515), e.g. \"(mail=%s)\"";
    int depth = 0;
    bool placeholder = false;
    for (std::size_t i = 0; i < filter.size(); ++i) {
        const char ch = filter[i];
        if (ch == '(') ++depth;
        if (ch == ')' && --depth < 0) return "has a ')' without its '('";
        if (ch != '%') continue;
        const char next = i + 1 < filter.size() ? filter[i + 1] : '\0';
        if (next == 's' || next == 'u' || next == 'd') placeholder = true;
        else if (next != '%') return fmt::format("'%{}' is not a placeholder: %s (address), %u (local part), "
                                                 "%d (domain) or %% (a %)",
                                                 next == '\0' ? std::string() : std::string(1, next));
        ++i;
    }
    if (depth != 0) return "has a '(' without its ')'";
    if (!placeholder) return "names no %s, %u or %d: every address would get the same answer";
    return {};
}

void validate_ldap_sources(const configuration& config, const source_lines& lines, diagnostics& out) {
    std::set<std::string> names;
    for (std::size_t i = 0; i < config.ldap_sources.size(); ++i) {
        const auto& l = config.ldap_sources[i];
        auto key = [&](std::string_view k) { return connector_key("ldap_source", i, k); };
        auto line = [&](std::string_view k) { return lines.line_of(key(k)); };
        if (l.name.empty()) out.error(key("name"), line("name"), "must not be empty");
        else if (!names.insert(l.name).second)
            out.error(key("name"), line("name"), fmt::format("\"{}\" is already an [[ldap_source]]", l.name));
        const bool ldaps = l.uri.starts_with("ldaps://"), ldap = l.uri.starts_with("ldap://");
        const std::string_view rest = std::string_view(l.uri).substr(ldaps ? 8 : ldap ? 7 : 0);
        if (!ldap && !ldaps)
            out.error(key("uri"), line("uri"),
                      fmt::format("\"{}\" is not ldap://HOST[:PORT] (StartTLS) or ldaps://HOST[:PORT]", l.uri));
        else if (rest.empty() || rest.front() == '/' || rest.find_first_of(" ,") != std::string_view::npos)
            out.error(key("uri"), line("uri"), fmt::format("\"{}\" names no single host", l.uri));
        if (l.base.empty()) out.error(key("base"), line("base"), "must not be empty: where the addresses are");
        if (auto why = check_ldap_filter(l.filter); !why.empty()) out.error(key("filter"), line("filter"), why);
        if (l.attributes.empty())
            out.error(key("attributes"), line("attributes"), "needs at least one attribute (\"mail\")");
        if (!l.bind_dn.empty() && l.bind_password_file.empty())
            out.error(key("bind_password_file"), line("bind_dn"), "bind_dn needs bind_password_file");
        if (l.bind_dn.empty() && !l.bind_password_file.empty())
            out.error(key("bind_dn"), line("bind_password_file"), "bind_password_file needs bind_dn");
        if (l.max_stale > std::chrono::hours(24 * 7))
            out.warning(key("max_stale"), line("max_stale"),
                        "answers older than a week can let mail in for people who left long ago");
        if (l.connections == 0 || l.connections > 64)
            out.error(key("connections"), line("connections"), "must be 1 to 64");
    }
}

void validate(const configuration& config, const source_lines& lines, diagnostics& out) {
    validate_server(config, lines, out);
    validate_ldap_sources(config, lines, out);
    validate_accepted_domains(config, lines, out);
    validate_tls(config, lines, out);
    validate_receive_connectors(config, lines, out);
    validate_send_connectors(config, lines, out);
    validate_other_sections(config, lines, out);
}

}  // namespace postern::config::detail

namespace postern::config::detail {

void load_recipient_lists(configuration& config, const source_lines& lines, diagnostics& out) {
    const auto base = config.file.parent_path();
    auto load = [&](const std::filesystem::path& written, const std::string& key)
        -> std::shared_ptr<const recipient_list> {
        const auto file = written.is_relative() ? base / written : written;
        try {
            auto list = recipient_list::load(file);
            if (list->size() == 0)
                out.warning(key, lines.line_of(key), fmt::format("{} lists no address", file.string()));
            return list;
        } catch (const recipient_list_error& e) {
            out.error(key, lines.line_of(key),
                      e.line ? fmt::format("{}:{}: {}", file.string(), e.line, e.what())
                             : fmt::format("{}: {}", file.string(), e.what()));
            return nullptr;
        }
    };
    std::map<std::string, std::string> owner;   // address -> the connector whose list has it
    for (std::size_t i = 0; i < config.send_connectors.size(); ++i) {
        auto& c = config.send_connectors[i];
        if (c.recipients_file.empty()) continue;
        const auto key = connector_key("send_connector", i, "recipients");
        c.recipients = load(c.recipients_file, key);
        if (!c.recipients) continue;
        std::size_t shown = 0;
        for (const auto& a : c.recipients->addresses()) {
            auto [it, fresh] = owner.emplace(a, c.name);
            if (!fresh && shown++ < 5)   // a few by name; the first list listed wins
                out.warning(key, lines.line_of(key),
                            fmt::format("{} is also listed for send connector \"{}\", which takes it", a, it->second));
        }
    }
    for (std::size_t i = 0; i < config.accepted_domains.size(); ++i) {
        auto& d = config.accepted_domains[i];
        if (d.recipients_file.empty()) continue;
        d.recipients = load(d.recipients_file, connector_key("accepted_domain", i, "recipients"));
    }
}

}  // namespace postern::config::detail
