#include "tls/server_context.hpp"

#include <mutex>

#include <openssl/err.h>

#include "tls/certificate_info.hpp"
#include "tls/keyring/keyring.hpp"
#include "tls/keyring/request_log.hpp"
#include "tls/keyring/stash.hpp"
#include "tls/openssl_ptr.hpp"
#include "tls/peer_verification.hpp"

namespace postern::tls {

namespace {

// The session cache only hands a session back to contexts with the same id context; it also
// must be set whenever client certificates are requested, or resumption fails outright.
constexpr unsigned char session_id_context[] = "postern-smtp";

[[noreturn]] void config_error(const config::configuration& cfg, const std::string& what) {
    std::string where = cfg.file.empty() ? std::string("[tls]") : cfg.file.string() + ": [tls]";
    throw tls_error(where + " " + what);
}

int version_for(const config::configuration& cfg) {
    if (cfg.tls.min_version == "1.2") return TLS1_2_VERSION;
    if (cfg.tls.min_version == "1.3") return TLS1_3_VERSION;
    config_error(cfg, "min_version = \"" + cfg.tls.min_version + "\": only \"1.2\" or \"1.3\" exist");
}

/// DESIGN.md §3: any non-AEAD TLS 1.2 suite is refused, even when the loader let it through.
void refuse_weak_ciphers(SSL_CTX* ctx, const config::configuration& cfg) {
    STACK_OF(SSL_CIPHER)* ciphers = SSL_CTX_get_ciphers(ctx);
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
        const SSL_CIPHER* cipher = sk_SSL_CIPHER_value(ciphers, i);
        if (!SSL_CIPHER_is_aead(cipher))
            config_error(cfg, std::string("ciphers: ") + SSL_CIPHER_get_name(cipher) +
                                  " is not an AEAD cipher (RC4, 3DES, CBC and NULL suites are refused)");
        if (SSL_CIPHER_get_kx_nid(cipher) != NID_kx_ecdhe && SSL_CIPHER_get_kx_nid(cipher) != NID_kx_any &&
            SSL_CIPHER_get_kx_nid(cipher) != NID_kx_dhe)
            config_error(cfg, std::string("ciphers: ") + SSL_CIPHER_get_name(cipher) +
                                  " has no forward secrecy (only ECDHE and DHE key exchange)");
    }
}

}  // namespace

