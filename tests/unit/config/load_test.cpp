// Loading: defaults, value syntax, and every error of DESIGN.md §3 naming its line and key.
#include <unistd.h>

#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "config/schema.hpp"

namespace postern::config {
namespace {

using namespace std::chrono_literals;

load_result load(std::string_view text) { return load_string(text, "test.toml"); }

// The error for `key`, or a failure listing everything that was reported instead.
const diagnostic* find(const std::vector<diagnostic>& list, std::string_view key) {
    for (const auto& d : list)
        if (d.key == key) return &d;
    return nullptr;
}

std::string all(const std::vector<diagnostic>& list) {
    std::string out;
    for (const auto& d : list) out += d.to_string() + "\n";
    return out;
}

::testing::AssertionResult has_error(const load_result& r, std::string_view key, std::uint32_t line,
                                     std::string_view words = {}) {
    const diagnostic* d = find(r.errors, key);
    if (!d) return ::testing::AssertionFailure() << "no error for " << key << "; errors:\n" << all(r.errors);
    if (d->line != line)
        return ::testing::AssertionFailure() << "error for " << key << " on line " << d->line << ", expected " << line
                                             << ": " << d->to_string();
    if (!words.empty() && d->message.find(words) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << words << "\": " << d->to_string();
    std::string text = d->to_string();
    // A key inside a connector is followed by the connector's name.
    std::string prefix = "test.toml:" + std::to_string(line) + ": " + std::string(key) +
                         (d->connector.empty() ? std::string() : " (connector \"" + d->connector + "\")") + ": ";
    if (text.rfind(prefix, 0) != 0)
        return ::testing::AssertionFailure() << "to_string() is not FILE:LINE: KEY [(connector \"NAME\")]: MESSAGE: " << text;
    if (r.config) return ::testing::AssertionFailure() << "a configuration was returned despite the error";
    return ::testing::AssertionSuccess();
}

constexpr std::string_view minimal_receive = R"([server]
hostname = "mx.example.test"
data_dir = "/srv/postern"
user = "postern"

[[receive_connector]]
name = "in"
bind = ["127.0.0.1:2525"]
)";

TEST(config_load, empty_file_gives_every_default) {
    auto r = load("[server]\nhostname = \"mx.example.test\"\nuser = \"postern\"\n");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    const auto& c = *r.config;
    EXPECT_EQ(c.server.data_dir, "/var/lib/postern");
    EXPECT_EQ(c.server.control_socket, "/var/lib/postern/control.sock");
    EXPECT_TRUE(c.server.accepted_domains.empty());
    EXPECT_EQ(c.server.max_inbound_connections, 1000u);
    EXPECT_EQ(c.server.max_connections_per_source, 50u);
    EXPECT_EQ(c.server.max_outbound_connections, 100u);
    EXPECT_EQ(c.server.shutdown_timeout, 30s);
    EXPECT_EQ(c.tls.keyring, "/var/lib/postern/keyring.p12");
    EXPECT_EQ(c.tls.stash, "/var/lib/postern/keyring.sth");
    EXPECT_EQ(c.tls.min_version, "1.2");
    EXPECT_EQ(c.tls.ciphers, "ECDHE+AESGCM:ECDHE+CHACHA20");
    EXPECT_EQ(c.tls.session_cache_size, 8192u);
    EXPECT_EQ(c.queue.retry.size(), 5u);
    EXPECT_EQ(c.queue.retry.back(), 1h);
    EXPECT_EQ(c.queue.expire, 48h);
    EXPECT_EQ(c.queue.delay_notice, 4h);
    EXPECT_EQ(c.queue.min_free, 1024ull * 1024 * 1024);
    EXPECT_EQ(c.queue.bounce_size_limit, 50u * 1024);
    EXPECT_EQ(c.dns.mx_port, 25);
    EXPECT_EQ(c.log.dir, "/var/lib/postern/log");
    EXPECT_EQ(c.log.max_age, 24h * 30);
    EXPECT_EQ(c.log.max_size, 1024ull * 1024 * 1024);
    EXPECT_TRUE(c.metrics.listen.empty());
    EXPECT_TRUE(c.debug.report_tls_handshake_errors);
    EXPECT_FALSE(c.debug.smtp_io_trace);
    EXPECT_TRUE(r.warnings.empty()) << all(r.warnings);
}

TEST(config_load, hostname_defaults_to_the_system_name) {
    auto r = load("");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    EXPECT_FALSE(r.config->server.hostname.empty());
}

TEST(config_load, receive_connector_defaults) {
    auto r = load(minimal_receive);
    ASSERT_TRUE(r.ok()) << all(r.errors);
    ASSERT_EQ(r.config->receive_connectors.size(), 1u);
    const auto& c = r.config->receive_connectors[0];
    EXPECT_EQ(c.name, "in");
    ASSERT_EQ(c.bind.size(), 1u);
    EXPECT_EQ(c.bind[0].host, "127.0.0.1");
    EXPECT_EQ(c.bind[0].port, 2525);
    ASSERT_EQ(c.remote_ip_ranges.size(), 2u);
    EXPECT_EQ(c.remote_ip_ranges[0].text, "0.0.0.0/0");
    EXPECT_EQ(c.remote_ip_ranges[1].text, "::/0");
    EXPECT_EQ(c.tls, tls_mode::starttls);
    EXPECT_FALSE(c.require_tls);
    EXPECT_EQ(c.auth_mechanisms, std::vector<auth_mechanism>{auth_mechanism::tls});
    EXPECT_EQ(c.permission_groups, std::vector<permission_group>{permission_group::anonymous_users});
    EXPECT_FALSE(c.accept_any_recipient);
    EXPECT_EQ(c.max_message_size, 36700160u);
    EXPECT_EQ(c.max_recipients, 200u);
    EXPECT_EQ(c.max_header_size, 256u * 1024);
    EXPECT_EQ(c.max_hop_count, 50u);
    EXPECT_EQ(c.max_inbound_connections_per_source, 20u);
    EXPECT_EQ(c.max_protocol_errors, 5u);
    EXPECT_EQ(c.max_junk_commands, 100u);
    EXPECT_FALSE(c.allow_untrusted_routing);
    EXPECT_EQ(c.connection_timeout, 10min);
    EXPECT_EQ(c.connection_inactivity_timeout, 5min);
    EXPECT_EQ(c.logging, protocol_logging::verbose);
}

TEST(config_load, send_connector_values_and_defaults) {
    auto r = load(R"([server]
hostname = "mx.example.test"
user = "postern"
[[send_connector]]
name = "out"
address_spaces = ["partner.test", "*.partner.test"]
smart_hosts = ["relay.partner.test", "[2001:db8::1]:2526", "192.0.2.1:26"]
require_tls = true
tls_auth_level = "domain_validation"
tls_domain = "partner.test"
)");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    const auto& c = r.config->send_connectors.at(0);
    EXPECT_EQ(c.smart_hosts.at(0).host, "relay.partner.test");
    EXPECT_EQ(c.smart_hosts.at(0).port, 25);
    EXPECT_EQ(c.smart_hosts.at(1).host, "2001:db8::1");
    EXPECT_EQ(c.smart_hosts.at(1).port, 2526);
    EXPECT_EQ(c.smart_hosts.at(2).port, 26);
    EXPECT_EQ(c.auth_level, tls_auth_level::domain_validation);
    EXPECT_EQ(c.smart_host_tls_mode, smart_host_tls::starttls);
    EXPECT_FALSE(c.ignore_starttls);
    EXPECT_EQ(c.dane, dane_mode::opportunistic);
    EXPECT_FALSE(c.trust_system_store);
    EXPECT_EQ(c.max_per_destination, 10u);
    EXPECT_EQ(c.connection_cache_time, 2s);
}

TEST(config_load, connection_cache_time_may_be_zero_and_must_be_a_duration) {
    const std::string head = "[server]\nhostname = \"mx.example.test\"\n[[send_connector]]\nname = \"out\"\n"
                             "address_spaces = [\"*\"]\n";
    auto zero = load(head + "connection_cache_time = \"0s\"\n");
    ASSERT_TRUE(zero.ok()) << all(zero.errors);
    EXPECT_EQ(zero.config->send_connectors[0].connection_cache_time, 0s);
    auto bad = load(head + "connection_cache_time = \"soon\"\n");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(all(bad.errors).find("connection_cache_time"), std::string::npos) << all(bad.errors);
}

TEST(config_load, tls_none_without_auth_mechanisms_means_none) {
    auto r = load(std::string(minimal_receive) + "tls = \"none\"\n");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    EXPECT_TRUE(r.config->receive_connectors[0].auth_mechanisms.empty());
}

TEST(config_load, relative_paths_are_under_data_dir_and_absolute_ones_stay) {
    auto r = load(R"([server]
hostname = "mx.example.test"
user = "postern"
data_dir = "/srv/p"
control_socket = "/run/postern.sock"
[tls]
keyring = "keys/ring.p12"
stash = "/etc/postern/ring.sth"
[log]
dir = "protocol"
)");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    EXPECT_EQ(r.config->tls.keyring, "/srv/p/keys/ring.p12");
    EXPECT_EQ(r.config->tls.stash, "/etc/postern/ring.sth");
    EXPECT_EQ(r.config->log.dir, "/srv/p/protocol");
    EXPECT_EQ(r.config->server.control_socket, "/run/postern.sock");
}

TEST(config_load, a_relative_data_dir_is_made_absolute_once) {
    auto r = load("[server]\nuser = \"p\"\ndata_dir = \"state\"\n");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    auto expected = (std::filesystem::current_path() / "state").lexically_normal();
    EXPECT_EQ(r.config->server.data_dir, expected);
    EXPECT_EQ(r.config->tls.keyring, expected / "keyring.p12");
    EXPECT_EQ(r.config->server.control_socket, expected / "control.sock");
}

TEST(config_load, fingerprints_are_normalised) {
    auto r = load(std::string(minimal_receive) + R"(require_tls = true
auth_mechanisms = ["mutual_tls"]
partner_fingerprints = ["SHA256:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89"]
)");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    EXPECT_EQ(r.config->receive_connectors[0].partner_fingerprints.at(0),
              "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
}

TEST(config_load, load_file_reads_a_file_and_names_it) {
    auto path = std::filesystem::temp_directory_path() / "postern_load_file_test.toml";
    {
        std::ofstream out(path);
        out << "[server]\nhostname = \"mx.example.test\"\nuser = \"postern\"\nbogus = 1\n";
    }
    auto r = load_file(path);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].to_string(), path.string() + ":4: server.bogus: unknown key");
    std::filesystem::remove(path);

