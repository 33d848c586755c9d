#include "tls/keyring/keyring_operations.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <openssl/err.h>

#include "tls/certificate_info.hpp"
#include "tls/keyring/certificate_request.hpp"

namespace postern::tls {

namespace {

const keyring_entry& existing(const keyring& ring, const std::string& label) {
    const keyring_entry* entry = ring.find(label);
    if (!entry) throw tls_error("no entry labelled \"" + label + "\"");
    return *entry;
}

bool contains_certificate(const keyring& ring, const X509* cert, std::string* label = nullptr) {
    for (const auto& entry : ring.entries())
        if (entry.certificate && X509_cmp(entry.certificate.get(), cert) == 0) {
            if (label) *label = entry.label;
            return true;
        }
    return false;
}

std::string label_for(const X509* cert) {
    std::string cn = common_name(X509_get_subject_name(cert));
    return cn.empty() ? subject_text(cert) : cn;
}

void check_label(const std::string& label) {
    if (label.empty()) throw tls_error("a label cannot be empty");
    for (unsigned char c : label)
        if (c < 0x20 || c == 0x7f) throw tls_error("a label cannot contain control characters");
}

}  // namespace

request_result add_request(keyring& ring, request_log& log, const request_options& options) {
    x509_name_ptr subject = parse_distinguished_name(options.subject);
    std::vector<std::string> names = options.names;
    std::string cn = common_name(subject.get());
    if (names.empty()) {
        if (cn.empty()) throw tls_error("the request needs --san or a CN in --subject");
        names = parse_subject_alt_names("DNS:" + cn);
    }
    std::string label = options.label.empty() ? ring.unique_label(cn.empty() ? names.front().substr(names.front().find(':') + 1) : cn)
                                              : options.label;
    check_label(label);
    if (ring.find(label)) throw tls_error("the label \"" + label + "\" is already in use");

    evp_pkey_ptr key = generate_key(options.key_type);
    x509_req_ptr request = make_request(key.get(), subject.get(), names);

    request_record record;
    record.label = label;
    record.date = now_text();
    record.subject = name_text(subject.get());
    record.names = names;
    record.key_type = key_type(key.get());
    record.public_key_sha256 = public_key_sha256(key.get());
    log.requests.push_back(record);
    ring.add_pending_key(label, std::move(key));
    return {label, to_pem(request.get())};
}

std::vector<std::string> trust_certificates(keyring& ring, std::vector<x509_ptr> certificates, bool pinned_peer,
                                            const std::string& label, const std::string& source) {
    // Check everything before changing anything: one refused certificate refuses the file.
    for (const auto& cert : certificates) {
        if (!is_ca(cert.get()) && !pinned_peer)
            throw keyring_refusal(source + ": " + subject_text(cert.get()) +
                                  " is not a CA certificate (no basicConstraints CA:TRUE); "
                                  "use --pinned-peer to trust this one certificate as itself");
        if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0)
            throw keyring_refusal(source + ": " + subject_text(cert.get()) + " expired on " +
                                  time_text(X509_get0_notAfter(cert.get())));
    }
    if (!label.empty()) check_label(label);
    std::vector<std::string> added;
    for (auto& cert : certificates) {
        std::string already;
        if (contains_certificate(ring, cert.get(), &already)) {
            added.push_back(already + " (already in the key ring)");
            continue;
        }
        std::string wanted = label.empty() ? label_for(cert.get()) : label;
        if (!label.empty() && certificates.size() == 1 && ring.find(label))
            throw tls_error("the label \"" + label + "\" is already in use");
        keyring_entry& entry = ring.add_certificate(ring.unique_label(wanted), std::move(cert));
        added.push_back(entry.label + " (" + std::string(to_string(entry.role)) + ")");
    }
    return added;
}

