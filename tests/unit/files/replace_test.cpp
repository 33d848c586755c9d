// The one file writer: atomic, never through a symlink left in a shared directory, and
// the options each caller relies on (mode, keeping mode and owner, through a symlink).
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "files/replace.hpp"

namespace postern::files {
namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string pattern = (fs::temp_directory_path() / "postern-files-XXXXXX").string();
        path = ::mkdtemp(pattern.data());
    }
    ~temp_dir() { fs::remove_all(path); }
};

mode_t mode_of(const fs::path& p) {
    struct stat st {};
    ::stat(p.c_str(), &st);
    return st.st_mode & 07777;
}

std::size_t entries(const fs::path& dir) {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

TEST(replace_file, writes_the_content_with_its_mode_and_leaves_nothing_else) {
    temp_dir d;
    replace_file(d.path / "ready.json", "{\"pid\": 1}\n");
    EXPECT_EQ(read(d.path / "ready.json"), "{\"pid\": 1}\n");
    EXPECT_EQ(mode_of(d.path / "ready.json"), 0600u);
    replace_options o;
    o.mode = 0644;
    replace_file(d.path / "cert.pem", "x", o);
    EXPECT_EQ(mode_of(d.path / "cert.pem"), 0644u);
    EXPECT_EQ(entries(d.path), 2u);
}

TEST(replace_file, a_symlink_that_looks_like_a_temporary_file_is_not_followed_or_removed) {
    temp_dir d;
    const auto victim = d.path / "victim";
    { std::ofstream(victim) << "precious"; }
    fs::create_symlink(victim, d.path / ".ready.json.tmp-AAAAAA");
    replace_file(d.path / "ready.json", "{}\n");
    EXPECT_EQ(read(victim), "precious");
    EXPECT_TRUE(fs::is_symlink(d.path / ".ready.json.tmp-AAAAAA"));
    EXPECT_EQ(read(d.path / "ready.json"), "{}\n");
}

TEST(replace_file, a_symlink_at_the_final_name_is_replaced_not_followed) {
    temp_dir d;
    const auto victim = d.path / "victim";
    { std::ofstream(victim) << "precious"; }
    fs::create_symlink(victim, d.path / "ready.json");
    replace_file(d.path / "ready.json", "{}\n");
    EXPECT_EQ(read(victim), "precious");
    EXPECT_FALSE(fs::is_symlink(d.path / "ready.json"));
}

TEST(replace_file, through_symlink_replaces_the_target_and_keeps_the_link) {
    temp_dir d;
    const auto real = d.path / "postern.toml";
    { std::ofstream(real) << "old"; }
    ::chmod(real.c_str(), 0640);
    fs::create_symlink(real, d.path / "link.toml");
    replace_options o;
    o.through_symlink = true;
    o.keep_mode = true;
    replace_file(d.path / "link.toml", "new", o);
    EXPECT_TRUE(fs::is_symlink(d.path / "link.toml"));
    EXPECT_EQ(read(real), "new");
    EXPECT_EQ(mode_of(real), 0640u);
}

TEST(replace_file, a_missing_directory_is_an_error_naming_the_file) {
    temp_dir d;
    try {
        replace_file(d.path / "nosuch" / "f", "x");
        FAIL() << "no error";
    } catch (const file_error& e) {
        EXPECT_NE(std::string(e.what()).find("nosuch/f"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace postern::files