    auto missing = load_file("/nonexistent/postern.toml");
    ASSERT_EQ(missing.errors.size(), 1u);
    EXPECT_NE(missing.errors[0].to_string().find("/nonexistent/postern.toml: cannot read"), std::string::npos);
}

// ---- syntax and types ----

TEST(config_errors, toml_syntax_error_names_the_line) {
    auto r = load("[server]\nhostname = \"x\nuser = 1\n");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.errors[0].line, 2u);
}

TEST(config_errors, unknown_key) {
    const auto r = load(std::string(minimal_receive) + "requre_tls = true\n");
    EXPECT_TRUE(has_error(r, "receive_connector[0].requre_tls", 9, "unknown key; did you mean \"require_tls\"?"));
    // The connector is named, and the name is in the text.
    EXPECT_NE(find(r.errors, "receive_connector[0].requre_tls")->to_string().find("(connector \""), std::string::npos);
    EXPECT_TRUE(has_error(load("[queue]\nexpires = \"2d\"\n"), "queue.expires", 2, "did you mean \"expire\"?"));
    // Nothing near enough: no guess.
    const auto far = load("[queue]\nwhatever = 1\n");
    ASSERT_TRUE(has_error(far, "queue.whatever", 2, "unknown key"));
    EXPECT_EQ(find(far.errors, "queue.whatever")->message.find("did you mean"), std::string::npos);
}

