// daemon/preflight.cpp: the machine-dependent checks of a configuration (preflight.hpp).
#include "daemon/preflight.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "daemon/privileges.hpp"
#include "delivery/client_tls.hpp"
#include "delivery/tls_policy.hpp"
#include "directory/ldap_directory.hpp"
#include "net/connector_choice.hpp"
#include "tls/expiry.hpp"
#include "tls/keyring/keyring.hpp"
#include "tls/keyring/stash.hpp"
#include "tls/server_context.hpp"

namespace postern::daemon {

namespace {

/// Adds diagnostics to a load_result, finding each key's line in the file.
class findings {
public:
    explicit findings(config::load_result& r) : r_(r), file_(r.config->file) {}
    void error(const std::string& key, std::string message) { add(r_.errors, config::diagnostic::severity::error, key, std::move(message)); }
    void warning(const std::string& key, std::string message) { add(r_.warnings, config::diagnostic::severity::warning, key, std::move(message)); }
    std::size_t error_count() const { return r_.errors.size(); }

private:
    void add(std::vector<config::diagnostic>& list, config::diagnostic::severity level, const std::string& key,
             std::string message) {
        list.push_back({level, file_, r_.lines.line_of(key), key, std::move(message), {}});
    }
    config::load_result& r_;
    std::filesystem::path file_;
};

std::string receive_key(std::size_t i, std::string_view key) { return fmt::format("receive_connector[{}].{}", i, key); }
std::string send_key(std::size_t i, std::string_view key) { return fmt::format("send_connector[{}].{}", i, key); }

void check_user(const config::configuration& cfg, findings& out) {
    if (cfg.server.user.empty()) return;
    try {
        find_service_account(cfg.server.user);
    } catch (const std::exception& e) {
        out.error("server.user", e.what());
    }
}

/// Who needs the key ring, as "KEY: why" pairs (the first one names the error when it is missing).
struct keyring_use {
    std::string key;
    std::string why;
};
std::vector<keyring_use> keyring_uses(const config::configuration& cfg) {
    std::vector<keyring_use> uses;
    for (std::size_t i = 0; i < cfg.receive_connectors.size(); ++i) {
        const auto& rc = cfg.receive_connectors[i];
        if (rc.tls != config::tls_mode::none)
            uses.push_back({receive_key(i, "tls"), fmt::format("receive connector \"{}\" serves TLS", rc.name)});
        if (!rc.trusted_roots.empty())
            uses.push_back({receive_key(i, "trusted_roots"), fmt::format("receive connector \"{}\" names trusted_roots", rc.name)});
    }
    for (std::size_t i = 0; i < cfg.send_connectors.size(); ++i) {
        const auto& sc = cfg.send_connectors[i];
        if (!sc.client_certificate.empty())
            uses.push_back({send_key(i, "client_certificate"),
                            fmt::format("send connector \"{}\" presents a client certificate", sc.name)});
        if (!sc.trusted_roots.empty())
            uses.push_back({send_key(i, "trusted_roots"), fmt::format("send connector \"{}\" names trusted_roots", sc.name)});
        else if (sc.auth_level != config::tls_auth_level::encryption_only && !sc.trust_system_store)
            uses.push_back({send_key(i, "tls_auth_level"),
                            fmt::format("send connector \"{}\" verifies next hops against the key ring's roots", sc.name)});
    }
    return uses;
}

bool is_anchor(const tls::keyring_entry& e) { return e.role == tls::entry_role::root || e.role == tls::entry_role::peer; }

/// Every label the configuration names must be an entry of the kind it is used as.
void check_labels(const config::configuration& cfg, const tls::keyring& ring, findings& out) {
    const auto file = cfg.tls.keyring.string();
    auto missing = [&](const std::string& label, std::string_view kind) {
        const auto* e = ring.find(label);
        if (!e) return fmt::format("\"{}\" is not in the key ring {} ({} expected)", label, file, kind);
        return fmt::format("\"{}\" in the key ring {} is a {}, not {}", label, file, tls::to_string(e->role), kind);
    };
    if (!cfg.tls.certificate.empty()) {
        const auto* e = ring.find(cfg.tls.certificate);
        if (!e || e->role != tls::entry_role::server)
            out.error("tls.certificate", missing(cfg.tls.certificate, "a certificate with its key"));
    }
    for (std::size_t i = 0; i < cfg.receive_connectors.size(); ++i)
        for (const auto& label : cfg.receive_connectors[i].trusted_roots)
            if (const auto* e = ring.find(label); !e || !is_anchor(*e))
                out.error(receive_key(i, "trusted_roots"), missing(label, "a trusted root or pinned peer"));
    for (std::size_t i = 0; i < cfg.send_connectors.size(); ++i) {
        const auto& sc = cfg.send_connectors[i];
        if (!sc.client_certificate.empty())
            if (const auto* e = ring.find(sc.client_certificate); !e || e->role != tls::entry_role::server)
                out.error(send_key(i, "client_certificate"), missing(sc.client_certificate, "a certificate with its key"));
        for (const auto& label : sc.trusted_roots)
            if (const auto* e = ring.find(label); !e || !is_anchor(*e))
                out.error(send_key(i, "trusted_roots"), missing(label, "a trusted root or pinned peer"));
    }
}

/// Verification that can never succeed: nothing to verify with.
void check_roots(const config::configuration& cfg, const tls::keyring& ring, findings& out) {
    bool any_root = false;
    for (const auto& e : ring.entries()) any_root = any_root || e.role == tls::entry_role::root;
    if (any_root) return;
    for (std::size_t i = 0; i < cfg.send_connectors.size(); ++i) {
        const auto& sc = cfg.send_connectors[i];
        if (sc.auth_level != config::tls_auth_level::encryption_only && sc.trusted_roots.empty() && !sc.trust_system_store)
            out.warning(send_key(i, "tls_auth_level"),
                        "the key ring has no trusted root and trust_system_store = false: no next hop's certificate "
                        "can verify, so every message defers; add a root with `postern keyring trust`");
    }
    for (std::size_t i = 0; i < cfg.receive_connectors.size(); ++i) {
        const auto& rc = cfg.receive_connectors[i];
        if (net::wants_mutual_tls(rc) && rc.trusted_roots.empty())
            out.warning(receive_key(i, "auth_mechanisms"),
                        "the key ring has no trusted root: no client certificate can verify, so no partner is recognised");
    }
}

/// The serving certificate should carry the name clients and MX records use for us.
void check_serving_names(const config::configuration& cfg, const tls::server_context& ctx, findings& out) {
    X509* cert = SSL_CTX_get0_certificate(ctx.native());
    if (!cert) return;
    if (X509_check_host(cert, cfg.server.hostname.data(), cfg.server.hostname.size(), 0, nullptr) == 1) return;
    out.warning(cfg.tls.certificate.empty() ? "tls" : "tls.certificate",
                fmt::format("the serving certificate \"{}\" ({}) does not name [server] hostname \"{}\": clients that "
                            "verify names will refuse it",
                            ctx.certificate_label(), ctx.certificate_subject(), cfg.server.hostname));
}

void check_keyring(const config::configuration& cfg, findings& out) {
    const auto uses = keyring_uses(cfg);
    const bool present = std::filesystem::exists(cfg.tls.keyring);
    if (uses.empty() && !present) return;   // plaintext only: no key ring is needed
    if (!present) {
        out.error("tls.keyring", fmt::format("{} does not exist, and {} ({}); create it with `postern keyring create`",
                                             cfg.tls.keyring.string(), uses.front().why, uses.front().key));
        return;
    }
    std::optional<tls::keyring> ring;
    try {
        const auto password = tls::read_stash(cfg.tls.stash);
        try {
            ring = tls::keyring::read(cfg.tls.keyring, password.view());
        } catch (const std::exception& e) {
            out.error("tls.keyring", e.what());
            return;
        }
    } catch (const std::exception& e) {
        out.error("tls.stash", e.what());
        return;
    }
    const std::size_t errors_before = out.error_count();
    check_labels(cfg, *ring, out);
    check_roots(cfg, *ring, out);
    for (const auto& w : tls::expiring_certificates(*ring))
        out.warning("tls.keyring", cfg.tls.keyring.string() + ": " + w.to_string());
    if (out.error_count() > errors_before) return;   // the builds below would only say it again

    // Then the contexts exactly as serve builds them: whatever else is wrong (a key that
    // does not match its certificate, an unusable chain) shows here.
    bool serves_tls = false;
    for (const auto& rc : cfg.receive_connectors) serves_tls |= rc.tls != config::tls_mode::none;
    if (serves_tls) {
        try {
            check_serving_names(cfg, *tls::server_context::build(cfg), out);
        } catch (const std::exception& e) {
            out.error(cfg.tls.certificate.empty() ? "tls" : "tls.certificate", e.what());
        }
    }
    try {
        const auto material = delivery::client_tls_material::load(cfg);
        for (std::size_t i = 0; i < cfg.send_connectors.size(); ++i) {
            try {
                delivery::make_client_context(cfg, cfg.send_connectors[i], material.get());
            } catch (const std::exception& e) {
                out.error(send_key(i, "name"), e.what());
            }
        }
    } catch (const std::exception& e) {
        out.error("tls.keyring", e.what());
    }
}

void check_routes(const config::configuration& cfg, findings& out) {
    for (const auto& domain : net::unrouted_domains(cfg))
        out.warning("server.accepted_domains",
                    fmt::format("accepted domain \"{}\" has no send connector whose address_spaces cover it: its "
                                "recipients get 451 4.4.4 until one does",
                                domain));
    // DESIGN §3 dane: the default asks for DANE wherever a domain publishes it; without a
    // trust anchor no answer is secure, so it is off, and the administrator should know.
    if (config::validates_dnssec(cfg.dns)) return;
    std::string by_mx;
    for (const auto& c : cfg.send_connectors)
        if (c.smart_hosts.empty() && c.dane != config::dane_mode::off)
            by_mx += (by_mx.empty() ? "" : ", ") + c.name;
    if (!by_mx.empty())
        out.warning("dns.unbound_config",
                    fmt::format("no DNSSEC trust anchor, so DANE is off for send connector(s) {}: name one in an "
                                "unbound_config (auto-trust-anchor-file: \"/var/lib/unbound/root.key\") or set "
                                "dane = \"off\"",
                                by_mx));
}

// The bind password is read at every connect, after privileges are dropped: the service
// user must be able to read it, and nobody else should.
void check_password_file(const config::configuration& cfg, std::size_t index, findings& out) {
    const auto& file = cfg.ldap_sources[index].bind_password_file;
    if (file.empty()) return;
    const auto key = fmt::format("ldap_source[{}].bind_password_file", index);
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
        out.warning(key, fmt::format("{} cannot be read: {}", file.string(), std::strerror(errno)));
        return;
    }
    if (st.st_mode & 077)
        out.warning(key, fmt::format("{} has mode {:04o}: a password file should be 0600", file.string(),
                                     st.st_mode & 07777));
    if (cfg.server.user.empty()) return;
    try {
        const auto account = find_service_account(cfg.server.user);
        const bool readable = (st.st_uid == account.uid && (st.st_mode & S_IRUSR)) ||
                              (st.st_gid == account.gid && (st.st_mode & S_IRGRP)) || (st.st_mode & S_IROTH);
        if (!readable && account.uid != 0)
            out.warning(key, fmt::format("{} cannot be read by the service user {} once privileges are dropped: "
                                         "chown {} {}",
                                         file.string(), account.name, account.name, file.string()));
    } catch (const std::exception&) {
        // A missing user is already an error of check_user.
    }
}

// A directory that cannot be reached is a warning, not an error: the server must still
// start and take mail for the domains it can check; RCPT for the others gets 451 4.4.3.
void check_directories(const config::configuration& cfg, findings& out) {
    for (std::size_t i = 0; i < cfg.ldap_sources.size(); ++i) check_password_file(cfg, i, out);
    for (const auto& [name, why] : directory::unreachable_sources(cfg)) {
        std::size_t index = 0;
        while (index < cfg.ldap_sources.size() && cfg.ldap_sources[index].name != name) ++index;
        out.warning(fmt::format("ldap_source[{}].uri", index),
                    fmt::format("ldap_source \"{}\" cannot be reached: {}; recipients it decides get 451 4.4.3 "
                                "until it can",
                                name, why));
    }
}

}  // namespace

void preflight(config::load_result& loaded) {
    if (!loaded.config) return;
    const auto& cfg = *loaded.config;
    const std::size_t errors_before = loaded.errors.size();
    findings out(loaded);
    check_user(cfg, out);
    check_keyring(cfg, out);
    check_routes(cfg, out);
    check_directories(cfg, out);
    config::name_connectors(cfg, loaded.errors);
    config::name_connectors(cfg, loaded.warnings);
    if (loaded.errors.size() > errors_before) loaded.config.reset();
}

}  // namespace postern::daemon
