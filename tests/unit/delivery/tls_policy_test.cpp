// Unit tests for delivery/tls_policy: levels, names, plans, and verdicts of real
// in-memory handshakes against certificates from a lab CA.
#include "delivery/tls_policy.hpp"
#include "tls/error.hpp"

#include <filesystem>

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "delivery/client_tls.hpp"
#include "tls/keyring/certificate_request.hpp"
#include "tls/lab_ca/lab_ca.hpp"

namespace postern::delivery {
namespace {

namespace fs = std::filesystem;

config::send_connector connector(bool require_tls, config::tls_auth_level level, std::string tls_domain = {}) {
    config::send_connector c;
    c.name = "to-partner";
    c.require_tls = require_tls;
    c.auth_level = level;
    c.tls_domain = std::move(tls_domain);
    return c;
}

TEST(tls_policy, levels_are_ordered) {
    EXPECT_LT(auth_level::none, auth_level::encryption_only);
    EXPECT_LT(auth_level::encryption_only, auth_level::certificate_validation);
    EXPECT_LT(auth_level::certificate_validation, auth_level::domain_validation);
}

TEST(tls_policy, domain_validation_names_follow_design) {
    using L = config::tls_auth_level;
    auto tls_domain = expectation_for(connector(true, L::domain_validation, "Partner.Test"), "sub.partner.test",
                                      "mx.partner.test", true);
    EXPECT_EQ(tls_domain.names, std::vector<std::string>{"partner.test"});
    EXPECT_EQ(tls_domain.sni, "partner.test");

    auto insecure_mx = expectation_for(connector(true, L::domain_validation), "partner.test", "mx.evil.test", false);
    EXPECT_EQ(insecure_mx.names, (std::vector<std::string>{"partner.test", ".partner.test"}));
    EXPECT_EQ(insecure_mx.sni, "partner.test");

    auto secure_mx = expectation_for(connector(true, L::domain_validation), "partner.test", "mx.hoster.test.", true);
    EXPECT_EQ(secure_mx.names, (std::vector<std::string>{"partner.test", ".partner.test", "mx.hoster.test"}));
    EXPECT_EQ(secure_mx.sni, "mx.hoster.test");

    auto chain_only = expectation_for(connector(true, L::certificate_validation), "partner.test", "", false);
    EXPECT_TRUE(chain_only.names.empty());
    EXPECT_EQ(chain_only.required, auth_level::certificate_validation);

    auto opportunistic = expectation_for(connector(false, L::encryption_only), "partner.test", "", false);
    EXPECT_EQ(opportunistic.required, auth_level::none);
    EXPECT_FALSE(opportunistic.require_tls);
}

TEST(tls_policy, plans) {
    using L = config::tls_auth_level;
    using use = client_settings::starttls_use;
    EXPECT_EQ(plan_attempt(connector(true, L::domain_validation), false, std::nullopt).starttls, use::required);
    // require_tls never falls back, whatever happened before.
    EXPECT_EQ(plan_attempt(connector(true, L::encryption_only), false, std::string("454")).starttls, use::required);
    auto fallback = plan_attempt(connector(false, L::encryption_only), false, std::string("handshake failed"));
    EXPECT_EQ(fallback.starttls, use::never);
    EXPECT_TRUE(fallback.plaintext_after_tls_failure);
    EXPECT_EQ(plan_attempt(connector(false, L::encryption_only), false, std::nullopt).starttls, use::if_offered);
    auto ignore = connector(false, L::encryption_only);
    ignore.ignore_starttls = true;
    EXPECT_EQ(plan_attempt(ignore, false, std::nullopt).starttls, use::never);
    auto implicit = connector(true, L::domain_validation);
    implicit.smart_host_tls_mode = config::smart_host_tls::implicit;
    EXPECT_TRUE(plan_attempt(implicit, true, std::nullopt).implicit_tls);
    EXPECT_FALSE(plan_attempt(implicit, false, std::nullopt).implicit_tls);   // MX hosts use STARTTLS
}

TEST(tls_policy, failure_memory_expires) {
    tls_failure_memory memory(std::chrono::seconds(60));
    const auto now = std::chrono::steady_clock::now();
    memory.remember("10.0.0.1:25", "454 4.7.0 TLS not available", now);
    EXPECT_EQ(memory.recall("10.0.0.1:25", now), "454 4.7.0 TLS not available");
    EXPECT_FALSE(memory.recall("10.0.0.1:25", now + std::chrono::seconds(61)));
    EXPECT_FALSE(memory.recall("10.0.0.2:25", now));
}

TEST(tls_policy, no_tls_verdict_fails_when_tls_was_required) {
    peer_expectation want;
    want.required = auth_level::encryption_only;
    auto v = no_tls_verdict(want, "STARTTLS not offered");
    EXPECT_FALSE(v.ok());
    EXPECT_NE(v.log_line().find("reason=STARTTLS not offered"), std::string::npos);
    want.required = auth_level::none;
    EXPECT_TRUE(no_tls_verdict(want, "").ok());
}

TEST(tls_policy, a_verdict_without_tls_has_its_word) {
    peer_expectation want;
    want.required = auth_level::none;
    EXPECT_EQ(no_tls_verdict(want, "STARTTLS not offered").result, "cleartext");
    want.required = auth_level::encryption_only;
    EXPECT_EQ(no_tls_verdict(want, "STARTTLS not offered").result, "starttls-not-supported");
    auto failed = no_tls_verdict(want, "TLS handshake failed", "validation-failure");
    EXPECT_NE(failed.log_line().find("verdict=fail; result=validation-failure; reason=TLS handshake failed"),
              std::string::npos)
        << failed.log_line();
}

TEST(tls_policy, dane_raises_the_plan_and_never_lowers_it) {
    using kind = policy::dane_requirement::kind;
    auto opportunistic = connector(false, config::tls_auth_level::encryption_only);
    auto plan = plan_attempt(opportunistic, false, std::string("454 4.7.0 TLS not available"));
    auto want = expectation_for(opportunistic, "partner.test", "MX.Partner.Test.", true);
    ASSERT_TRUE(plan.plaintext_after_tls_failure);

    policy::dane_requirement none;
    apply_dane(none, "mx.partner.test", "partner.test", want, plan);
    EXPECT_TRUE(plan.plaintext_after_tls_failure);   // not applicable: nothing changes
    EXPECT_EQ(want.required, auth_level::none);

    policy::dane_requirement dane{kind::authenticate, {route::tlsa_record{3, 1, 1, std::vector<std::uint8_t>(32, 'x')}}, "1 usable", {}};
    apply_dane(dane, "MX.Partner.Test.", "partner.test", want, plan);
    EXPECT_FALSE(plan.plaintext_after_tls_failure);
    EXPECT_EQ(plan.starttls, client_settings::starttls_use::required);
    EXPECT_TRUE(want.require_tls);
    EXPECT_EQ(want.required, auth_level::domain_validation);
    EXPECT_EQ(want.dane_base, "mx.partner.test");
    EXPECT_EQ(want.dane_names, (std::vector<std::string>{"mx.partner.test", "partner.test"}));
    EXPECT_EQ(want.sni, "mx.partner.test");
    EXPECT_TRUE(want.names.empty());   // no PKIX names: DANE decides

    // RFC 7672 §2.2.2: records found at the CNAME-expanded name make it the base domain
    // and the SNI; the original MX name stays a reference identifier.
    auto alias_plan = plan_attempt(opportunistic, false, std::nullopt);
    auto alias_want = expectation_for(opportunistic, "partner.test", "mx.partner.test", true);
    auto aliased = dane;
    aliased.base = "Mail.Hosting.Test";
    apply_dane(aliased, "mx.partner.test", "partner.test", alias_want, alias_plan);
    EXPECT_EQ(alias_want.dane_base, "mail.hosting.test");
    EXPECT_EQ(alias_want.sni, "mail.hosting.test");
    EXPECT_EQ(alias_want.dane_names,
              (std::vector<std::string>{"mail.hosting.test", "mx.partner.test", "partner.test"}));

    auto unusable_plan = plan_attempt(opportunistic, false, std::nullopt);
    auto unusable_want = expectation_for(opportunistic, "partner.test", "mx.partner.test", true);
    apply_dane({kind::tls_unauthenticated, {}, "none usable", {}}, "mx.partner.test", "partner.test", unusable_want,
               unusable_plan);
    EXPECT_EQ(unusable_want.required, auth_level::encryption_only);
    EXPECT_TRUE(unusable_want.dane_records.empty());
    EXPECT_EQ(unusable_plan.starttls, client_settings::starttls_use::required);
}

/// A lab CA, a server certificate issued by it, and a handshake over a BIO pair.
class handshake_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = fs::temp_directory_path() / ("postern-tls-policy-" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
        ca_ = std::make_unique<tls::lab_ca>(tls::lab_ca::init(dir_ / "ca", "CN=Test Root"));
        other_ca_ = std::make_unique<tls::lab_ca>(tls::lab_ca::init(dir_ / "other", "CN=Other Root"));
    }
    static void TearDownTestSuite() {
        ca_.reset();
        other_ca_.reset();
        fs::remove_all(dir_);
    }