TEST(config_errors, unknown_table) {
    EXPECT_TRUE(has_error(load("[server]\nuser = \"p\"\n\n[serverr]\nx = 1\n"), "serverr", 4,
                          "unknown table; did you mean \"server\"?"));
    EXPECT_TRUE(has_error(load("[tls.extra]\nx = 1\n"), "tls.extra", 1, "unknown table"));
}

TEST(config_errors, wrong_types) {
    EXPECT_TRUE(has_error(load("[server]\nmax_inbound_connections = \"many\"\n"), "server.max_inbound_connections", 2,
                          "expected an integer, found a string"));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "require_tls = \"yes\"\n"),
                          "receive_connector[0].require_tls", 9, "expected true or false"));
    EXPECT_TRUE(has_error(load("[server]\naccepted_domains = \"example.test\"\n"), "server.accepted_domains", 2,
                          "expected an array"));
    EXPECT_TRUE(has_error(load("[server]\naccepted_domains = [1]\n"), "server.accepted_domains", 2,
                          "expected a string"));
    EXPECT_TRUE(has_error(load("server = 1\n"), "server", 1, "expected a table"));
    EXPECT_TRUE(has_error(load("[receive_connector]\nname = \"a\"\n"), "receive_connector", 1, "[[receive_connector]]"));
}

