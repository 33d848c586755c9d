// A real full disk: the queue on an 8MB tmpfs. Needs root (mount); skipped otherwise.
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "queue/store.hpp"
#include "unit/queue/test_support.hpp"

namespace postern::queue {
namespace {

using testing::commit_and_wait;
using testing::sample_envelope;

class full_disk : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs";
        if (::mount("tmpfs", mount_dir_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=0700") != 0)
            GTEST_SKIP() << "cannot mount a tmpfs: " << std::strerror(errno);
        mounted_ = true;
    }
    void TearDown() override {
        if (mounted_) ::umount2(mount_dir_.path().c_str(), MNT_DETACH);
    }

    // Writes a file until the file system is full; returns how many bytes fit.
    std::uint64_t fill(const std::filesystem::path& file) {
        int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) return 0;
        std::string chunk(64 * 1024, 'f');
        std::uint64_t written = 0;
        for (;;) {
            auto n = ::write(fd, chunk.data(), chunk.size());
            if (n <= 0) break;
            written += static_cast<std::uint64_t>(n);
        }
        // Single pages may be left over; fill them too, a byte at a time is not needed:
        // smaller chunks catch the tail.
        for (std::size_t size = 4096; size > 0; size /= 2)
            while (::write(fd, chunk.data(), size) > 0) written += size;
        ::close(fd);
        return written;
    }

    std::filesystem::path root() const { return mount_dir_.path(); }

private:
    testing::temp_dir mount_dir_;
    bool mounted_ = false;
};

TEST_F(full_disk, commit_fails_with_enospc_then_succeeds_once_space_is_freed) {
    auto queue_dir = root() / "queue";
    auto s = open_rocksdb_store({.dir = queue_dir, .min_free = 0});
    auto first = commit_and_wait(*s, sample_envelope(), "before the disk filled");
    ASSERT_TRUE(first.ok) << first.reason;

    auto filler = root() / "filler";
    ASSERT_GT(fill(filler), 0u);

    std::string body(20 * 1024, 'b');
    auto refused = commit_and_wait(*s, sample_envelope(), body);
    ASSERT_FALSE(refused.ok) << "a commit succeeded on a full disk";
    EXPECT_NE(refused.reason.find("rocksdb: "), std::string::npos) << refused.reason;
    EXPECT_NE(refused.reason.find("No space left on device"), std::string::npos) << refused.reason;
    // Still full: the store keeps refusing, with the same kind of reason.
    auto refused_again = commit_and_wait(*s, sample_envelope(), body);
    EXPECT_FALSE(refused_again.ok);
    EXPECT_NE(refused_again.reason.find("No space left on device"), std::string::npos) << refused_again.reason;

    std::filesystem::remove(filler);
    auto after = commit_and_wait(*s, sample_envelope(), body);
    ASSERT_TRUE(after.ok) << "same store object after freeing space: " << after.reason;
    auto more = commit_and_wait(*s, sample_envelope(), "and another");
    ASSERT_TRUE(more.ok) << more.reason;

    // Nothing half-stored: every message has both parts, the refused ones have neither.
    for (const auto& env : s->list()) EXPECT_TRUE(s->load_body(env.id)) << env.id;
    EXPECT_EQ(s->list().size(), 3u);

    s.reset();
    auto reopened = open_rocksdb_store({.dir = queue_dir, .min_free = 0});
    EXPECT_EQ(reopened->load_body(first.id), "before the disk filled");
    EXPECT_EQ(reopened->load_body(after.id), body);
    EXPECT_EQ(reopened->load_body(more.id), "and another");
    EXPECT_EQ(reopened->list().size(), 3u);
}

TEST_F(full_disk, min_free_refuses_before_the_disk_is_full) {
    constexpr std::uint64_t min_free = 1024 * 1024;
    auto s = open_rocksdb_store({.dir = root() / "queue", .min_free = min_free});
    struct statvfs fs {};
    ASSERT_EQ(::statvfs(root().c_str(), &fs), 0);
    std::uint64_t free = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
    ASSERT_GT(free, min_free);
    std::ofstream(root() / "filler") << std::string(free - min_free / 2, 'f');

    auto r = commit_and_wait(*s, sample_envelope(), "body");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.reason.find("below min_free 1MB"), std::string::npos) << r.reason;
    EXPECT_TRUE(s->list().empty());
    EXPECT_EQ(s->stats().syncs, 0u) << "nothing may be written below min_free";

    std::filesystem::remove(root() / "filler");
    auto ok = commit_and_wait(*s, sample_envelope(), "body");
    EXPECT_TRUE(ok.ok) << ok.reason;
}

}  // namespace
}  // namespace postern::queue
