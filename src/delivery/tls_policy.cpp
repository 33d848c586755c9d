// delivery/tls_policy.cpp: outbound TLS levels, client contexts and verdicts.
#include "delivery/tls_policy.hpp"

#include <algorithm>
#include <filesystem>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include "delivery/client_tls.hpp"
#include "tls/certificate_info.hpp"
#include "tls/error.hpp"
#include "tls/keyring/keyring.hpp"
#include "tls/keyring/stash.hpp"
#include "tls/server_context.hpp"

namespace postern::delivery {

namespace {

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    while (!s.empty() && s.back() == '.') s.pop_back();   // "mx.example.test." from DNS
    return s;
}

int record_index() {
    static const int index = SSL_get_ex_new_index(0, const_cast<char*>("postern client verify record"), nullptr,
                                                  nullptr, nullptr);
    return index;
}

/// Never stops the handshake; notes the first chain error and, separately, a name
/// mismatch, so the verdict can say "trusted, but the wrong name".
int record_client_verify(int preverify_ok, X509_STORE_CTX* store_ctx) {
    if (preverify_ok) return 1;
    auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
    auto* record = ssl ? static_cast<verify_record*>(SSL_get_ex_data(ssl, record_index())) : nullptr;
    if (!record) return 1;
    const int error = X509_STORE_CTX_get_error(store_ctx);
    if (error == X509_V_ERR_HOSTNAME_MISMATCH) {
        record->name_mismatch = true;
    } else if (record->first_chain_error == X509_V_OK) {
        record->first_chain_error = error;
        record->chain_error_depth = X509_STORE_CTX_get_error_depth(store_ctx);
    }
    return 1;
}

int version_for(const config::configuration& cfg) {
    return cfg.tls.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;   // nothing lower exists
}

}  // namespace

auth_level to_auth_level(config::tls_auth_level level) {
    switch (level) {
    case config::tls_auth_level::encryption_only: return auth_level::encryption_only;
    case config::tls_auth_level::certificate_validation: return auth_level::certificate_validation;
    case config::tls_auth_level::domain_validation: return auth_level::domain_validation;
    }
    return auth_level::domain_validation;
}

const char* to_string(auth_level level) {
    switch (level) {
    case auth_level::none: return "none";
    case auth_level::encryption_only: return "encryption_only";
    case auth_level::certificate_validation: return "certificate_validation";
    case auth_level::domain_validation: return "domain_validation";
    }
    return "unknown";
}

peer_expectation expectation_for(const config::send_connector& connector, const std::string& recipient_domain,
                                 const std::string& mx_host, bool mx_dnssec_secure) {
    peer_expectation want;
    want.require_tls = connector.require_tls;
    // Opportunistic sending requires nothing: TLS is used when it works, and the verdict
    // line still says what it achieved (config/ refuses any other level without require_tls).
    want.required = connector.require_tls ? to_auth_level(connector.auth_level) : auth_level::none;
    const std::string domain = lower(recipient_domain);
    const std::string mx = lower(mx_host);
    if (!connector.tls_domain.empty()) {
        want.names.push_back(lower(connector.tls_domain));
    } else {
        want.names.push_back(domain);
        // OpenSSL's X509_check_host: a name with a leading dot matches any host below it.
        want.names.push_back("." + domain);
        if (mx_dnssec_secure && !mx.empty() && mx != domain) want.names.push_back(mx);
    }
    // SNI: the name we expect; an authenticated MX name is what that server knows itself as.
    if (!connector.tls_domain.empty()) want.sni = want.names.front();
    else if (mx_dnssec_secure && !mx.empty()) want.sni = mx;
    else want.sni = domain;
    if (want.required < auth_level::domain_validation) want.names.clear();
    return want;
}