TEST(config_errors, bad_enum_values) {
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "tls = \"ssl\"\n"), "receive_connector[0].tls", 9,
                          "\"ssl\" is not one of \"starttls\", \"implicit\", \"none\""));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "permission_groups = [\"everyone\"]\n"),
                          "receive_connector[0].permission_groups", 9));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "protocol_logging = \"low\"\n"),
                          "receive_connector[0].protocol_logging", 9));
}

TEST(config_errors, missing_required_keys_name_the_table_line) {
    EXPECT_TRUE(has_error(load("[[receive_connector]]\nbind = [\"127.0.0.1:25\"]\n"), "receive_connector[0].name", 1,
                          "is required"));
    EXPECT_TRUE(has_error(load("[[receive_connector]]\nname = \"a\"\n"), "receive_connector[0].bind", 1, "is required"));
    EXPECT_TRUE(has_error(load("\n[[send_connector]]\nname = \"a\"\n"), "send_connector[0].address_spaces", 2,
                          "is required"));
    EXPECT_TRUE(has_error(load("[[send_connector]]\naddress_spaces = [\"*\"]\n"), "send_connector[0].name", 1));
}

TEST(config_errors, zero_where_zero_makes_no_sense) {
    EXPECT_TRUE(has_error(load("[server]\nmax_inbound_connections = 0\n"), "server.max_inbound_connections", 2,
                          "greater than 0"));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "max_message_size = \"0MB\"\n"),
                          "receive_connector[0].max_message_size", 9, "greater than 0"));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "connection_timeout = \"0s\"\n"),
                          "receive_connector[0].connection_timeout", 9, "longer than 0s"));
    EXPECT_TRUE(has_error(load("[queue]\nretry = []\n"), "queue.retry", 2, "at least one"));
    EXPECT_TRUE(has_error(load("[dns]\nmx_port = 0\n"), "dns.mx_port", 2));
    EXPECT_TRUE(has_error(load("[dns]\nmx_port = 70000\n"), "dns.mx_port", 2, "too large"));
    EXPECT_TRUE(has_error(load("[server]\nmax_inbound_connections = -1\n"), "server.max_inbound_connections", 2,
                          "negative"));
    // Zero free space means "do not check"; zero shutdown time means "stop now".
    EXPECT_TRUE(load("[server]\nuser = \"p\"\nshutdown_timeout = \"0s\"\n[queue]\nmin_free = 0\n").ok());
}

