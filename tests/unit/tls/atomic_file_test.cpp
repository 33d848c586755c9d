#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tls/keyring/atomic_file.hpp"
#include "unit/tls/test_pki.hpp"

namespace postern::tls {
namespace {

using test::temp_dir;

std::vector<std::string> temporaries(const std::filesystem::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.path().filename().string().find(".tmp-") != std::string::npos) names.push_back(e.path().filename());
    return names;
}

TEST(atomic_file, replaces_content_with_the_mode_and_leaves_no_temporary) {
    temp_dir dir;
    write_file_atomically(dir / "ring.p12", "old", 0600);
    write_file_atomically(dir / "ring.p12", "new", 0600);
    EXPECT_EQ(read_file(dir / "ring.p12"), "new");
    struct stat st {};
    ASSERT_EQ(::stat((dir / "ring.p12").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_TRUE(temporaries(dir.path).empty());
}

TEST(atomic_file, next_write_removes_a_temporary_abandoned_by_a_killed_writer) {
    temp_dir dir;
    write_file_atomically(dir / "ring.p12", "old", 0600);
    {   // what a writer killed before its rename leaves: an unlocked 0600 temporary
        int fd = ::open((dir / ".ring.p12.tmp-AbC123").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, "half", 4), 4);
        ::close(fd);
    }
    EXPECT_EQ(read_file(dir / "ring.p12"), "old");
    write_file_atomically(dir / "ring.p12", "new", 0600);
    EXPECT_EQ(read_file(dir / "ring.p12"), "new");
    EXPECT_TRUE(temporaries(dir.path).empty());
}

TEST(atomic_file, a_temporary_locked_by_a_live_writer_is_left_alone) {
    temp_dir dir;
    auto busy = dir / ".ring.p12.tmp-Live01";
    int fd = ::open(busy.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX), 0);
    // flock locks belong to the open file description: a second open() is another writer.
    write_file_atomically(dir / "ring.p12", "new", 0600);
    EXPECT_TRUE(std::filesystem::exists(busy));
    ::close(fd);
    write_file_atomically(dir / "ring.p12", "newer", 0600);
    EXPECT_FALSE(std::filesystem::exists(busy));
    // Other files' temporaries are never touched.
    std::ofstream(dir / ".other.tmp-Zzz999") << "x";
    write_file_atomically(dir / "ring.p12", "newest", 0600);
    EXPECT_TRUE(std::filesystem::exists(dir / ".other.tmp-Zzz999"));
}

}  // namespace
}  // namespace postern::tls