std::string install_certificate(keyring& ring, request_log& log, std::vector<x509_ptr> certificates,
                                const std::string& source) {
    keyring_entry* pending = nullptr;
    std::size_t leaf_index = 0;
    for (std::size_t i = 0; i < certificates.size() && !pending; ++i)
        for (auto& entry : ring.entries())
            if (entry.role == entry_role::pending &&
                EVP_PKEY_eq(X509_get0_pubkey(certificates[i].get()), entry.key.get()) == 1) {
                pending = &entry;
                leaf_index = i;
                break;
            }
    if (!pending) {
        std::string already;
        for (const auto& cert : certificates)
            if (contains_certificate(ring, cert.get(), &already))
                throw keyring_refusal(source + ": " + subject_text(cert.get()) + " is already installed as \"" + already + "\"");
        std::string open;
        for (const auto* entry : ring.with_role(entry_role::pending)) open += (open.empty() ? "" : ", ") + entry->label;
        throw keyring_refusal(source + ": no pending request matches the public key of " +
                              subject_text(certificates.front().get()) +
                              (open.empty() ? std::string(" (there are no pending requests)")
                                            : " (pending requests: " + open + ")"));
    }
    X509* leaf = certificates[leaf_index].get();
    const std::string subject = subject_text(leaf);
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
        throw keyring_refusal(source + ": " + subject + " is not valid before " + time_text(X509_get0_notBefore(leaf)));
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
        throw keyring_refusal(source + ": " + subject + " expired on " + time_text(X509_get0_notAfter(leaf)));

    // The chain must reach a root the ring already trusts: intermediates may come from the
    // ring or from the same file, roots only from the ring (`keyring trust` first).
    x509_store_ptr store(X509_STORE_new());
    STACK_OF(X509)* untrusted = sk_X509_new_null();
    for (const auto& entry : ring.entries()) {
        if (entry.role == entry_role::root) X509_STORE_add_cert(store.get(), entry.certificate.get());
        if (entry.role == entry_role::intermediate) sk_X509_push(untrusted, entry.certificate.get());
    }
    for (std::size_t i = 0; i < certificates.size(); ++i)
        if (i != leaf_index) sk_X509_push(untrusted, certificates[i].get());
    x509_store_ctx_ptr verify(X509_STORE_CTX_new());
    X509_STORE_CTX_init(verify.get(), store.get(), leaf, untrusted);
    bool chained = X509_verify_cert(verify.get()) == 1;
    std::vector<x509_ptr> used_intermediates;
    if (chained) {
        STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(verify.get());
        for (int i = 1; i < sk_X509_num(chain); ++i) {
            X509* link = sk_X509_value(chain, i);
            if (!is_self_signed(link) && !contains_certificate(ring, link)) used_intermediates.push_back(up_ref(link));
        }
    }
    std::string verify_error = X509_verify_cert_error_string(X509_STORE_CTX_get_error(verify.get()));
    sk_X509_free(untrusted);
    ERR_clear_error();
    if (!chained)
        throw keyring_refusal(source + ": " + subject + " does not chain to a trusted root of the key ring (" +
                              verify_error + "; issuer " + issuer_text(leaf) +
                              "); add the root first with `postern keyring trust`");
    if (!has_server_auth(leaf))
        throw keyring_refusal(source + ": " + subject + " lacks extendedKeyUsage serverAuth, so it cannot serve TLS");

    pending->certificate = up_ref(leaf);
    pending->role = entry_role::server;
    const std::string label = pending->label;
    const std::string fingerprint = public_key_sha256(pending->key.get());
    for (auto& intermediate : used_intermediates) {
        std::string intermediate_label = ring.unique_label(label_for(intermediate.get()));
        ring.add_certificate(std::move(intermediate_label), std::move(intermediate));
    }
    if (request_record* record = log.find_pending_by_key(fingerprint)) {
        record->state = request_state::installed;
        record->state_date = now_text();
    }
    return label;
}

void rename_entry(keyring& ring, request_log& log, const std::string& from, const std::string& to) {
    check_label(to);
    keyring_entry* entry = ring.find(from);
    if (!entry) throw tls_error("no entry labelled \"" + from + "\"");
    if (from == to) return;
    if (ring.find(to)) throw tls_error("the label \"" + to + "\" is already in use");
    entry->label = to;
    log.rename(from, to);
}

void set_default(keyring& ring, request_log& log, const std::string& label) {
    const keyring_entry& entry = existing(ring, label);
    if (entry.role != entry_role::server)
        throw tls_error("\"" + label + "\" is a " + std::string(to_string(entry.role)) +
                        " entry; only a key and certificate pair can be the default");
    log.default_label = label;
}