TEST(config_errors, sizes_and_durations_that_do_not_parse) {
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "max_message_size = \"35 megs\"\n"),
                          "receive_connector[0].max_message_size", 9, "not a size"));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "connection_timeout = \"10\"\n"),
                          "receive_connector[0].connection_timeout", 9, "not a duration"));
    EXPECT_TRUE(has_error(load("[queue]\nretry = [\"1m\", \"5x\"]\n"), "queue.retry", 2, "\"5x\""));
    EXPECT_TRUE(has_error(load("[queue]\nexpire = 2\n"), "queue.expire", 2, "expected a duration"));
}

TEST(config_load, bounce_size_limit_takes_a_size) {
    auto r = load("[server]\nuser = \"p\"\n[queue]\nbounce_size_limit = \"100KB\"\n");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    EXPECT_EQ(r.config->queue.bounce_size_limit, 100u * 1024);
    EXPECT_TRUE(r.warnings.empty()) << all(r.warnings);
    auto octets = load("[server]\nuser = \"p\"\n[queue]\nbounce_size_limit = 50000\n");   // Postfix's figure
    ASSERT_TRUE(octets.ok()) << all(octets.errors);
    EXPECT_EQ(octets.config->queue.bounce_size_limit, 50000u);
}

TEST(config_errors, bounce_size_limit_that_is_not_a_size) {
    EXPECT_TRUE(has_error(load("[queue]\n\nbounce_size_limit = \"50 kilos\"\n"), "queue.bounce_size_limit", 3,
                          "not a size"));
    EXPECT_TRUE(has_error(load("[queue]\nbounce_size_limit = \"0KB\"\n"), "queue.bounce_size_limit", 2,
                          "greater than 0"));
    EXPECT_TRUE(has_error(load("[queue]\nbounce_size_limit = -1\n"), "queue.bounce_size_limit", 2, "negative"));
    EXPECT_TRUE(has_error(load("[queue]\nbounce_size_limit = true\n"), "queue.bounce_size_limit", 2,
                          "a size such as"));
}

TEST(config_errors, bad_addresses) {
    auto bind = [](std::string_view b) {
        return load("[[receive_connector]]\nname = \"a\"\nbind = [\"" + std::string(b) + "\"]\n");
    };
    EXPECT_TRUE(has_error(bind("127.0.0.1"), "receive_connector[0].bind", 3, "port is required"));
    EXPECT_TRUE(has_error(bind("localhost:25"), "receive_connector[0].bind", 3, "not an IP address"));
    EXPECT_TRUE(has_error(bind("::1:25"), "receive_connector[0].bind", 3, "brackets"));
    EXPECT_TRUE(has_error(bind("127.0.0.1:99999"), "receive_connector[0].bind", 3, "0 to 65535"));
    EXPECT_TRUE(has_error(bind("300.0.0.1:25"), "receive_connector[0].bind", 3));
    auto ranges = [](std::string_view r) {
        return load(std::string(minimal_receive) + "remote_ip_ranges = [\"" + std::string(r) + "\"]\n");
    };
    EXPECT_TRUE(has_error(ranges("10.0.0.0/33"), "receive_connector[0].remote_ip_ranges", 9, "at most 32"));
    EXPECT_TRUE(has_error(ranges("10.1.2.3/8"), "receive_connector[0].remote_ip_ranges", 9, "network address"));
    EXPECT_TRUE(has_error(ranges("ten/8"), "receive_connector[0].remote_ip_ranges", 9));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "remote_ip_ranges = []\n"),
                          "receive_connector[0].remote_ip_ranges", 9, "empty"));
    EXPECT_TRUE(has_error(load("[dns]\nresolver = \"resolver.example:53\"\n"), "dns.resolver", 2));
    EXPECT_TRUE(has_error(load("[metrics]\nlisten = \"127.0.0.1\"\n"), "metrics.listen", 2, "port is required"));
    EXPECT_TRUE(has_error(load("[server]\nhostname = \"mx example\"\n"), "server.hostname", 2));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "partner_fingerprints = [\"md5:00\"]\n"),
                          "receive_connector[0].partner_fingerprints", 9, "sha256:"));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "partner_fingerprints = [\"sha256:00ff\"]\n"),
                          "receive_connector[0].partner_fingerprints", 9, "64 hex digits"));
}

