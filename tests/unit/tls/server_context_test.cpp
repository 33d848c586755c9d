#include <gtest/gtest.h>

#include <functional>

#include "tls/certificate_info.hpp"
#include "tls/keyring/keyring.hpp"
#include "tls/keyring/request_log.hpp"
#include "tls/server_context.hpp"
#include "unit/tls/test_pki.hpp"

namespace postern::tls {
namespace {

using test::lab_pki;
using test::temp_dir;

/// A key ring with the lab root and one server certificate, and the [tls] section for it.
struct served_keyring {
    lab_pki pki;
    temp_dir dir;
    config::configuration cfg;

    served_keyring() {
        keyring ring;
        ring.add_certificate("lab root", up_ref(pki.ca.get()));
        ring.entries().push_back({"mx1", entry_role::server, up_ref(pki.server.get()), up_ref(pki.server_key.get())});
        save(ring);
        test::write_text(dir / "keyring.sth", "stash-password\n", 0600);
        cfg.tls.keyring = dir / "keyring.p12";
        cfg.tls.stash = dir / "keyring.sth";
    }
    void save(const keyring& ring) { ring.write(dir / "keyring.p12", "stash-password"); }
};

struct handshake_result {
    bool ok = false;
    ssl_ptr server;
    ssl_ptr client;
};

/// Runs a handshake between a client and the server context over an in-memory BIO pair.
handshake_result handshake(SSL_CTX* server_ctx, SSL_CTX* client_ctx,
                           const std::function<void(SSL*)>& prepare_server = {}) {
    handshake_result r;
    r.server.reset(SSL_new(server_ctx));
    if (prepare_server) prepare_server(r.server.get());
    r.client.reset(SSL_new(client_ctx));
    BIO *server_end = nullptr, *client_end = nullptr;
    BIO_new_bio_pair(&server_end, 0, &client_end, 0);
    SSL_set_bio(r.server.get(), server_end, server_end);
    SSL_set_bio(r.client.get(), client_end, client_end);
    SSL_set_accept_state(r.server.get());
    SSL_set_connect_state(r.client.get());
    SSL_set_tlsext_host_name(r.client.get(), "mx1.example.test");
    bool server_done = false, client_done = false;
    for (int round = 0; round < 50 && !(server_done && client_done); ++round) {
        if (!client_done) {
            int rc = SSL_do_handshake(r.client.get());
            if (rc == 1) client_done = true;
            else if (SSL_get_error(r.client.get(), rc) != SSL_ERROR_WANT_READ) return r;
        }
        if (!server_done) {
            int rc = SSL_do_handshake(r.server.get());
            if (rc == 1) server_done = true;
            else if (SSL_get_error(r.server.get(), rc) != SSL_ERROR_WANT_READ) return r;
        }
    }
    // TLS 1.3 tickets and the client's view of a late alert arrive after the handshake.
    char byte;
    SSL_read(r.client.get(), &byte, 1);
    ERR_clear_error();
    r.ok = server_done && client_done;
    return r;
}

ssl_ctx_ptr client_context(int max_version, const char* ciphers = nullptr) {
    ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_set_min_proto_version(ctx.get(), 0);
    SSL_CTX_set_max_proto_version(ctx.get(), max_version);
    if (ciphers) SSL_CTX_set_cipher_list(ctx.get(), ciphers);
    return ctx;
}

void present(SSL_CTX* client, X509* cert, EVP_PKEY* key) {
    SSL_CTX_use_certificate(client, cert);
    SSL_CTX_use_PrivateKey(client, key);
}

TEST(server_context, builds_from_the_key_ring) {
    served_keyring ring;
    auto context = server_context::build(ring.cfg);
    ASSERT_NE(context->native(), nullptr);
    EXPECT_EQ(context->certificate_label(), "mx1");
    EXPECT_EQ(context->certificate_subject(), "CN=mx1.example.test");
    EXPECT_GE(context->days_left(), 363);
    EXPECT_LE(context->days_left(), 365);
    SSL_CTX* ctx = context->native();
    EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    EXPECT_EQ(SSL_CTX_get_max_proto_version(ctx), 0);
    EXPECT_TRUE(SSL_CTX_get_options(ctx) & SSL_OP_CIPHER_SERVER_PREFERENCE);
    EXPECT_TRUE(SSL_CTX_get_options(ctx) & SSL_OP_NO_COMPRESSION);
    EXPECT_TRUE(SSL_CTX_get_options(ctx) & SSL_OP_NO_RENEGOTIATION);
    EXPECT_FALSE(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET);
    EXPECT_EQ(SSL_CTX_sess_get_cache_size(ctx), 8192);
    EXPECT_EQ(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
    STACK_OF(X509_NAME)* client_cas = SSL_CTX_get_client_CA_list(ctx);
    ASSERT_EQ(sk_X509_NAME_num(client_cas), 1);
    EXPECT_EQ(name_text(sk_X509_NAME_value(client_cas, 0)), "CN=Test Root CA");
}

TEST(server_context, tls_1_2_and_1_3_are_accepted) {
    served_keyring ring;
    auto context = server_context::build(ring.cfg);
    auto tls12 = client_context(TLS1_2_VERSION);
    auto r12 = handshake(context->native(), tls12.get());
    ASSERT_TRUE(r12.ok);
    session_info info12 = inspect(r12.server.get());
    EXPECT_EQ(info12.protocol, "TLSv1.2");
    EXPECT_EQ(info12.cipher, "ECDHE-ECDSA-AES256-GCM-SHA384");   // server preference order
    EXPECT_FALSE(info12.peer.presented);

    auto tls13 = client_context(0);
    auto r13 = handshake(context->native(), tls13.get());
    ASSERT_TRUE(r13.ok);
    session_info info13 = inspect(r13.server.get());
    EXPECT_EQ(info13.protocol, "TLSv1.3");
    EXPECT_EQ(info13.cipher, "TLS_AES_256_GCM_SHA384");
    EXPECT_EQ(info13.cipher_bits, 256);
}

TEST(server_context, tls_1_1_client_is_refused) {
    served_keyring ring;
    auto context = server_context::build(ring.cfg);
    // An old peer needs security level 0 to even offer TLS 1.1 (DESIGN.md §7).
    auto old_client = client_context(TLS1_1_VERSION, "DEFAULT:@SECLEVEL=0");
    EXPECT_FALSE(handshake(context->native(), old_client.get()).ok);
}

TEST(server_context, non_aead_cipher_is_refused) {
    served_keyring ring;
    auto context = server_context::build(ring.cfg);
    auto cbc_client = client_context(TLS1_2_VERSION, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA");
    EXPECT_FALSE(handshake(context->native(), cbc_client.get()).ok);
}

TEST(server_context, min_version_1_3_refuses_tls_1_2) {
    served_keyring ring;
    ring.cfg.tls.min_version = "1.3";
    auto context = server_context::build(ring.cfg);
    auto tls12 = client_context(TLS1_2_VERSION);
    EXPECT_FALSE(handshake(context->native(), tls12.get()).ok);
    auto tls13 = client_context(0);
    EXPECT_TRUE(handshake(context->native(), tls13.get()).ok);
}

TEST(server_context, weak_configuration_is_an_error) {
    served_keyring ring;
    ring.cfg.tls.ciphers = "ECDHE+AESGCM:AES128-SHA";
    try {
        server_context::build(ring.cfg);
        FAIL() << "a CBC suite was accepted";
    } catch (const tls_error& e) {
        EXPECT_NE(std::string(e.what()).find("AES128-SHA"), std::string::npos) << e.what();
    }
    ring.cfg.tls.ciphers = "ECDHE+AESGCM";
    ring.cfg.tls.min_version = "1.1";
    EXPECT_THROW(server_context::build(ring.cfg), tls_error);
}

TEST(server_context, client_certificate_verified_against_the_key_ring_roots) {
    served_keyring ring;
    auto context = server_context::build(ring.cfg);
    for (int version : {TLS1_2_VERSION, 0}) {
        auto partner_key = test::make_ec_key();
        auto partner = ring.pki.issue({.cn = "relay.partner.test", .sans = {"DNS:relay.partner.test"}}, partner_key.get());
        auto client = client_context(version);
        present(client.get(), partner.get(), partner_key.get());
        auto r = handshake(context->native(), client.get());
        ASSERT_TRUE(r.ok);
        session_info info = inspect(r.server.get());
        EXPECT_TRUE(info.peer.presented);
        EXPECT_TRUE(info.peer.verified) << info.peer.verify_error;
        EXPECT_EQ(info.peer.subject, "CN=relay.partner.test");
        EXPECT_EQ(info.peer.issuer, "CN=Test Root CA");
        EXPECT_EQ(info.peer.sha256, sha256_fingerprint(partner.get()));
        EXPECT_EQ(info.peer.dns_names, std::vector<std::string>{"relay.partner.test"});

        std::string why;
        EXPECT_TRUE(is_partner(r.server.get(), {"relay.partner.test"}, {}, &why)) << why;
        EXPECT_TRUE(is_partner(r.server.get(), {"*.partner.test"}, {}, &why)) << why;
        EXPECT_FALSE(is_partner(r.server.get(), {"other.test"}, {}, &why));
        EXPECT_NE(why.find("matches no partner"), std::string::npos) << why;
        EXPECT_TRUE(is_partner(r.server.get(), {}, {"sha256:" + info.peer.sha256}, &why)) << why;
    }
}

TEST(server_context, untrusted_client_certificate_still_completes_the_handshake) {
    served_keyring ring;
    auto context = server_context::build(ring.cfg);
    auto stranger_key = test::make_ec_key();
    auto stranger = test::make_cert({.cn = "stranger.test", .sans = {"DNS:stranger.test"}}, stranger_key.get(), nullptr, nullptr);
    auto client = client_context(0);
    present(client.get(), stranger.get(), stranger_key.get());
    auto r = handshake(context->native(), client.get());
    ASSERT_TRUE(r.ok);
    session_info info = inspect(r.server.get());
    EXPECT_TRUE(info.peer.presented);
    EXPECT_FALSE(info.peer.verified);
    EXPECT_EQ(info.peer.verify_error, "self-signed certificate");
    std::string why;
    // Even its own fingerprint does not make an unverified certificate a partner.
    EXPECT_FALSE(is_partner(r.server.get(), {"stranger.test"}, {info.peer.sha256}, &why));
    EXPECT_NE(why.find("not verified"), std::string::npos) << why;

    auto no_cert = client_context(0);
    auto r2 = handshake(context->native(), no_cert.get());
    ASSERT_TRUE(r2.ok);
    EXPECT_FALSE(inspect(r2.server.get()).peer.presented);
    EXPECT_FALSE(is_partner(r2.server.get(), {"x"}, {}, &why));
    EXPECT_EQ(why, "no client certificate");
}

TEST(server_context, partner_name_matching_follows_rfc_6125) {
    served_keyring ring;
    auto context = server_context::build(ring.cfg);
    auto key = test::make_ec_key();
    // CN says one thing, the DNS SAN another: with a DNS SAN the CN never counts.
    auto cert = ring.pki.issue({.cn = "cn-only.partner.test", .sans = {"DNS:w.partner.test", "IP:192.0.2.7"}}, key.get());
    auto client = client_context(0);
    present(client.get(), cert.get(), key.get());
    auto r = handshake(context->native(), client.get());
    ASSERT_TRUE(r.ok);
    EXPECT_FALSE(is_partner(r.server.get(), {"cn-only.partner.test"}, {}));
    EXPECT_TRUE(is_partner(r.server.get(), {"w.partner.test"}, {}));
    EXPECT_FALSE(is_partner(r.server.get(), {"partner.test"}, {}));
}

TEST(server_context, a_pinned_peer_is_trusted_by_itself_only_where_a_connector_names_it) {
    served_keyring ring;
    auto peer_key = test::make_ec_key();
    auto peer = test::make_cert({.cn = "pinned.test", .sans = {"DNS:pinned.test"}}, peer_key.get(), nullptr, nullptr);
    keyring k = keyring::read(ring.cfg.tls.keyring, "stash-password");
    k.add_certificate("pinned", up_ref(peer.get()));
    ring.save(k);
    config::receive_connector partners;
    partners.name = "partners";
    partners.trusted_roots = {"pinned"};
    ring.cfg.receive_connectors = {partners};
    auto context = server_context::build(ring.cfg);
    auto client = client_context(0);
    present(client.get(), peer.get(), peer_key.get());
    auto named = handshake(context->native(), client.get(), [&](SSL* ssl) { context->apply_trust(ssl, "partners"); });
    ASSERT_TRUE(named.ok);
    EXPECT_TRUE(inspect(named.server.get()).peer.verified);
    // Any other connector: the pinned certificate is nobody's anchor there.
    auto elsewhere = handshake(context->native(), client.get(), [&](SSL* ssl) { context->apply_trust(ssl, "other"); });
    ASSERT_TRUE(elsewhere.ok);
    EXPECT_FALSE(inspect(elsewhere.server.get()).peer.verified);
    // Pinned peers are trust anchors, not names to advertise as acceptable issuers.
    EXPECT_EQ(sk_X509_NAME_num(SSL_CTX_get_client_CA_list(context->native())), 1);
}

TEST(server_context, a_connector_with_trusted_roots_trusts_those_roots_alone) {
    served_keyring ring;
    lab_pki other;                                  // a partner's private CA, also in the key ring
    keyring k = keyring::read(ring.cfg.tls.keyring, "stash-password");
    k.add_certificate("partner root", up_ref(other.ca.get()));
    ring.save(k);
    config::receive_connector internal;
    internal.name = "internal";
    internal.trusted_roots = {"lab root"};
    ring.cfg.receive_connectors = {internal};
    auto context = server_context::build(ring.cfg);
    auto client = client_context(0);
    present(client.get(), other.server.get(), other.server_key.get());   // issued by the partner's CA
    auto on_internal = handshake(context->native(), client.get(), [&](SSL* ssl) { context->apply_trust(ssl, "internal"); });
    ASSERT_TRUE(on_internal.ok);
    EXPECT_FALSE(inspect(on_internal.server.get()).peer.verified);
    auto by_default = handshake(context->native(), client.get(), [&](SSL* ssl) { context->apply_trust(ssl, "any"); });
    ASSERT_TRUE(by_default.ok);
    EXPECT_TRUE(inspect(by_default.server.get()).peer.verified);   // every root of the key ring

    config::receive_connector wrong;
    wrong.name = "wrong";
    wrong.trusted_roots = {"no such label"};
    ring.cfg.receive_connectors = {wrong};
    try {
        server_context::build(ring.cfg);
        FAIL() << "an unknown trusted_roots label was accepted";
    } catch (const tls_error& e) {
        EXPECT_NE(std::string(e.what()).find("\"no such label\" is not a trusted root"), std::string::npos) << e.what();
    }
}

TEST(server_context, sends_the_intermediate_chain) {
    served_keyring ring;
    auto issuing_key = test::make_ec_key();
    auto issuing = ring.pki.issue({.cn = "Issuing CA", .ca = true}, issuing_key.get());
    auto leaf_key = test::make_ec_key();
    auto leaf = test::make_cert({.cn = "mx9.example.test", .sans = {"DNS:mx9.example.test"}}, leaf_key.get(),
                                issuing.get(), issuing_key.get());
    keyring k;
    k.add_certificate("root", up_ref(ring.pki.ca.get()));
    k.add_certificate("issuing", up_ref(issuing.get()));
    k.entries().push_back({"mx9", entry_role::server, up_ref(leaf.get()), up_ref(leaf_key.get())});
    ring.save(k);
    auto context = server_context::build(ring.cfg);
    // A client trusting only the root verifies the server: the intermediate was sent.
    auto client = client_context(0);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(client.get()), ring.pki.ca.get());
    SSL_CTX_set_verify(client.get(), SSL_VERIFY_PEER, nullptr);
    auto r = handshake(context->native(), client.get());
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(SSL_get_verify_result(r.client.get()), X509_V_OK);
    session_info client_view = inspect(r.client.get());
    EXPECT_TRUE(client_view.peer.verified);
    EXPECT_EQ(client_view.peer.subject, "CN=mx9.example.test");
}

TEST(server_context, default_label_from_the_request_log_picks_among_several) {
    served_keyring ring;
    keyring k = keyring::read(ring.cfg.tls.keyring, "stash-password");
    auto key = test::make_ec_key();
    k.entries().push_back({"mx2", entry_role::server, ring.pki.issue({.cn = "mx2.example.test"}, key.get()), std::move(key)});
    ring.save(k);
    EXPECT_THROW(server_context::build(ring.cfg), tls_error);
    request_log log;
    log.default_label = "mx2";
    log.save(ring.cfg.tls.keyring);
    EXPECT_EQ(server_context::build(ring.cfg)->certificate_label(), "mx2");
    ring.cfg.tls.certificate = "mx1";
    EXPECT_EQ(server_context::build(ring.cfg)->certificate_label(), "mx1");
}

TEST(server_context, readable_stash_is_refused_with_the_file_named) {
    served_keyring ring;
    ::chmod(ring.cfg.tls.stash.c_str(), 0644);
    try {
        server_context::build(ring.cfg);
        FAIL() << "a world-readable stash was accepted";
    } catch (const tls_error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find(ring.cfg.tls.stash.string()), std::string::npos) << what;
        EXPECT_EQ(what.find("stash-password"), std::string::npos);
    }
}

TEST(server_context, session_resumption_works_with_client_certificates_requested) {
    served_keyring ring;
    auto context = server_context::build(ring.cfg);
    auto client = client_context(TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(client.get(), SSL_SESS_CACHE_CLIENT);
    auto first = handshake(context->native(), client.get());
    ASSERT_TRUE(first.ok);
    SSL_SESSION* session = SSL_get1_session(first.client.get());
    ASSERT_NE(session, nullptr);
    handshake_result second;
    second.server.reset(SSL_new(context->native()));
    // Resume by hand: a new client SSL that carries the saved session.
    ssl_ptr resuming(SSL_new(client.get()));
    SSL_set_session(resuming.get(), session);
    SSL_SESSION_free(session);
    BIO *s = nullptr, *c = nullptr;
    BIO_new_bio_pair(&s, 0, &c, 0);
    SSL_set_bio(second.server.get(), s, s);
    SSL_set_bio(resuming.get(), c, c);
    SSL_set_accept_state(second.server.get());
    SSL_set_connect_state(resuming.get());
    for (int i = 0; i < 20; ++i) {
        SSL_do_handshake(resuming.get());
        SSL_do_handshake(second.server.get());
    }
    EXPECT_TRUE(SSL_is_init_finished(second.server.get()));
    EXPECT_TRUE(inspect(second.server.get()).resumed);
}

}  // namespace
}  // namespace postern::tls