void apply_dane(const policy::dane_requirement& dane, const std::string& mx_host,
                const std::string& recipient_domain, peer_expectation& want, attempt_plan& plan) {
    using kind = policy::dane_requirement::kind;
    if (dane.what != kind::authenticate && dane.what != kind::tls_unauthenticated) return;
    // RFC 7672 §2.2: TLS is mandatory for this host; no fallback to plaintext, whatever
    // an earlier failure or ignore_starttls would otherwise allow.
    want.require_tls = true;
    plan.starttls = client_settings::starttls_use::required;
    plan.implicit_tls = false;
    plan.plaintext_after_tls_failure = false;
    plan.previous_tls_failure.clear();
    if (dane.what == kind::tls_unauthenticated) {
        want.required = std::max(want.required, auth_level::encryption_only);
        want.policy = "DANE: " + dane.reason;
        return;
    }
    // DANE replaces PKIX for this host (§3.1): the TLSA records are the trust anchors and
    // the names OpenSSL checks (DANE-TA only) are the MX host and the next-hop domain.
    // §2.2.2: after a secure CNAME expansion the base domain is the expanded name, and
    // both it and the original MX name are reference identifiers.
    const std::string mx = lower(mx_host);
    const std::string base = dane.base.empty() ? mx : lower(dane.base);
    want.required = auth_level::domain_validation;
    want.names.clear();
    want.dane_records = dane.records;
    want.dane_base = base;
    want.dane_names = {base};
    if (mx != base) want.dane_names.push_back(mx);
    if (const auto domain = lower(recipient_domain); !domain.empty() && domain != mx && domain != base)
        want.dane_names.push_back(domain);
    want.sni = base;   // §8.1: the TLSA base domain
    want.policy = "DANE: " + dane.reason;
}

attempt_plan plan_attempt(const config::send_connector& connector, bool smart_host,
                          const std::optional<std::string>& tls_failure) {
    attempt_plan plan;
    if (smart_host && connector.smart_host_tls_mode == config::smart_host_tls::implicit) {
        plan.implicit_tls = true;
        plan.starttls = client_settings::starttls_use::never;
        return plan;
    }
    if (connector.ignore_starttls) {
        plan.starttls = client_settings::starttls_use::never;
        return plan;
    }
    if (connector.require_tls) {
        plan.starttls = client_settings::starttls_use::required;   // never plaintext
        return plan;
    }
    if (tls_failure) {
        // DESIGN §3: after a 454 or a failed handshake, the next attempt may go in plaintext.
        plan.starttls = client_settings::starttls_use::never;
        plan.plaintext_after_tls_failure = true;
        plan.previous_tls_failure = *tls_failure;
        return plan;
    }
    plan.starttls = client_settings::starttls_use::if_offered;
    return plan;
}

std::string tls_verdict::log_line() const {
    std::string line;
    if (tls)
        line = fmt::format("TLS protocol={} cipher={} subject=\"{}\" issuer=\"{}\" sha256={}", protocol, cipher,
                           subject, issuer, sha256.empty() ? "-" : sha256);
    else
        line = "TLS not used";
    line += fmt::format("; achieved={} required={}", to_string(achieved), to_string(required));
    if (ok()) line += "; verdict=pass";
    else line += "; verdict=fail";
    if (!result.empty()) line += "; result=" + result;
    if (!failure.empty()) line += "; reason=" + failure;
    if (!policy.empty()) line += "; policy=" + policy;
    return line;
}