// ---- combinations ----

TEST(config_errors, require_tls_with_tls_none) {
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "tls = \"none\"\nrequire_tls = true\n"),
                          "receive_connector[0].require_tls", 10, "tls is \"none\""));
}

TEST(config_errors, auth_mechanisms_with_tls_none) {
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "tls = \"none\"\nauth_mechanisms = [\"tls\"]\n"),
                          "receive_connector[0].auth_mechanisms", 10, "tls is \"none\""));
}

TEST(config_errors, mutual_tls_without_require_tls) {
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) +
                               "auth_mechanisms = [\"mutual_tls\"]\npartner_names = [\"mx.partner.test\"]\n"),
                          "receive_connector[0].auth_mechanisms", 9, "require_tls"));
}

TEST(config_errors, mutual_tls_without_partners) {
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "require_tls = true\nauth_mechanisms = [\"mutual_tls\"]\n"),
                          "receive_connector[0].auth_mechanisms", 10, "partner_names or partner_fingerprints"));
}

TEST(config_errors, open_relay) {
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "accept_any_recipient = true\n"),
                          "receive_connector[0].accept_any_recipient", 9, "open relay"));
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) +
                               "remote_ip_ranges = [\"10.0.0.0/8\", \"::/0\"]\naccept_any_recipient = true\n"),
                          "receive_connector[0].accept_any_recipient", 10, "::/0"));
    // Partners only, or a narrow range, is a relay by design.
    EXPECT_TRUE(load(std::string(minimal_receive) +
                     "remote_ip_ranges = [\"10.0.0.0/8\"]\naccept_any_recipient = true\n").ok());
}

TEST(config_errors, same_bind_and_same_ranges) {
    auto r = load(std::string(minimal_receive) +
                  "\n[[receive_connector]]\nname = \"in2\"\nbind = [\"127.0.0.1:2525\"]\nremote_ip_ranges = [\"::/0\", "
                  "\"0.0.0.0/0\"]\n");
    EXPECT_TRUE(has_error(r, "receive_connector[1].bind", 12, "same remote_ip_ranges"));
    // Different ranges on one bind are how connectors are chosen.
    EXPECT_TRUE(load(std::string(minimal_receive) +
                     "\n[[receive_connector]]\nname = \"in2\"\nbind = [\"127.0.0.1:2525\"]\nremote_ip_ranges = "
                     "[\"10.0.0.0/8\"]\n")
                    .ok());
}

TEST(config_errors, duplicate_connector_names) {
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) +
                               "\n[[receive_connector]]\nname = \"in\"\nbind = [\"127.0.0.1:2526\"]\n"),
                          "receive_connector[1].name", 11, "already the name"));
    EXPECT_TRUE(has_error(load("[[send_connector]]\nname = \"x\"\naddress_spaces = [\"a.test\"]\n"
                               "[[send_connector]]\nname = \"x\"\naddress_spaces = [\"b.test\"]\n"),
                          "send_connector[1].name", 5, "already the name"));
}

TEST(config_errors, bad_partner_name) {
    EXPECT_TRUE(has_error(load(std::string(minimal_receive) + "require_tls = true\nauth_mechanisms = [\"mutual_tls\"]\n"
                               "partner_names = [\"*.partner.test\", \"not a name\"]\n"),
                          "receive_connector[0].partner_names", 11, "not a name"));
}