    struct leaf {
        tls::x509_ptr cert;
        tls::evp_pkey_ptr key;
    };
    static leaf issue(const tls::lab_ca& ca, const std::string& name) {
        leaf l;
        l.key = tls::generate_key("ecdsa-p256");
        auto subject = tls::parse_distinguished_name("CN=" + name);
        auto req = tls::make_request(l.key.get(), subject.get(), {"DNS:" + name});
        l.cert = ca.sign(req.get(), 30);
        return l;
    }

    /// Runs a handshake; returns the verdict the client reaches. By default the client's
    /// key ring holds the test root (label "test root") and trusts every root.
    tls_verdict handshake(const leaf& server, const peer_expectation& want,
                          std::vector<std::string> trusted_roots = {}, const client_tls_material* given = nullptr) {
        config::configuration cfg;
        client_tls_material material;
        material.roots.push_back(tls::up_ref(const_cast<X509*>(ca_->certificate())));
        material.anchors.push_back({"test root", tls::up_ref(const_cast<X509*>(ca_->certificate())), false});
        auto send = connector(true, config::tls_auth_level::domain_validation);
        send.trusted_roots = std::move(trusted_roots);
        auto client_ctx = make_client_context(cfg, send, given ? given : &material);
        tls::ssl_ctx_ptr server_ctx(SSL_CTX_new(TLS_server_method()));
        SSL_CTX_use_certificate(server_ctx.get(), server.cert.get());
        SSL_CTX_use_PrivateKey(server_ctx.get(), server.key.get());

        tls::ssl_ptr client(SSL_new(client_ctx.get()));
        tls::ssl_ptr srv(SSL_new(server_ctx.get()));
        BIO *client_bio = nullptr, *server_bio = nullptr;
        BIO_new_bio_pair(&client_bio, 0, &server_bio, 0);
        SSL_set_bio(client.get(), client_bio, client_bio);
        SSL_set_bio(srv.get(), server_bio, server_bio);
        SSL_set_connect_state(client.get());
        SSL_set_accept_state(srv.get());
        verify_record record;
        std::string error;
        EXPECT_TRUE(prepare_connection(client.get(), want, &record, &error)) << error;
        bool client_done = false, server_done = false;
        for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
            if (!client_done) client_done = SSL_do_handshake(client.get()) == 1;
            if (!server_done) server_done = SSL_do_handshake(srv.get()) == 1;
        }
        EXPECT_TRUE(client_done && server_done) << tls::openssl_errors();
        return evaluate(client.get(), want, record);
    }