std::shared_ptr<SSL_CTX> make_client_context(const config::configuration& cfg,
                                             const config::send_connector& connector,
                                             const client_tls_material* material) {
    tls::load_providers();
    ERR_clear_error();
    std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
    if (!ctx) throw tls::tls_error("cannot create a TLS client context: " + tls::openssl_errors());
    SSL_CTX* c = ctx.get();
    if (!SSL_CTX_set_min_proto_version(c, version_for(cfg)) || !SSL_CTX_set_max_proto_version(c, 0))
        throw tls::tls_error("cannot set the TLS versions: " + tls::openssl_errors());
    if (!SSL_CTX_set_cipher_list(c, cfg.tls.ciphers.c_str()))
        throw tls::tls_error("[tls] ciphers = \"" + cfg.tls.ciphers + "\": no usable cipher");
    if (!SSL_CTX_set_ciphersuites(c, cfg.tls.ciphersuites.c_str()))
        throw tls::tls_error("[tls] ciphersuites = \"" + cfg.tls.ciphersuites + "\": no usable suite");
    // AEAD only, whatever the configuration said (DESIGN §3): drop anything else here too.
    STACK_OF(SSL_CIPHER)* ciphers = SSL_CTX_get_ciphers(c);
    std::string aead_only;
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
        const SSL_CIPHER* cipher = sk_SSL_CIPHER_value(ciphers, i);
        if (SSL_CIPHER_get_version(cipher) == std::string_view("TLSv1.3")) continue;
        if (!SSL_CIPHER_is_aead(cipher)) continue;
        if (!aead_only.empty()) aead_only += ':';
        aead_only += SSL_CIPHER_get_name(cipher);
    }
    if (!aead_only.empty()) SSL_CTX_set_cipher_list(c, aead_only.c_str());
    SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);

    // Trust per connector: every root of the key ring, or exactly what trusted_roots names.
    // A pinned peer is an anchor by itself (partial chain), and only here when named.
    X509_STORE* store = SSL_CTX_get_cert_store(c);
    if (material && connector.trusted_roots.empty()) {
        for (const auto& root : material->roots) X509_STORE_add_cert(store, root.get());
    } else if (material) {
        bool pinned = false;
        for (const auto& label : connector.trusted_roots) {
            const auto* anchor = material->find_anchor(label);
            if (!anchor)
                throw tls::tls_error("send connector \"" + connector.name + "\": trusted_roots: \"" + label +
                                     "\" is not a trusted root or pinned peer of the key ring");
            X509_STORE_add_cert(store, anchor->certificate.get());
            pinned = pinned || anchor->pinned;
        }
        if (pinned) X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
    }
    if (connector.trust_system_store && SSL_CTX_set_default_verify_paths(c) != 1)
        throw tls::tls_error("send connector \"" + connector.name + "\": cannot load the system CA store: " +
                             tls::openssl_errors());
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, &record_client_verify);
    // Only makes DANE possible: a connection uses it when prepare_connection arms it.
    if (!policy::enable_dane(c)) throw tls::tls_error("cannot enable DANE: " + tls::openssl_errors());

    if (!connector.client_certificate.empty()) {
        const auto* id = material ? material->find(connector.client_certificate) : nullptr;
        if (!id)
            throw tls::tls_error("send connector \"" + connector.name + "\": client_certificate \"" +
                                 connector.client_certificate + "\" is not a certificate with a key in the key ring");
        if (SSL_CTX_use_certificate(c, id->certificate.get()) != 1 || SSL_CTX_use_PrivateKey(c, id->key.get()) != 1 ||
            SSL_CTX_check_private_key(c) != 1)
            throw tls::tls_error("send connector \"" + connector.name + "\": client_certificate \"" +
                                 connector.client_certificate + "\" is unusable: " + tls::openssl_errors());
        for (const auto& intermediate : id->chain) SSL_CTX_add1_chain_cert(c, intermediate.get());
    }
    ERR_clear_error();
    return ctx;
}

bool prepare_connection(SSL* ssl, const peer_expectation& want, verify_record* record, std::string* error) {
    SSL_set_ex_data(ssl, record_index(), record);
    if (!want.sni.empty() && SSL_set_tlsext_host_name(ssl, want.sni.c_str()) != 1) {
        if (error) *error = "cannot set SNI \"" + want.sni + "\": " + tls::openssl_errors();
        return false;
    }
    if (!want.dane_records.empty()) {
        if (auto e = policy::arm_dane(ssl, want.dane_base, want.dane_names, want.dane_records); !e.empty()) {
            if (error) *error = "DANE: " + e;
            return false;
        }
        // As for PKIX, the handshake completes and the verdict says why it failed.
        SSL_set_verify(ssl, SSL_VERIFY_PEER, &record_client_verify);
        return true;
    }
    if (!want.names.empty()) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
        // RFC 6125 §6.4.3: "*" only as the whole left-most label.
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        for (std::size_t i = 0; i < want.names.size(); ++i) {
            const auto& name = want.names[i];
            const int ok = i == 0 ? X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size())
                                  : X509_VERIFY_PARAM_add1_host(param, name.c_str(), name.size());
            if (ok != 1) {
                if (error) *error = "cannot set the expected name \"" + name + "\": " + tls::openssl_errors();
                return false;
            }
        }
    }
    return true;
}

