// The ready-file writer: atomic, and never through a symlink left in a shared directory.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/ready_file.hpp"

namespace postern::daemon {
namespace {

std::string read(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(ready_file, a_symlink_at_the_temporary_name_is_not_followed) {
    std::string pattern = (std::filesystem::temp_directory_path() / "postern-ready-XXXXXX").string();
    const std::filesystem::path dir = ::mkdtemp(pattern.data());
    const auto victim = dir / "victim";
    { std::ofstream(victim) << "precious"; }
    const auto target = dir / "ready.json";
    // What write_file_atomically names its temporary file: .<name>.<pid>.tmp
    std::filesystem::create_symlink(victim, dir / (".ready.json." + std::to_string(::getpid()) + ".tmp"));
    write_file_atomically(target, "{\"pid\": 1}\n");
    EXPECT_EQ(read(victim), "precious");
    EXPECT_EQ(read(target), "{\"pid\": 1}\n");
    EXPECT_FALSE(std::filesystem::is_symlink(target));
    std::filesystem::remove_all(dir);
}

TEST(ready_file, a_symlink_at_the_final_name_is_replaced_not_followed) {
    std::string pattern = (std::filesystem::temp_directory_path() / "postern-ready-XXXXXX").string();
    const std::filesystem::path dir = ::mkdtemp(pattern.data());
    const auto victim = dir / "victim";
    { std::ofstream(victim) << "precious"; }
    std::filesystem::create_symlink(victim, dir / "ready.json");
    write_file_atomically(dir / "ready.json", "{}\n");
    EXPECT_EQ(read(victim), "precious");
    EXPECT_FALSE(std::filesystem::is_symlink(dir / "ready.json"));
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace postern::daemon