TEST(config_errors, bad_connector_name) {
    EXPECT_TRUE(has_error(load("[[receive_connector]]\nname = \"a,b\"\nbind = [\"127.0.0.1:25\"]\n"),
                          "receive_connector[0].name", 2));
}

TEST(config_errors, tls_auth_level_without_require_tls) {
    EXPECT_TRUE(has_error(load("[[send_connector]]\nname = \"x\"\naddress_spaces = [\"*\"]\n"
                               "tls_auth_level = \"certificate_validation\"\n"),
                          "send_connector[0].tls_auth_level", 4, "require_tls"));
}

TEST(config_errors, ignore_starttls_with_require_tls) {
    EXPECT_TRUE(has_error(load("[[send_connector]]\nname = \"x\"\naddress_spaces = [\"*\"]\nrequire_tls = true\n"
                               "ignore_starttls = true\n"),
                          "send_connector[0].ignore_starttls", 5, "contradicts"));
}

TEST(config_errors, dane_required_needs_mx_routing_and_a_trust_anchor) {
    EXPECT_TRUE(has_error(load("[[send_connector]]\nname = \"x\"\naddress_spaces = [\"*\"]\n"
                               "smart_hosts = [\"192.0.2.1\"]\ndane = \"required\"\n"),
                          "send_connector[0].dane", 5, "smart-host connector"));
    EXPECT_TRUE(has_error(load("[[send_connector]]\nname = \"x\"\naddress_spaces = [\"*\"]\ndane = \"required\"\n"),
                          "send_connector[0].dane", 4, "trust anchor"));
    EXPECT_TRUE(has_error(load("[[send_connector]]\nname = \"x\"\naddress_spaces = [\"*\"]\ndane = \"always\"\n"),
                          "send_connector[0].dane", 4));

    const auto dir = std::filesystem::temp_directory_path() / ("postern-dane-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto anchored = dir / "anchored.conf";
    std::ofstream(anchored) << "server:\n  # trust-anchor-file: not this one\n  auto-trust-anchor-file: \"root.key\"\n";
    const auto bare = dir / "bare.conf";
    std::ofstream(bare) << "server:\n  # auto-trust-anchor-file: \"root.key\"\n";
    EXPECT_TRUE(names_trust_anchor(anchored));
    EXPECT_FALSE(names_trust_anchor(bare));
    auto ok = load("[[send_connector]]\nname = \"x\"\naddress_spaces = [\"*\"]\ndane = \"required\"\n"
                   "[dns]\nunbound_config = \"" + anchored.string() + "\"\n");
    EXPECT_TRUE(ok.ok()) << all(ok.errors);
    std::filesystem::remove_all(dir);
}

TEST(config_errors, address_space_routed_twice_or_malformed) {
    EXPECT_TRUE(has_error(load("[[send_connector]]\nname = \"x\"\naddress_spaces = [\"a.test\"]\n"
                               "[[send_connector]]\nname = \"y\"\naddress_spaces = [\"A.test\"]\n"),
                          "send_connector[1].address_spaces", 6, "already routed"));
    EXPECT_TRUE(has_error(load("[[send_connector]]\nname = \"x\"\naddress_spaces = [\"a.*\"]\n"),
                          "send_connector[0].address_spaces", 3));
}

// ---- weak TLS ----

TEST(config_errors, min_version_below_1_2) {
    EXPECT_TRUE(has_error(load("[tls]\nmin_version = \"1.0\"\n"), "tls.min_version", 2, "refused"));
    EXPECT_TRUE(has_error(load("[tls]\nmin_version = \"1.1\"\n"), "tls.min_version", 2, "refused"));
    EXPECT_TRUE(has_error(load("[tls]\nmin_version = \"SSLv3\"\n"), "tls.min_version", 2, "refused"));
    EXPECT_TRUE(has_error(load("[tls]\nmin_version = \"1.4\"\n"), "tls.min_version", 2, "not a TLS version"));
}

TEST(config_errors, weak_ciphers_are_named) {
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"RC4-SHA\"\n"), "tls.ciphers", 2, "RC4"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"DES-CBC3-SHA\"\n"), "tls.ciphers", 2, "DES-CBC3-SHA"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"ECDHE+AESGCM:ECDHE-RSA-AES128-SHA\"\n"), "tls.ciphers", 2,
                          "ECDHE-RSA-AES128-SHA"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"HIGH\"\n"), "tls.ciphers", 2, "refused"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"aNULL\"\n"), "tls.ciphers", 2));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"ECDHE+AESGCM:!aNULL:ECDHE-RSA-AES256-SHA384\"\n"), "tls.ciphers", 2,
                          "ECDHE-RSA-AES256-SHA384, which is refused: not an AEAD cipher"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"ADH-AES128-GCM-SHA256\"\n"), "tls.ciphers", 2, "anonymous"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"eNULL\"\n"), "tls.ciphers", 2, "NULL"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"EXP-RC4-MD5\"\n"), "tls.ciphers", 2, "EXP-RC4-MD5"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"NOSUCHCIPHER\"\n"), "tls.ciphers", 2, "matches no cipher"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"ECDHE+AESGCM:@SECLEVEL=0\"\n"), "tls.ciphers", 2, "SECLEVEL"));
    EXPECT_TRUE(has_error(load("[tls]\nciphers = \"\"\n"), "tls.ciphers", 2, "empty"));
}