namespace {

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

std::string name_mismatch_text(const std::vector<std::string>& wanted, const tls::session_info& info) {
    const std::string has = joined(info.peer.dns_names);
    return "certificate name mismatch (wanted " + joined(wanted) + "; certificate has " +
           (has.empty() ? std::string("no DNS names") : has) + ")";
}

/// RFC 8460 §4.3.2.2 result type of a certificate chain error.
std::string chain_failure_result(long error) {
    switch (error) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: return "certificate-expired";
    case X509_V_ERR_DANE_NO_MATCH: return "tlsa-invalid";
    default: return "certificate-not-trusted";
    }
}

/// DANE (RFC 7672 §3): a TLSA record authenticated the peer, or why none did. No PKIX
/// fallback: a chain a public CA would accept counts for nothing here.
void judge_dane(const SSL* ssl, const peer_expectation& want, const verify_record& record,
                const tls::session_info& info, tls_verdict& v) {
    const std::string word = policy::dane_verdict(const_cast<SSL*>(ssl));
    if (!word.empty() && record.first_chain_error == X509_V_OK && !record.name_mismatch) {
        v.achieved = auth_level::domain_validation;
        v.result = word;
        return;
    }
    if (!info.peer.presented) {
        v.failure = "no certificate presented";
        v.result = "validation-failure";
    } else if (record.name_mismatch) {
        v.failure = "DANE-TA: " + name_mismatch_text(want.dane_names, info);
        v.result = "certificate-host-mismatch";
    } else if (record.first_chain_error == X509_V_OK || record.first_chain_error == X509_V_ERR_DANE_NO_MATCH) {
        v.failure = fmt::format("DANE: no TLSA record of {} matches the certificate chain", want.dane_base);
        v.result = "tlsa-invalid";
    } else {
        v.failure = fmt::format("DANE: {} (depth {})", X509_verify_cert_error_string(record.first_chain_error),
                                record.chain_error_depth);
        v.result = chain_failure_result(record.first_chain_error);
    }
}

}  // namespace

tls_verdict evaluate(const SSL* ssl, const peer_expectation& want, const verify_record& record) {
    tls_verdict v;
    v.tls = true;
    v.required = want.required;
    const tls::session_info info = tls::inspect(ssl);
    v.protocol = info.protocol;
    v.cipher = info.cipher;
    v.subject = info.peer.subject;
    v.issuer = info.peer.issuer;
    v.sha256 = info.peer.sha256;
    v.achieved = auth_level::encryption_only;
    v.policy = want.policy;
    if (!want.dane_records.empty()) {
        judge_dane(ssl, want, record, info, v);
        return v;
    }
    std::string failure, result;
    if (!info.peer.presented) {
        failure = "no certificate presented";
        result = "validation-failure";
    } else if (record.first_chain_error != X509_V_OK) {
        failure = fmt::format("certificate not trusted: {} (depth {})",
                              X509_verify_cert_error_string(record.first_chain_error), record.chain_error_depth);
        result = chain_failure_result(record.first_chain_error);
    } else if (SSL_get_verify_result(ssl) != X509_V_OK && !record.name_mismatch) {
        failure = std::string("certificate not trusted: ") + X509_verify_cert_error_string(SSL_get_verify_result(ssl));
        result = chain_failure_result(SSL_get_verify_result(ssl));
    } else {
        v.achieved = auth_level::certificate_validation;
        if (!want.names.empty()) {
            if (record.name_mismatch) {
                failure = name_mismatch_text(want.names, info);
                result = "certificate-host-mismatch";
            } else {
                v.achieved = auth_level::domain_validation;
            }
        }
    }
    if (want.sts_testing && v.achieved < auth_level::domain_validation) {
        v.testing_failure = result;
        v.policy += "; enforce would fail: " + failure + " (" + result + ")";
    }
    if (v.achieved < v.required) {
        v.failure = failure;
        v.result = result;
    } else {
        // "pkix" only when the connector asked for a verified certificate and got one;
        // TLS that happened to verify where nothing was required proves nothing to anyone.
        v.result = want.mta_sts ? "mta-sts"
                   : v.required >= auth_level::certificate_validation ? "pkix"
                                                                      : "opportunistic";
    }
    return v;
}