    static peer_expectation domain_validation(const std::string& domain) {
        return expectation_for(connector(true, config::tls_auth_level::domain_validation), domain, "", false);
    }

    static inline fs::path dir_;
    static inline std::unique_ptr<tls::lab_ca> ca_, other_ca_;
};

TEST_F(handshake_test, trusted_certificate_with_the_right_name_passes_domain_validation) {
    auto v = handshake(issue(*ca_, "mx.partner.test"), domain_validation("partner.test"));
    EXPECT_TRUE(v.ok()) << v.log_line();
    EXPECT_EQ(v.achieved, auth_level::domain_validation);
    EXPECT_FALSE(v.sha256.empty());
    EXPECT_NE(v.protocol.find("TLSv1."), std::string::npos);
}

TEST_F(handshake_test, trusted_certificate_with_the_wrong_name_is_certificate_validation_only) {
    auto v = handshake(issue(*ca_, "mx.wrong.test"), domain_validation("partner.test"));
    EXPECT_FALSE(v.ok());
    EXPECT_EQ(v.achieved, auth_level::certificate_validation);
    EXPECT_NE(v.failure.find("name mismatch"), std::string::npos) << v.failure;
    EXPECT_NE(v.failure.find("mx.wrong.test"), std::string::npos) << v.failure;
}

TEST_F(handshake_test, verdict_words_name_pkix_and_its_failures) {
    EXPECT_EQ(handshake(issue(*ca_, "mx.partner.test"), domain_validation("partner.test")).result, "pkix");
    EXPECT_EQ(handshake(issue(*ca_, "mx.wrong.test"), domain_validation("partner.test")).result,
              "certificate-host-mismatch");
    EXPECT_EQ(handshake(issue(*other_ca_, "mx.partner.test"), domain_validation("partner.test")).result,
              "certificate-not-trusted");
    peer_expectation nothing;   // opportunistic: a certificate that verifies proves nothing asked for
    nothing.required = auth_level::none;
    EXPECT_EQ(handshake(issue(*ca_, "mx.partner.test"), nothing).result, "opportunistic");
}

