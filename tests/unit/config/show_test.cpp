// `config show`: TOML output that loads back to the same values, JSON, and filters.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/schema.hpp"
#include "config/show.hpp"

namespace postern::config {
namespace {

constexpr std::string_view sample = R"([server]
hostname = "mx1.example.test"
data_dir = "/srv/postern"
accepted_domains = ["example.test"]
user = "postern"
shutdown_timeout = "90s"

[tls]
keyring = "ring.p12"

[[receive_connector]]
name = "from-partner"
bind = ["127.0.0.1:2525", "[::1]:2525"]
remote_ip_ranges = ["192.0.2.0/24", "::ffff:198.51.100.0/120"]
require_tls = true
auth_mechanisms = ["mutual_tls"]
partner_names = ["mx.partner.test"]
partner_fingerprints = ["sha256:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89"]
permission_groups = ["partners"]
accept_any_recipient = true
max_message_size = "1000"

[[receive_connector]]
name = "plain"
bind = ["127.0.0.1:25"]
tls = "none"

[[send_connector]]
name = "to-partner"
address_spaces = ["partner.test", "*.partner.test"]
smart_hosts = ["relay.partner.test:2526"]
require_tls = true
tls_auth_level = "domain_validation"

[queue]
retry = ["1m", "90m"]

[debug]
smtp_io_trace = true
)";

configuration load_ok(std::string_view text) {
    auto r = load_string(text, "sample.toml");
    std::string errors;
    for (const auto& e : r.errors) errors += e.to_string() + "\n";
    EXPECT_TRUE(r.ok()) << errors;
    return r.config.value_or(configuration{});
}

TEST(config_show, toml_round_trips_to_the_same_values) {
    std::string text(sample);
    auto first = load_ok(text);
    std::string shown = show(first);
    auto second = load_ok(shown);
    EXPECT_EQ(show(second), shown);
    EXPECT_EQ(show(second, {}, show_format::json), show(first, {}, show_format::json));
    EXPECT_EQ(second.tls.keyring, "/srv/postern/ring.p12");
    EXPECT_EQ(second.receive_connectors.at(0).max_message_size, 1000u);
    EXPECT_EQ(second.receive_connectors.at(0).remote_ip_ranges.at(1).prefix_length, 24u);
    EXPECT_EQ(second.receive_connectors.at(1).auth_mechanisms.size(), 0u);
    EXPECT_EQ(second.queue.retry.at(1), std::chrono::minutes(90));
}

TEST(config_show, defaults_are_printed) {
    auto c = load_ok("[server]\nhostname = \"mx.example.test\"\nuser = \"p\"\n");
    std::string shown = show(c);
    EXPECT_NE(shown.find("[server]\nhostname = \"mx.example.test\"\ndata_dir = \"/var/lib/postern\"\n"), std::string::npos)
        << shown;
    EXPECT_NE(shown.find("control_socket = \"/var/lib/postern/control.sock\""), std::string::npos);
    EXPECT_NE(shown.find("min_version = \"1.2\""), std::string::npos);
    EXPECT_NE(shown.find("retry = [\"1m\", \"5m\", \"15m\", \"30m\", \"1h\"]"), std::string::npos);
    EXPECT_NE(shown.find("max_size = \"1GB\""), std::string::npos);
    EXPECT_NE(shown.find("report_tls_handshake_errors = true"), std::string::npos);
    EXPECT_EQ(shown.find("[[receive_connector]]"), std::string::npos);   // none configured
}

TEST(config_show, bounce_size_limit_is_shown_and_loads_back) {
    auto c = load_ok("[server]\nuser = \"p\"\n[queue]\nbounce_size_limit = 50000\n");
    const std::string shown = show(c, {"queue", "", {"bounce_size_limit"}});
    EXPECT_EQ(shown, "[queue]\nbounce_size_limit = \"50000B\"\n");
    EXPECT_EQ(load_ok("[server]\nuser = \"p\"\n" + shown).queue.bounce_size_limit, 50000u);
    auto doc = nlohmann::json::parse(show(c, {}, show_format::json));
    EXPECT_EQ(doc["queue"]["bounce_size_limit"], "50000B");
}

TEST(config_show, json_has_the_same_shape) {
    std::string text(sample);
    auto doc = nlohmann::json::parse(show(load_ok(text), {}, show_format::json));
    EXPECT_EQ(doc["server"]["hostname"], "mx1.example.test");
    EXPECT_EQ(doc["receive_connector"][0]["require_tls"], true);
    EXPECT_EQ(doc["receive_connector"][0]["partner_fingerprints"][0],
              "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
    EXPECT_EQ(doc["receive_connector"][1]["tls"], "none");
    EXPECT_EQ(doc["send_connector"][0]["tls_auth_level"], "domain_validation");
    EXPECT_EQ(doc["queue"]["expire"], "2d");
}

TEST(config_show, section_name_and_fields_filter) {
    std::string text(sample);
    auto c = load_ok(text);
    EXPECT_EQ(show(c, {"receive_connector", "plain", {"require_tls", "tls"}}),
              "[[receive_connector]]\nname = \"plain\"\ntls = \"none\"\nrequire_tls = false\n");
    EXPECT_EQ(show(c, {"receive_connector", "", {"require_tls"}}),
              "[[receive_connector]]\nname = \"from-partner\"\nrequire_tls = true\n\n"
              "[[receive_connector]]\nname = \"plain\"\nrequire_tls = false\n");
    EXPECT_EQ(show(c, {"queue", "", {}}), "[queue]\nretry = [\"1m\", \"90m\"]\nexpire = \"2d\"\ndelay_notice = \"4h\"\n"
                                          "min_free = \"1GB\"\nbounce_size_limit = \"50KB\"\ndouble_bounce_recipient = \"\"\n");
    auto doc = nlohmann::json::parse(show(c, {"send_connector", "to-partner", {"require_tls"}}, show_format::json));
    EXPECT_EQ(doc, nlohmann::json::parse(R"({"send_connector":[{"name":"to-partner","require_tls":true}]})"));
    // Fields alone pick the key out of whichever sections have it.
    auto all = nlohmann::json::parse(show(c, {"", "", {"require_tls", "hostname"}}, show_format::json));
    EXPECT_EQ(all["server"], nlohmann::json::parse(R"({"hostname":"mx1.example.test"})"));
    EXPECT_EQ(all["send_connector"][0]["require_tls"], true);
    EXPECT_FALSE(all.contains("tls"));
}

TEST(config_show, unknown_filters_are_refused) {
    auto c = load_ok(sample);
    EXPECT_THROW(show(c, {"nosuch", "", {}}), std::invalid_argument);
    EXPECT_THROW(show(c, {"server", "x", {}}), std::invalid_argument);
    EXPECT_THROW(show(c, {"receive_connector", "nosuch", {}}), std::invalid_argument);
    EXPECT_THROW(show(c, {"server", "", {"require_tls"}}), std::invalid_argument);
}

TEST(config_show, strings_are_escaped_as_toml) {
    auto c = load_ok("[server]\nuser = \"p\"\ndata_dir = \"/srv/a \\\"b\\\"\\\\c\"\n");
    std::string shown = show(c, {"server", "", {"data_dir"}});
    EXPECT_EQ(shown, "[server]\ndata_dir = \"/srv/a \\\"b\\\"\\\\c\"\n");
    EXPECT_EQ(load_ok(shown).server.data_dir, "/srv/a \"b\"\\c");
}

}  // namespace
}  // namespace postern::config