tls_verdict no_tls_verdict(const peer_expectation& want, std::string failure, std::string result) {
    tls_verdict v;
    v.required = want.required;
    v.achieved = auth_level::none;
    v.failure = std::move(failure);
    v.policy = want.policy;
    // A handshake that failed says so even where nothing was required (the next attempt
    // may be plaintext, but this one was a TLS failure, and TLS-RPT counts it as one).
    if (!result.empty()) v.result = std::move(result);
    else v.result = v.ok() ? "cleartext" : "starttls-not-supported";
    return v;
}

void tls_failure_memory::remember(const std::string& host, std::string reason, std::chrono::steady_clock::time_point now) {
    std::lock_guard lock(mutex_);
    hosts_[host] = {std::move(reason), now + keep_};
}

void tls_failure_memory::forget(const std::string& host) {
    std::lock_guard lock(mutex_);
    hosts_.erase(host);
}

std::optional<std::string> tls_failure_memory::recall(const std::string& host,
                                                      std::chrono::steady_clock::time_point now) const {
    std::lock_guard lock(mutex_);
    auto it = hosts_.find(host);
    if (it == hosts_.end() || it->second.until <= now) return std::nullopt;
    return it->second.reason;
}

// --- key material ---------------------------------------------------------------------------

std::shared_ptr<const client_tls_material> client_tls_material::load(const config::configuration& cfg) {
    auto material = std::make_shared<client_tls_material>();
    std::error_code ec;
    if (!std::filesystem::exists(cfg.tls.keyring, ec)) return material;
    tls::secret password = tls::read_stash(cfg.tls.stash);
    tls::keyring ring = tls::keyring::read(cfg.tls.keyring, password.view());
    for (const auto& entry : ring.entries()) {
        switch (entry.role) {
        case tls::entry_role::root:
            material->roots.push_back(tls::up_ref(entry.certificate.get()));
            material->anchors.push_back({entry.label, tls::up_ref(entry.certificate.get()), false});
            break;
        case tls::entry_role::peer:
            material->anchors.push_back({entry.label, tls::up_ref(entry.certificate.get()), true});
            break;
        case tls::entry_role::server: {
            identity id;
            id.label = entry.label;
            id.certificate = tls::up_ref(entry.certificate.get());
            id.key = tls::up_ref(entry.key.get());
            for (const X509* intermediate : ring.chain_for(entry.certificate.get()))
                id.chain.push_back(tls::up_ref(const_cast<X509*>(intermediate)));
            material->identities.push_back(std::move(id));
            break;
        }
        case tls::entry_role::pending:
        case tls::entry_role::intermediate:
            break;
        }
    }
    return material;
}

const client_tls_material::identity* client_tls_material::find(const std::string& label) const {
    for (const auto& id : identities)
        if (id.label == label) return &id;
    return nullptr;
}

const client_tls_material::anchor* client_tls_material::find_anchor(const std::string& label) const {
    for (const auto& a : anchors)
        if (a.label == label) return &a;
    return nullptr;
}

void client_tls_material::check_trusted_roots(const config::configuration& cfg) const {
    for (const auto& sc : cfg.send_connectors)
        for (const auto& label : sc.trusted_roots)
            if (!find_anchor(label))
                throw tls::tls_error("send connector \"" + sc.name + "\": trusted_roots: \"" + label +
                                     "\" is not a trusted root or pinned peer of the key ring");
}

}  // namespace postern::delivery