/// The SHA-256 of a certificate's public key (TLSA selector 1, matching type 1).
std::vector<std::uint8_t> spki_sha256(X509* cert) {
    unsigned char* der = nullptr;
    const int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    std::vector<std::uint8_t> out(32);
    SHA256(der, static_cast<std::size_t>(len), out.data());
    OPENSSL_free(der);
    return out;
}

peer_expectation dane_expectation(std::vector<route::tlsa_record> records) {
    auto want = expectation_for(connector(false, config::tls_auth_level::encryption_only), "partner.test",
                                "mx.partner.test", true);
    attempt_plan plan;
    apply_dane({policy::dane_requirement::kind::authenticate, std::move(records), "test", {}}, "mx.partner.test",
               "partner.test", want, plan);
    return want;
}

TEST_F(handshake_test, dane_ee_authenticates_any_certificate_its_record_names_and_nothing_else) {
    auto untrusted = issue(*other_ca_, "anything.test");
    auto v = handshake(untrusted, dane_expectation({{3, 1, 1, spki_sha256(untrusted.cert.get())}}));
    EXPECT_TRUE(v.ok()) << v.log_line();
    EXPECT_EQ(v.result, "dane-ee");
    // A certificate PKIX would accept, with the right name, fails when no record matches.
    auto pkix_valid = issue(*ca_, "mx.partner.test");
    auto wrong = handshake(pkix_valid, dane_expectation({{3, 1, 1, spki_sha256(untrusted.cert.get())}}));
    EXPECT_FALSE(wrong.ok());
    EXPECT_EQ(wrong.result, "tlsa-invalid") << wrong.log_line();
}

TEST_F(handshake_test, partial_wildcards_do_not_match) {
    auto v = handshake(issue(*ca_, "m*.partner.test"), domain_validation("mx.partner.test"));
    EXPECT_EQ(v.achieved, auth_level::certificate_validation) << v.log_line();
}

TEST_F(handshake_test, untrusted_certificate_is_encryption_only) {
    auto v = handshake(issue(*other_ca_, "mx.partner.test"), domain_validation("partner.test"));
    EXPECT_FALSE(v.ok());
    EXPECT_EQ(v.achieved, auth_level::encryption_only);
    EXPECT_NE(v.failure.find("not trusted"), std::string::npos) << v.failure;
    // The same certificate is good enough when only encryption is asked for.
    peer_expectation enc;
    enc.required = auth_level::encryption_only;
    EXPECT_TRUE(handshake(issue(*other_ca_, "mx.partner.test"), enc).ok());
}

TEST_F(handshake_test, a_send_connector_trusts_only_its_trusted_roots_and_the_pinned_peers_it_names) {
    client_tls_material material;                 // the key ring: two roots and a pinned peer
    material.roots.push_back(tls::up_ref(const_cast<X509*>(ca_->certificate())));
    material.roots.push_back(tls::up_ref(const_cast<X509*>(other_ca_->certificate())));
    material.anchors.push_back({"test root", tls::up_ref(const_cast<X509*>(ca_->certificate())), false});
    material.anchors.push_back({"partner root", tls::up_ref(const_cast<X509*>(other_ca_->certificate())), false});
    const auto pinned = issue(*other_ca_, "mx.pinned.test");
    material.anchors.push_back({"pinned", tls::up_ref(pinned.cert.get()), true});

    const auto by_partner_ca = issue(*other_ca_, "mx.bank.test");
    // Every root by default: the partner's CA vouches for a bank's name too...
    EXPECT_TRUE(handshake(by_partner_ca, domain_validation("bank.test"), {}, &material).ok());
    // ...unless the connector to the bank trusts the public root alone.
    auto v = handshake(by_partner_ca, domain_validation("bank.test"), {"test root"}, &material);
    EXPECT_FALSE(v.ok());
    EXPECT_NE(v.failure.find("not trusted"), std::string::npos) << v.failure;

    // A pinned peer is no anchor unless named (then by itself, whoever issued it).
    client_tls_material only_pinned;
    only_pinned.anchors.push_back({"pinned", tls::up_ref(pinned.cert.get()), true});
    EXPECT_FALSE(handshake(pinned, domain_validation("pinned.test"), {}, &only_pinned).ok());
    EXPECT_TRUE(handshake(pinned, domain_validation("pinned.test"), {"pinned"}, &only_pinned).ok());

    auto send = connector(true, config::tls_auth_level::domain_validation);
    send.trusted_roots = {"missing"};
    EXPECT_THROW(make_client_context(config::configuration{}, send, &material), tls::tls_error);
    config::configuration cfg;
    cfg.send_connectors = {send};
    EXPECT_THROW(material.check_trusted_roots(cfg), tls::tls_error);
}

}  // namespace
}  // namespace postern::delivery