std::shared_ptr<server_context> server_context::build(const config::configuration& cfg) {
    load_providers();
    ERR_clear_error();
    const auto& keyring_file = cfg.tls.keyring;
    secret password = read_stash(cfg.tls.stash);
    keyring ring = keyring::read(keyring_file, password.view());
    request_log log = request_log::load(keyring_file);
    const keyring_entry& server = select_server_entry(ring, cfg.tls.certificate, log.default_label, keyring_file);

    std::shared_ptr<server_context> context(new server_context());
    context->ctx_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX* ctx = context->ctx_;
    if (!ctx) throw tls_error("cannot create a TLS context: " + openssl_errors());
    // An idle session keeps no record buffers (about 34 KB each otherwise): they are taken
    // when a record comes and given back when it is consumed.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    if (!SSL_CTX_set_min_proto_version(ctx, version_for(cfg)) || !SSL_CTX_set_max_proto_version(ctx, 0))
        throw tls_error("cannot set the TLS versions: " + openssl_errors());
    if (!SSL_CTX_set_cipher_list(ctx, cfg.tls.ciphers.c_str()))
        config_error(cfg, "ciphers = \"" + cfg.tls.ciphers + "\": no usable cipher (" + openssl_errors() + ")");
    if (!SSL_CTX_set_ciphersuites(ctx, cfg.tls.ciphersuites.c_str()))
        config_error(cfg, "ciphersuites = \"" + cfg.tls.ciphersuites + "\": no usable suite (" + openssl_errors() + ")");
    refuse_weak_ciphers(ctx, cfg);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    if (!SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384"))
        throw tls_error("cannot set the key exchange groups: " + openssl_errors());

    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, static_cast<long>(cfg.tls.session_cache_size));
    SSL_CTX_set_session_id_context(ctx, session_id_context, sizeof session_id_context - 1);

    // The server certificate, its key and the intermediates that lead to it.
    const std::string file = keyring_file.string();
    if (SSL_CTX_use_certificate(ctx, server.certificate.get()) != 1)
        throw tls_error(file + ": certificate \"" + server.label + "\" is unusable: " + openssl_errors());
    if (SSL_CTX_use_PrivateKey(ctx, server.key.get()) != 1)
        throw tls_error(file + ": key \"" + server.label + "\" is unusable: " + openssl_errors());
    if (SSL_CTX_check_private_key(ctx) != 1)
        throw tls_error(file + ": key \"" + server.label + "\" does not match its certificate");
    for (const X509* intermediate : ring.chain_for(server.certificate.get()))
        if (SSL_CTX_add1_chain_cert(ctx, const_cast<X509*>(intermediate)) != 1)
            throw tls_error(file + ": cannot add an intermediate certificate: " + openssl_errors());

    // Client certificates: requested, never required; verified against the key ring's own
    // roots only, never the system store. A connector with trusted_roots gets a store of
    // its own (apply_trust): the roots and pinned peers it names, nothing else, so a
    // partner's private CA or pinned certificate is trusted where it is meant to be only.
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME)* client_ca_names = sk_X509_NAME_new_null();
    for (const auto& entry : ring.entries()) {
        if (entry.role != entry_role::root) continue;
        X509_STORE_add_cert(store, entry.certificate.get());
        sk_X509_NAME_push(client_ca_names, X509_NAME_dup(X509_get_subject_name(entry.certificate.get())));
    }
    SSL_CTX_set_client_CA_list(ctx, client_ca_names);
    for (const auto& rc : cfg.receive_connectors) {
        if (rc.trusted_roots.empty()) continue;
        connector_trust own{X509_STORE_new(), sk_X509_NAME_new_null(), false};
        context->trust_[rc.name] = own;               // freed with the context, also on a throw below
        for (const auto& label : rc.trusted_roots) {
            const auto* entry = ring.find(label);
            if (!entry || (entry->role != entry_role::root && entry->role != entry_role::peer))
                throw tls_error(file + ": receive connector \"" + rc.name + "\": trusted_roots: \"" + label +
                                "\" is not a trusted root or pinned peer of the key ring");
            X509_STORE_add_cert(own.store, entry->certificate.get());
            if (entry->role == entry_role::root)
                sk_X509_NAME_push(own.ca_names, X509_NAME_dup(X509_get_subject_name(entry->certificate.get())));
            else
                context->trust_[rc.name].partial_chain = true;   // a pinned peer is an anchor by itself
        }
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, &record_verify_result);
    ERR_clear_error();

    context->days_left_ = tls::days_left(server.certificate.get());
    context->subject_ = subject_text(server.certificate.get());
    context->label_ = server.label;
    return context;
}

void server_context::apply_trust(SSL* ssl, const std::string& connector) const {
    auto it = trust_.find(connector);
    if (it == trust_.end()) return;
    const auto& own = it->second;
    SSL_set1_verify_cert_store(ssl, own.store);
    STACK_OF(X509_NAME)* names = SSL_dup_CA_list(own.ca_names);
    SSL_set_client_CA_list(ssl, names);
    if (own.partial_chain) X509_VERIFY_PARAM_set_flags(SSL_get0_param(ssl), X509_V_FLAG_PARTIAL_CHAIN);
}

server_context::~server_context() {
    for (auto& [name, own] : trust_) {
        X509_STORE_free(own.store);
        sk_X509_NAME_pop_free(own.ca_names, X509_NAME_free);
    }
    if (ctx_) SSL_CTX_free(ctx_);
}

}  // namespace postern::tls
