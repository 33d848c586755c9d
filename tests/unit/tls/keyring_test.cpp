#include <gtest/gtest.h>

#include "tls/certificate_info.hpp"
#include "tls/keyring/keyring.hpp"
#include "tls/keyring/stash.hpp"
#include "unit/tls/test_pki.hpp"

namespace postern::tls {
namespace {

using test::lab_pki;
using test::temp_dir;

TEST(keyring, reads_pkcs12_create_output_with_label_and_root) {
    lab_pki pki;
    std::string der = test::pkcs12_create("pw", "mx1", pki.server_key.get(), pki.server.get(), {pki.ca.get()});
    keyring ring = keyring::parse(der, "pw", "memory");
    ASSERT_EQ(ring.entries().size(), 2u);
    const keyring_entry* server = ring.find("mx1");
    ASSERT_NE(server, nullptr);
    EXPECT_EQ(server->role, entry_role::server);
    EXPECT_EQ(X509_cmp(server->certificate.get(), pki.server.get()), 0);
    ASSERT_EQ(ring.with_role(entry_role::root).size(), 1u);
    EXPECT_EQ(ring.with_role(entry_role::root)[0]->label, "Test Root CA");   // no friendlyName: CN
    EXPECT_EQ(ring.root_for(pki.server.get()), ring.with_role(entry_role::root)[0]);
    EXPECT_TRUE(ring.chain_for(pki.server.get()).empty());
}

TEST(keyring, wrong_password_names_the_file_not_the_password) {
    lab_pki pki;
    std::string der = test::pkcs12_create("right-password", "mx1", pki.server_key.get(), pki.server.get());
    try {
        keyring::parse(der, "wrong-password", "/etc/postern/keyring.p12");
        FAIL() << "a wrong password was accepted";
    } catch (const tls_error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("/etc/postern/keyring.p12"), std::string::npos) << what;
        EXPECT_NE(what.find("wrong password"), std::string::npos) << what;
        EXPECT_EQ(what.find("right-password"), std::string::npos);
        EXPECT_EQ(what.find("wrong-password"), std::string::npos);
    }
}

TEST(keyring, intermediates_are_never_roots_and_lead_to_the_leaf) {
    lab_pki pki;
    auto intermediate_key = test::make_ec_key();
    auto intermediate = pki.issue({.cn = "Test Issuing CA", .ca = true}, intermediate_key.get());
    auto leaf_key = test::make_ec_key();
    auto leaf = test::make_cert({.cn = "mx2.example.test", .sans = {"DNS:mx2.example.test"}}, leaf_key.get(),
                                intermediate.get(), intermediate_key.get());
    std::string der = test::pkcs12_create("pw", "mx2", leaf_key.get(), leaf.get(), {intermediate.get(), pki.ca.get()});
    keyring ring = keyring::parse(der, "pw", "memory");
    EXPECT_EQ(ring.find("Test Issuing CA")->role, entry_role::intermediate);
    EXPECT_EQ(ring.find("Test Root CA")->role, entry_role::root);
    auto chain = ring.chain_for(leaf.get());
    ASSERT_EQ(chain.size(), 1u);
    EXPECT_EQ(X509_cmp(chain[0], intermediate.get()), 0);
    EXPECT_EQ(ring.root_for(leaf.get())->label, "Test Root CA");
}

TEST(keyring, round_trip_keeps_labels_roles_and_pending_keys) {
    lab_pki pki;
    keyring ring;
    ring.add_certificate("lab root", up_ref(pki.ca.get()));
    ring.add_pending_key("next year", test::make_ec_key());
    keyring_entry server;
    server.label = "mx1";
    server.role = entry_role::server;
    server.certificate = up_ref(pki.server.get());
    server.key = up_ref(pki.server_key.get());
    ring.entries().push_back(std::move(server));
    ring.add_certificate("partner", test::make_cert({.cn = "partner.test"}, test::make_ec_key().get(), nullptr, nullptr));

    for (auto protection : {pkcs12_protection::modern, pkcs12_protection::legacy}) {
        keyring back = keyring::parse(ring.serialize("s3cret", protection), "s3cret", "memory");
        ASSERT_EQ(back.entries().size(), 4u);
        EXPECT_EQ(back.find("lab root")->role, entry_role::root);
        EXPECT_EQ(back.find("next year")->role, entry_role::pending);
        EXPECT_EQ(back.find("mx1")->role, entry_role::server);
        EXPECT_EQ(back.find("partner")->role, entry_role::peer);
        EXPECT_EQ(EVP_PKEY_eq(back.find("mx1")->key.get(), pki.server_key.get()), 1);
    }
}

TEST(keyring, openssl_command_line_reads_what_we_write) {
    lab_pki pki;
    keyring ring;
    ring.add_certificate("lab root", up_ref(pki.ca.get()));
    keyring_entry server{"mx1", entry_role::server, up_ref(pki.server.get()), up_ref(pki.server_key.get())};
    ring.entries().push_back(std::move(server));
    temp_dir dir;
    ring.write(dir / "ring.p12", "s3cret");
    test::write_text(dir / "pw", "s3cret\n");
    auto info = "openssl pkcs12 -info -noout -in " + (dir / "ring.p12").string() + " -passin file:" + (dir / "pw").string();
    EXPECT_TRUE(test::run(info));
    EXPECT_TRUE(test::run("openssl pkcs12 -info -nokeys -in " + (dir / "ring.p12").string() + " -passin file:" +
                          (dir / "pw").string() + " 2>&1 | grep -q 'PBES2, PBKDF2, AES-256-CBC'"));
    struct stat st {};
    ASSERT_EQ(::stat((dir / "ring.p12").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

class openssl_export : public ::testing::TestWithParam<const char*> {};

TEST_P(openssl_export, opens_files_made_by_openssl_pkcs12_export) {
    lab_pki pki;
    temp_dir dir;
    test::write_text(dir / "cert.pem", test::pem_of(pki.server.get()));
    test::write_text(dir / "key.pem", test::pem_of(pki.server_key.get()));
    test::write_text(dir / "ca.pem", test::pem_of(pki.ca.get()));
    test::write_text(dir / "pw", "export-pw\n");
    std::string command = "openssl pkcs12 -export " + std::string(GetParam()) + " -name mx1 -in " +
                          (dir / "cert.pem").string() + " -inkey " + (dir / "key.pem").string() + " -certfile " +
                          (dir / "ca.pem").string() + " -passout file:" + (dir / "pw").string() + " -out " +
                          (dir / "out.pfx").string();
    ASSERT_TRUE(test::run(command)) << command;
    keyring ring = keyring::read(dir / "out.pfx", "export-pw");
    ASSERT_NE(ring.find("mx1"), nullptr);
    EXPECT_EQ(ring.find("mx1")->role, entry_role::server);
    EXPECT_EQ(ring.with_role(entry_role::root).size(), 1u);
}

// "" = OpenSSL 3's default (AES-256/PBKDF2); "-legacy" = RC2-40 certificates and 3DES keys,
// what Windows Server 2016 and older export.
INSTANTIATE_TEST_SUITE_P(formats, openssl_export, ::testing::Values("", "-legacy"));

TEST(keyring, pairs_keys_without_local_key_id_by_public_key) {
    lab_pki pki;
    // A key bag and a certificate bag without any attributes, as some tools write them.
    STACK_OF(PKCS12_SAFEBAG)* bags = nullptr;
    PKCS12_add_cert(&bags, pki.server.get());
    PKCS12_add_key_ex(&bags, pki.server_key.get(), 0, PKCS12_DEFAULT_ITER, NID_aes_256_cbc, "pw", nullptr, nullptr);
    STACK_OF(PKCS7)* safes = nullptr;
    PKCS12_add_safe_ex(&safes, bags, -1, 0, nullptr, nullptr, nullptr);
    PKCS12* p12 = PKCS12_add_safes_ex(safes, 0, nullptr, nullptr);
    PKCS12_set_mac(p12, "pw", -1, nullptr, 0, PKCS12_DEFAULT_ITER, EVP_sha256());
    unsigned char* der = nullptr;
    int size = i2d_PKCS12(p12, &der);
    std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(size));
    OPENSSL_free(der);
    PKCS12_free(p12);
    sk_PKCS7_pop_free(safes, PKCS7_free);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);

    keyring ring = keyring::parse(bytes, "pw", "memory");
    ASSERT_EQ(ring.entries().size(), 1u);
    EXPECT_EQ(ring.entries()[0].role, entry_role::server);
    EXPECT_EQ(ring.entries()[0].label, "mx1.example.test");
}

TEST(keyring, selects_the_server_certificate) {
    lab_pki pki;
    keyring ring;
    EXPECT_THROW(select_server_entry(ring, "", "", "ring.p12"), tls_error);
    ring.entries().push_back({"mx1", entry_role::server, up_ref(pki.server.get()), up_ref(pki.server_key.get())});
    EXPECT_EQ(select_server_entry(ring, "", "", "ring.p12").label, "mx1");
    auto other_key = test::make_ec_key();
    ring.entries().push_back({"mx2", entry_role::server, pki.issue({.cn = "mx2"}, other_key.get()), std::move(other_key)});
    ring.add_certificate("root", up_ref(pki.ca.get()));
    try {
        select_server_entry(ring, "", "", "ring.p12");
        FAIL() << "two server certificates were not ambiguous";
    } catch (const tls_error& e) {
        EXPECT_NE(std::string(e.what()).find("mx1, mx2"), std::string::npos) << e.what();
    }
    EXPECT_EQ(select_server_entry(ring, "mx2", "", "ring.p12").label, "mx2");
    EXPECT_EQ(select_server_entry(ring, "", "mx2", "ring.p12").label, "mx2");
    EXPECT_THROW(select_server_entry(ring, "root", "", "ring.p12"), tls_error);
    EXPECT_THROW(select_server_entry(ring, "nope", "", "ring.p12"), tls_error);
}

TEST(stash, first_line_is_the_password) {
    temp_dir dir;
    test::write_text(dir / "ring.sth", "pass word\r\nsecond line\n", 0600);
    EXPECT_EQ(read_stash(dir / "ring.sth").view(), "pass word");
    ::chmod((dir / "ring.sth").c_str(), 0400);
    EXPECT_EQ(read_stash(dir / "ring.sth").view(), "pass word");
}

TEST(stash, refused_when_group_or_others_can_read_it) {
    temp_dir dir;
    for (mode_t mode : {0640, 0604, 0644, 0660}) {
        test::write_text(dir / "ring.sth", "secret-value\n", mode);
        try {
            read_stash(dir / "ring.sth");
            FAIL() << "mode " << std::oct << mode << " was accepted";
        } catch (const tls_error& e) {
            std::string what = e.what();
            EXPECT_NE(what.find("0600"), std::string::npos) << what;
            EXPECT_NE(what.find("ring.sth"), std::string::npos) << what;
            EXPECT_EQ(what.find("secret-value"), std::string::npos);
        }
    }
}

TEST(stash, written_0600_and_read_back) {
    temp_dir dir;
    secret password = generate_password();
    EXPECT_GE(password.view().size(), 40u);
    write_stash(dir / "new.sth", password);
    struct stat st {};
    ASSERT_EQ(::stat((dir / "new.sth").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(read_stash(dir / "new.sth").view(), password.view());
}

TEST(stash, empty_first_line_is_refused) {
    temp_dir dir;
    test::write_text(dir / "empty.sth", "\nsecond\n", 0600);
    EXPECT_THROW(read_stash(dir / "empty.sth"), tls_error);
}

}  // namespace
}  // namespace postern::tls