TEST(config_errors, strong_cipher_strings_pass) {
    EXPECT_TRUE(load("[server]\nuser = \"p\"\n[tls]\nciphers = \"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305\"\n").ok());
    EXPECT_TRUE(load("[server]\nuser = \"p\"\n[tls]\nciphers = \"ECDHE+AESGCM:!aNULL:!eNULL\"\n").ok());
    EXPECT_TRUE(load("[server]\nuser = \"p\"\n[tls]\nmin_version = \"1.3\"\nciphers = \"\"\n").ok());
}

TEST(config_errors, bad_ciphersuites) {
    EXPECT_TRUE(has_error(load("[tls]\nciphersuites = \"TLS_AES_256_GCM_SHA384:TLS_RC4_SHA\"\n"), "tls.ciphersuites", 2,
                          "TLS_RC4_SHA"));
    EXPECT_TRUE(has_error(load("[tls]\nmin_version = \"1.3\"\nciphersuites = \"\"\n"), "tls.ciphersuites", 3));
}

// ---- warnings ----

TEST(config_warnings, few_recipients) {
    auto r = load(std::string(minimal_receive) + "max_recipients = 50\n");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    const diagnostic* w = find(r.warnings, "receive_connector[0].max_recipients");
    ASSERT_NE(w, nullptr) << all(r.warnings);
    EXPECT_EQ(w->line, 9u);
    EXPECT_NE(w->to_string().find("warning: "), std::string::npos);
    EXPECT_NE(w->message.find("4.5.3.1.8"), std::string::npos);
}

TEST(config_warnings, bounce_size_limit_below_one_line) {
    auto r = load("[server]\nuser = \"p\"\n[queue]\nbounce_size_limit = 512\n");
    ASSERT_TRUE(r.ok()) << all(r.errors);
    const diagnostic* w = find(r.warnings, "queue.bounce_size_limit");
    ASSERT_NE(w, nullptr) << all(r.warnings);
    EXPECT_EQ(w->line, 4u);
    EXPECT_NE(w->message.find("none of the original's headers"), std::string::npos) << w->to_string();
}

TEST(config_warnings, root_without_user) {
    auto r = load("[server]\nhostname = \"mx.example.test\"\n");
    ASSERT_TRUE(r.ok());
    bool warned = find(r.warnings, "server.user") != nullptr;
    EXPECT_EQ(warned, ::geteuid() == 0);
    EXPECT_EQ(find(load("[server]\nuser = \"postern\"\n").warnings, "server.user"), nullptr);
}

}  // namespace
}  // namespace postern::config
