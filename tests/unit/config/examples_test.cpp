// The shipped example configuration must stay valid and must exercise every section.
#include <filesystem>

#include <gtest/gtest.h>

#include "config/schema.hpp"

namespace postern::config {
namespace {

const std::filesystem::path examples = std::filesystem::path(__FILE__).parent_path() / "../../../examples";

TEST(config_examples, postern_toml_is_valid_and_complete) {
    auto r = load_file(examples / "postern.toml");
    for (const auto& e : r.errors) ADD_FAILURE() << e.to_string();
    for (const auto& w : r.warnings) ADD_FAILURE() << "unexpected warning: " << w.to_string();
    ASSERT_TRUE(r.config);
    const auto& c = *r.config;
    EXPECT_EQ(c.receive_connectors.size(), 3u);
    EXPECT_EQ(c.send_connectors.size(), 3u);
    EXPECT_TRUE(c.receive_connectors[0].mutual_tls());
    EXPECT_EQ(c.send_connectors[0].auth_level, tls_auth_level::domain_validation);
    EXPECT_EQ(c.server.control_socket, "/var/lib/postern/control.sock");
    EXPECT_EQ(c.metrics.listen, "127.0.0.1:9025");
}

}  // namespace
}  // namespace postern::config