void remove_entry(keyring& ring, request_log& log, const std::string& label) {
    auto& entries = ring.entries();
    auto it = std::find_if(entries.begin(), entries.end(), [&](const keyring_entry& e) { return e.label == label; });
    if (it == entries.end()) throw tls_error("no entry labelled \"" + label + "\"");
    if (it->role == entry_role::pending) {
        if (request_record* record = log.find_pending_by_key(public_key_sha256(it->key.get()))) {
            record->state = request_state::cancelled;
            record->state_date = now_text();
        }
    }
    if (log.default_label == label) log.default_label.clear();
    entries.erase(it);
}

namespace {

struct export_content {
    const keyring_entry* entry;
    std::vector<const keyring_entry*> chain;   // intermediates, then the root
};

export_content content_for(const keyring& ring, const std::string& label, bool with_key) {
    const keyring_entry& entry = existing(ring, label);
    if (entry.role == entry_role::pending)
        throw tls_error("\"" + label + "\" is a pending request: it has no certificate yet");
    if (with_key && !entry.key) throw tls_error("\"" + label + "\" has no private key to export");
    export_content content{&entry, {}};
    if (entry.role == entry_role::root) return content;
    for (const X509* link : ring.chain_for(entry.certificate.get()))
        for (const auto& candidate : ring.entries())
            if (candidate.certificate.get() == link) content.chain.push_back(&candidate);
    if (const keyring_entry* root = ring.root_for(entry.certificate.get())) content.chain.push_back(root);
    return content;
}

}  // namespace

std::string export_pem(const keyring& ring, const std::string& label, bool with_key) {
    export_content content = content_for(ring, label, with_key);
    std::string pem = to_pem(content.entry->certificate.get());
    for (const auto* link : content.chain) pem += to_pem(link->certificate.get());
    if (with_key) pem += private_key_to_pem(content.entry->key.get());
    return pem;
}

std::string export_pkcs12(const keyring& ring, const std::string& label, bool with_key, std::string_view password,
                          pkcs12_protection protection) {
    export_content content = content_for(ring, label, with_key);
    keyring out;
    keyring_entry main;
    main.label = content.entry->label;
    main.certificate = up_ref(content.entry->certificate.get());
    if (with_key) main.key = up_ref(content.entry->key.get());
    main.role = with_key ? entry_role::server : classify_certificate(main.certificate.get());
    out.entries().push_back(std::move(main));
    for (const auto* link : content.chain) out.add_certificate(link->label, up_ref(link->certificate.get()));
    return out.serialize(password, protection);
}

nlohmann::json describe(const keyring& ring, const request_log& log, const keyring_entry& entry) {
    nlohmann::json item;
    item["label"] = entry.label;
    item["role"] = std::string(to_string(entry.role));
    item["default"] = entry.role == entry_role::server &&
                      (log.default_label == entry.label ||
                       (log.default_label.empty() && ring.with_role(entry_role::server).size() == 1));
    if (entry.certificate) {
        const X509* cert = entry.certificate.get();
        item["subject"] = subject_text(cert);
        item["names"] = subject_alt_names(cert);
        item["issuer"] = issuer_text(cert);
        item["not_before"] = time_text(X509_get0_notBefore(cert));
        item["not_after"] = time_text(X509_get0_notAfter(cert));
        item["days_left"] = days_left(cert);
        item["key_type"] = key_type(X509_get0_pubkey(cert));
        item["sha256"] = sha256_fingerprint(cert);
        item["sha1"] = sha1_fingerprint(cert);
        item["public_key_sha256"] = public_key_sha256(X509_get0_pubkey(cert));
    } else if (entry.key) {
        std::string fingerprint = public_key_sha256(entry.key.get());
        item["key_type"] = key_type(entry.key.get());
        item["public_key_sha256"] = fingerprint;
        for (const auto& record : log.requests)
            if (record.public_key_sha256 == fingerprint && record.state == request_state::pending) {
                item["subject"] = record.subject;
                item["names"] = record.names;
                item["requested"] = record.date;
            }
    }
    return item;
}

}  // namespace postern::tls
