// queue/rocksdb_store.cpp: the queue store on RocksDB, with group commit.
//
// Layout: column family "envelopes" (id -> encode_envelope()) and "bodies" (id -> raw
// message bytes). Bodies of 4KB and more go to blob files (integrated BlobDB) when the
// memtable is flushed, but they enter the database through the same WriteBatch as the
// envelope, so the WAL record that makes a message durable holds both or neither.
//
// Large bodies (DESIGN §7 "Bodies"): the receive side streams a body that outgrows its
// buffer into a spool file (<queue>-bodies/spool/, open_spool()), so no session holds a
// large message in memory. At commit the committer appends the last part, syncs the file,
// renames it to <queue>-bodies/<id> and syncs the directory, all before the synced write
// of the envelope that names it (body_in_file): a crash leaves either both or an orphan
// file, removed at the next open. Removing the message removes its file after the write.
// Delivery reads such a body from its file (body_file()), a block at a time.
//
// Group commit (DESIGN §2, STYLE E8): commit() only queues the message. One committer
// thread takes everything queued while the previous synced write was in flight, writes it
// as one WriteBatch with sync=true, and then calls every `done`. Under load, one fsync
// acknowledges many messages; alone, a message waits for exactly one fsync.
//
// Full disk: below min_free the committer refuses new messages without writing anything.
// If a write fails anyway, RocksDB stops accepting writes (background error state), and so
// does the store: it is down, "full" for ENOSPC (DESIGN §5: 452 4.3.1) or "failed" for any
// other error (EIO, corruption, a failed paranoid check: 451 4.3.0, logged once, and
// delivery waits). Recovery is ours (RocksDB's automatic recovery is off): once a disk
// check passes (free space at least min_free, a small file written and synced in the
// queue directory), the database is closed and reopened, which replays the WAL and starts
// a new one, so a torn WAL tail is never followed by acknowledged records; a synced probe
// write must then succeed. A full store tries at every write, a failed one every
// recovery_interval. Not DB::Resume(): Debian's librocksdb is built with assertions, and
// going on with the same database after a WAL write failed with ENOSPC (Resume(), then the
// next write) tripped one (writable_file_writer.h:312, sync_without_flush_called_),
// aborting the process. A store that cannot be reopened
// calls on_unrecoverable: the process exits for its supervisor to restart it. Readers
// wait on db_lock_ while the handle is replaced.
#include "queue/store.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/file_system.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include "queue/envelope_codec.hpp"
#include "queue/queue_id.hpp"

namespace postern::queue {

namespace {

constexpr char envelopes_family[] = "envelopes";
constexpr char bodies_family[] = "bodies";

// One write group is capped so that a burst of large messages does not build a single
// batch of gigabytes; the rest waits for the next sync.
constexpr std::uint64_t max_group_bytes = 64ull * 1024 * 1024;
// low_on_space() is asked at every MAIL command; statvfs at most this often.
constexpr auto free_space_cache_time = std::chrono::seconds(1);

std::string format_size(std::uint64_t bytes) {
    static constexpr const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    double value = static_cast<double>(bytes);
    std::size_t unit = 0;
    while (value >= 1024 && unit + 1 < std::size(units)) {
        value /= 1024;
        ++unit;
    }
    if (unit == 0 || value >= 100 || value == static_cast<double>(static_cast<std::uint64_t>(value)))
        return fmt::format("{}{}", static_cast<std::uint64_t>(value), units[unit]);
    return fmt::format("{:.1f}{}", value, units[unit]);
}

std::string rocksdb_reason(const rocksdb::Status& status) { return "rocksdb: " + status.ToString(); }

// Makes every file RocksDB creates mode 0600 whatever the process umask is
// (DESIGN §3 "Files": queue files 0600). The directory is 0700 as well, so the short
// window between open(0644 & ~umask) and the chmod exposes nothing.
class private_files_fs final : public rocksdb::FileSystemWrapper {
public:
    explicit private_files_fs(const std::shared_ptr<rocksdb::FileSystem>& target)
        : FileSystemWrapper(target) {}
    const char* Name() const override { return "postern_private_files"; }

    rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
        return make_private(f, target()->NewWritableFile(f, o, r, dbg));
    }
    rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                         std::unique_ptr<rocksdb::FSWritableFile>* r,
                                         rocksdb::IODebugContext* dbg) override {
        return make_private(f, target()->ReopenWritableFile(f, o, r, dbg));
    }
    rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old,
                                        const rocksdb::FileOptions& o,
                                        std::unique_ptr<rocksdb::FSWritableFile>* r,
                                        rocksdb::IODebugContext* dbg) override {
        return make_private(f, target()->ReuseWritableFile(f, old, o, r, dbg));
    }
    rocksdb::IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSRandomRWFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
        return make_private(f, target()->NewRandomRWFile(f, o, r, dbg));
    }
    rocksdb::IOStatus NewLogger(const std::string& f, const rocksdb::IOOptions& o,
                                std::shared_ptr<rocksdb::Logger>* r,
                                rocksdb::IODebugContext* dbg) override {
        return make_private(f, target()->NewLogger(f, o, r, dbg));
    }

    rocksdb::IOStatus LockFile(const std::string& f, const rocksdb::IOOptions& o, rocksdb::FileLock** l,
                               rocksdb::IODebugContext* dbg) override {
        return make_private(f, target()->LockFile(f, o, l, dbg));
    }

private:
    static rocksdb::IOStatus make_private(const std::string& file, rocksdb::IOStatus created) {
        if (created.ok() && ::chmod(file.c_str(), 0600) != 0)
            return rocksdb::IOStatus::IOError("chmod 0600 " + file, std::strerror(errno));
        return created;
    }
};

// RocksDB's informational LOG, written with plain write(2) and errors ignored.
// Why not RocksDB's own logger: Debian builds librocksdb with assertions on, and its
// logger asserts (aborting the process) when it writes again after a failed write, which
// is exactly what happens on a full disk. A diagnostic log must never take the queue down.
class queue_info_log final : public rocksdb::Logger {
public:
    explicit queue_info_log(const std::filesystem::path& dir)
        : Logger(rocksdb::InfoLogLevel::INFO_LEVEL), file_(dir / "LOG"), previous_(dir / "LOG.old") {
        open_file();
    }
    ~queue_info_log() override {
        if (fd_ >= 0) ::close(fd_);
    }

    using rocksdb::Logger::Logv;
    void Logv(const char* format, va_list args) override {
        char line[2048];
        auto now = std::chrono::system_clock::now();
        auto seconds = std::chrono::system_clock::to_time_t(now);
        auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
        std::tm utc{};
        ::gmtime_r(&seconds, &utc);
        int prefix = static_cast<int>(std::strftime(line, sizeof line, "%Y/%m/%d-%H:%M:%S", &utc));
        prefix += std::snprintf(line + prefix, sizeof line - prefix, ".%06lld ", static_cast<long long>(micros));
        int body = std::vsnprintf(line + prefix, sizeof line - prefix - 1, format, args);
        if (body < 0) return;
        std::size_t length = std::min(sizeof line - 2, static_cast<std::size_t>(prefix + body));
        if (line[length - 1] != '\n') line[length++] = '\n';

        std::lock_guard lock(mutex_);
        if (fd_ < 0) return;
        if (written_ + length > max_log_size) rotate();
        if (fd_ >= 0 && ::write(fd_, line, length) > 0) written_ += length;
    }

private:
    static constexpr std::uint64_t max_log_size = 8ull * 1024 * 1024;

    void open_file() {
        fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        struct stat st {};
        written_ = fd_ >= 0 && ::fstat(fd_, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
        if (fd_ >= 0) ::fchmod(fd_, 0600);
    }
    void rotate() {
        ::close(fd_);
        ::rename(file_.c_str(), previous_.c_str());
        open_file();
    }

    std::filesystem::path file_, previous_;
    std::mutex mutex_;
    int fd_ = -1;
    std::uint64_t written_ = 0;
};

// Turns off RocksDB's own recovery from background errors (it would poll and resume on
// its own schedule, racing our writes) and tells the store what went wrong: 1 = no space,
// 2 = anything else (the worse one wins).
class error_listener final : public rocksdb::EventListener {
public:
    explicit error_listener(std::atomic<int>& background_error) : background_error_(background_error) {}

    void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
        if (error && !error->ok()) note(*error);
    }
    void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status error,
                              bool* auto_recovery) override {
        if (auto_recovery) *auto_recovery = false;
        if (!error.ok()) note(error);
    }

private:
    void note(const rocksdb::Status& error) {
        const int kind = error.IsNoSpace() ? 1 : 2;
        int seen = background_error_.load();
        while (seen < kind && !background_error_.compare_exchange_weak(seen, kind)) {
        }
    }
    std::atomic<int>& background_error_;
};

void make_private_directory(const std::filesystem::path& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw std::runtime_error(fmt::format("queue store {}: cannot create: {}", dir.string(), ec.message()));
    // chmod, not mkdir's mode: mkdir is subject to the umask, and an existing directory
    // may have been created looser by hand.
    if (::chmod(dir.c_str(), 0700) != 0)
        throw std::runtime_error(fmt::format("queue store {}: cannot set mode 0700: {}", dir.string(),
                                             std::strerror(errno)));
}

rocksdb::CompressionType envelope_compression() {
    for (auto type : rocksdb::GetSupportedCompressions())
        if (type == rocksdb::kLZ4Compression) return type;
    return rocksdb::kNoCompression;
}

// A spool file: written by one session as the body arrives; the committer finishes it.
class file_spool final : public body_spool {
public:
    file_spool(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
    ~file_spool() override {
        if (fd_ >= 0) ::close(fd_);
        if (!placed_) ::unlink(path_.c_str());
    }
    bool append(std::string_view bytes) override {
        if (error_ != 0) return false;
        while (!bytes.empty()) {
            const auto n = ::write(fd_, bytes.data(), bytes.size());
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                error_ = n < 0 ? errno : EIO;
                return false;
            }
            size_ += static_cast<std::uint64_t>(n);
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }
    std::uint64_t size() const override { return size_; }

    // The committer's part.
    int error() const { return error_; }
    int fd() const { return fd_; }
    const std::filesystem::path& path() const { return path_; }
    void placed() { placed_ = true; }

private:
    int fd_;
    std::filesystem::path path_;
    std::uint64_t size_ = 0;
    int error_ = 0;
    bool placed_ = false;
};

std::optional<std::string> read_file(const std::filesystem::path& path, std::uint64_t max_octets) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::string out;
    struct stat st {};
    if (::fstat(fd, &st) == 0) out.reserve(std::min<std::uint64_t>(static_cast<std::uint64_t>(st.st_size), max_octets));
    char block[64 * 1024];
    while (out.size() < max_octets) {
        const auto want = std::min<std::uint64_t>(sizeof block, max_octets - out.size());
        const auto n = ::read(fd, block, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ::close(fd);
            return std::nullopt;
        }
        if (n == 0) break;
        out.append(block, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
}

class rocksdb_store final : public store {
public:
    explicit rocksdb_store(const store_options& options);
    ~rocksdb_store() override;

    void commit(envelope env, std::string body, std::function<void(commit_result)> done) override;
    std::unique_ptr<body_spool> open_spool() override;
    void commit_spooled(envelope env, std::unique_ptr<body_spool> spool, std::string tail,
                        std::function<void(commit_result)> done) override;
    std::optional<std::string> load_body_prefix(const std::string& id, std::uint64_t max_octets) const override;
    std::filesystem::path body_file(const std::string& id) const override { return bodies_dir_ / id; }
    bool low_on_space() const override;
    store_condition condition() const override;
    std::optional<envelope> load_envelope(const std::string& id) const override;
    std::optional<std::string> load_body(const std::string& id) const override;
    std::vector<envelope> list() const override;
    bool update(const envelope& env, std::string* reason) override;
    bool remove(const std::string& id, std::string* reason) override;
    void change(std::string id, envelope_change apply, std::function<void(change_result)> done) override;
    store_stats stats() const override;

private:
    enum class write_kind { commit, update, remove, change };
    struct pending_write {
        write_kind kind = write_kind::commit;
        std::string id{};
        std::string encoded_envelope{};  // commit, update
        std::string body{};              // commit
        std::function<void(commit_result)> done{};
        envelope_change apply{};                            // change
        std::function<void(change_result)> change_done{};   // change
        envelope committed{};                               // commit: handed back on success
        std::unique_ptr<file_spool> spool{};                // commit of a large body: its file
        std::uint64_t bytes() const { return id.size() + encoded_envelope.size() + body.size(); }
    };
    // The queue as it will be once the group being built is written: what earlier writes
    // of the group put (an envelope) or removed (nullopt), over what is on disk.
    class group_view;

    enum class down_kind : int { up = 0, full = 1, failed = 2 };

    void open_database();
    void close_database();
    void go_down(down_kind kind, const std::string& reason);   // committer thread
    bool recovery_due() const;
    bool recover();                                  // committer thread; true: up again
    std::optional<std::string> disk_check() const;   // why the disk cannot take writes yet
    rocksdb::Status probe_write();
    bool submit_and_wait(pending_write write, std::string* reason);
    void run_committer();
    void write_group(std::vector<pending_write>& group);
    // The parts of write_group: one batch for the group, made durable once, then every
    // writer told its outcome.
    struct write_outcome;
    struct group_write;
    void refuse_when_down(group_write& g);
    void batch_write(pending_write& w, write_outcome& out, group_write& g);
    void batch_change(pending_write& w, write_outcome& out, group_write& g);
    rocksdb::Status make_durable(group_write& g);
    void report_group(std::vector<pending_write>& group, group_write& g, const rocksdb::Status& status);
    rocksdb::Status write_synced(rocksdb::WriteBatch& batch);
    // statvfs of the queue dir; refreshes the cache. std::nullopt when statvfs fails.
    std::optional<std::uint64_t> measure_free_space() const;
    std::optional<std::string> space_refusal();
    bool exists(const std::string& id) const;
    /// Finishes a spooled body (tail, sync, rename to its id). The reason when it failed;
    /// `disk_fault` when that was not a full disk.
    std::optional<std::string> place_body(pending_write& w, bool& disk_fault);
    void remove_orphan_bodies();

    std::filesystem::path bodies_dir_;               // <queue dir>-bodies
    std::atomic<std::uint64_t> spool_counter_{0};

    store_options options_;
    std::unique_ptr<rocksdb::Env> env_;
    std::shared_ptr<rocksdb::Cache> block_cache_;
    rocksdb::DB* db_ = nullptr;
    rocksdb::ColumnFamilyHandle* envelopes_ = nullptr;
    rocksdb::ColumnFamilyHandle* bodies_ = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles_;
    std::unique_ptr<queue_id_generator> ids_;

    std::atomic<int> background_error_{0};           // error_listener's: 1 no space, 2 other
    // Down state (committer thread writes, anyone reads). The database handle is replaced
    // only by the committer, under db_lock_ held exclusively.
    std::atomic<int> down_{0};                       // a down_kind
    std::string down_reason_;                        // committer thread only
    std::chrono::steady_clock::time_point next_recovery_{};
    mutable std::shared_mutex db_lock_;
    mutable std::atomic<std::uint64_t> free_bytes_{0};
    mutable std::atomic<std::int64_t> free_checked_at_{0};

    std::atomic<std::uint64_t> commits_{0};
    std::atomic<std::uint64_t> syncs_{0};
    std::atomic<std::uint64_t> failed_commits_{0};

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<pending_write> queue_;  // guarded by mutex_
    bool stopping_ = false;            // guarded by mutex_
    std::thread committer_;
    std::thread::id committer_id_;
};

rocksdb_store::rocksdb_store(const store_options& options) : options_(options) {
    make_private_directory(options_.dir);
    bodies_dir_ = options_.dir.parent_path() / (options_.dir.filename().string() + "-bodies");
    make_private_directory(bodies_dir_);
    make_private_directory(bodies_dir_ / "spool");
    open_database();
    remove_orphan_bodies();
    measure_free_space();
    committer_ = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), "queue-commit");
        run_committer();
    });
    committer_id_ = committer_.get_id();
}

void rocksdb_store::open_database() {
    env_ = rocksdb::NewCompositeEnv(std::make_shared<private_files_fs>(rocksdb::FileSystem::Default()));

    rocksdb::DBOptions db;
    db.env = env_.get();
    db.create_if_missing = true;
    db.create_missing_column_families = true;
    db.paranoid_checks = true;
    // A crash can tear only the last WAL record; recover everything before it. After a
    // write error nothing is written until the database is reopened with a new WAL, so a
    // torn record is always the tail.
    db.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
    // Envelopes and bodies are flushed together, so no flush leaves one without the other.
    db.atomic_flush = true;
    db.max_background_jobs = 2;  // small machines; one flush and one compaction at a time
    db.max_subcompactions = 1;
    db.max_open_files = 256;
    // Relayed mail is usually deleted within a second of arriving. A body deleted while
    // still in the memtable is dropped by the flush and never written again (no blob file,
    // no second checksum, no garbage collection); so the memtable and the WAL that backs it
    // are sized for about a second of 100 KB messages at full speed.
    db.max_total_wal_size = 256ull * 1024 * 1024;
    db.info_log = std::make_shared<queue_info_log>(options_.dir);
    db.max_manifest_file_size = 64ull * 1024 * 1024;
    db.max_bgerror_resume_count = 0;  // recovery is ours: see error_listener
    db.listeners.push_back(std::make_shared<error_listener>(background_error_));

    block_cache_ = rocksdb::NewLRUCache(16ull * 1024 * 1024);
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = block_cache_;
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    auto table_factory = std::shared_ptr<rocksdb::TableFactory>(rocksdb::NewBlockBasedTableFactory(table));

    rocksdb::ColumnFamilyOptions envelopes;
    envelopes.table_factory = table_factory;
    envelopes.write_buffer_size = 4ull * 1024 * 1024;
    envelopes.max_write_buffer_number = 2;
    envelopes.target_file_size_base = 8ull * 1024 * 1024;
    envelopes.max_bytes_for_level_base = 32ull * 1024 * 1024;
    envelopes.compression = envelope_compression();

    rocksdb::ColumnFamilyOptions bodies;
    bodies.table_factory = table_factory;
    bodies.write_buffer_size = 64ull * 1024 * 1024;
    bodies.max_write_buffer_number = 3;
    bodies.target_file_size_base = 8ull * 1024 * 1024;
    bodies.max_bytes_for_level_base = 32ull * 1024 * 1024;
    bodies.compression = rocksdb::kNoCompression;
    bodies.enable_blob_files = true;
    bodies.min_blob_size = 4096;
    bodies.blob_file_size = 64ull * 1024 * 1024;
    bodies.blob_compression_type = rocksdb::kNoCompression;
    // Delivered messages are deleted; without blob GC their bytes would stay on disk.
    bodies.enable_blob_garbage_collection = true;
    bodies.blob_garbage_collection_age_cutoff = 0.5;

    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions(envelopes)},
        {envelopes_family, envelopes},
        {bodies_family, bodies},
    };
    auto status = rocksdb::DB::Open(db, options_.dir.string(), families, &handles_, &db_);
    if (!status.ok())
        throw std::runtime_error(fmt::format("queue store {}: cannot open: {}", options_.dir.string(),
                                             status.ToString()));
    envelopes_ = handles_[1];
    bodies_ = handles_[2];

    std::uint64_t floor = 0;
    std::unique_ptr<rocksdb::Iterator> last(db_->NewIterator(rocksdb::ReadOptions(), envelopes_));
    last->SeekToLast();
    if (last->Valid())
        if (auto value = parse_queue_id(last->key().ToStringView())) floor = *value;
    ids_ = std::make_unique<queue_id_generator>(floor);
}

rocksdb_store::~rocksdb_store() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    if (committer_.joinable()) committer_.join();
    close_database();
}

void rocksdb_store::close_database() {
    if (!db_) return;
    for (auto* handle : handles_) db_->DestroyColumnFamilyHandle(handle);
    handles_.clear();
    envelopes_ = bodies_ = nullptr;
    db_->Close().PermitUncheckedError();
    delete db_;
    db_ = nullptr;
}

void rocksdb_store::go_down(down_kind kind, const std::string& reason) {
    const auto before = static_cast<down_kind>(down_.load());
    next_recovery_ = std::chrono::steady_clock::now() + options_.recovery_interval;
    if (static_cast<int>(kind) <= static_cast<int>(before)) return;   // already down at least as badly
    down_.store(static_cast<int>(kind));
    down_reason_ = reason;
    if (kind == down_kind::failed)
        spdlog::error("queue store failed: {}; new mail gets 451 4.3.0 and delivery waits while it recovers "
                      "(tried every {}s)", reason, options_.recovery_interval.count());
    else
        spdlog::warn("queue store full: {}; new mail gets 452 4.3.1 until space is back", reason);
}

bool rocksdb_store::recovery_due() const {
    // A full disk is checked at every write (cheap: statvfs, then one small file); a failed
    // one on its schedule.
    return static_cast<down_kind>(down_.load()) == down_kind::full ||
           std::chrono::steady_clock::now() >= next_recovery_;
}

std::optional<std::string> rocksdb_store::disk_check() const {
    if (auto full = const_cast<rocksdb_store*>(this)->space_refusal()) return full;
    const auto file = options_.dir / "postern-disk-check";
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return fmt::format("disk check: cannot create {}: {}", file.string(), std::strerror(errno));
    const std::string block(4096, 'p');
    std::optional<std::string> problem;
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size()))
        problem = fmt::format("disk check: cannot write {}: {}", file.string(), std::strerror(errno));
    else if (::fdatasync(fd) != 0)
        problem = fmt::format("disk check: cannot sync {}: {}", file.string(), std::strerror(errno));
    ::close(fd);
    ::unlink(file.c_str());
    return problem;
}

rocksdb::Status rocksdb_store::probe_write() {
    rocksdb::WriteBatch probe;
    probe.Put(db_->DefaultColumnFamily(), "postern-probe",
              std::to_string(std::chrono::system_clock::now().time_since_epoch().count()));
    rocksdb::WriteOptions write;
    write.sync = true;
    return db_->Write(write, &probe);
}

bool rocksdb_store::recover() {
    next_recovery_ = std::chrono::steady_clock::now() + options_.recovery_interval;
    if (disk_check()) return false;                  // the disk still fails: keep what we have
    std::string why;
    {
        std::unique_lock exclusive(db_lock_);
        close_database();
        try {
            open_database();
            if (auto probed = probe_write(); !probed.ok()) why = rocksdb_reason(probed);
        } catch (const std::exception& e) {
            why = e.what();
        }
    }
    if (!db_) {
        spdlog::critical("queue store cannot be reopened: {}", why);
        if (options_.on_unrecoverable) options_.on_unrecoverable(why);
        return false;
    }
    if (!why.empty()) {
        spdlog::debug("queue store still failing after reopening: {}", why);
        return false;
    }
    spdlog::info("queue store recovered (reopened) after: {}", down_reason_);
    background_error_.store(0);
    down_.store(static_cast<int>(down_kind::up));
    down_reason_.clear();
    return true;
}

void rocksdb_store::commit(envelope env, std::string body, std::function<void(commit_result)> done) {
    env.id = ids_->next();
    env.body_size = body.size();
    pending_write write{.kind = write_kind::commit, .id = env.id, .encoded_envelope = encode_envelope(env),
                        .body = std::move(body), .done = std::move(done)};
    write.committed = std::move(env);
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(write));
    }
    wake_.notify_one();
}

std::unique_ptr<body_spool> rocksdb_store::open_spool() {
    const auto path = bodies_dir_ / "spool" / fmt::format("{}-{}.tmp", ::getpid(), spool_counter_.fetch_add(1));
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return store::open_spool();          // the commit will meet the same disk
    return std::make_unique<file_spool>(fd, path);
}

void rocksdb_store::commit_spooled(envelope env, std::unique_ptr<body_spool> spool, std::string tail,
                                   std::function<void(commit_result)> done) {
    auto* file = dynamic_cast<file_spool*>(spool.get());
    if (!file) return store::commit_spooled(std::move(env), std::move(spool), std::move(tail), std::move(done));
    spool.release();
    std::unique_ptr<file_spool> owned(file);
    env.id = ids_->next();
    env.body_size = owned->size() + tail.size();
    env.body_in_file = true;
    pending_write write{.kind = write_kind::commit, .id = env.id, .encoded_envelope = encode_envelope(env),
                        .body = std::move(tail), .done = std::move(done)};
    write.committed = std::move(env);
    write.spool = std::move(owned);
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(write));
    }
    wake_.notify_one();
}

std::optional<std::string> rocksdb_store::place_body(pending_write& w, bool& disk_fault) {
    auto& spool = *w.spool;
    auto failed = [&](const char* step, int error) -> std::optional<std::string> {
        disk_fault = error != ENOSPC;
        return fmt::format("body file {}: {}: {}", spool.path().string(), step, std::strerror(error));
    };
    if (spool.error() != 0) return failed("write", spool.error());
    if (!w.body.empty() && !spool.append(w.body)) return failed("write", spool.error());
    if (::fdatasync(spool.fd()) != 0) return failed("sync", errno);
    if (::rename(spool.path().c_str(), (bodies_dir_ / w.id).c_str()) != 0) return failed("rename", errno);
    spool.placed();
    return std::nullopt;
}

void rocksdb_store::remove_orphan_bodies() {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(bodies_dir_ / "spool", ec)) {
        std::error_code ignored;
        std::filesystem::remove(entry.path(), ignored);   // a session's spool from a run that ended
    }
    for (const auto& entry : std::filesystem::directory_iterator(bodies_dir_, ec)) {
        if (!entry.is_regular_file()) continue;
        const auto id = entry.path().filename().string();
        auto env = load_envelope(id);
        if (!env || !env->body_in_file) {
            // A body whose envelope never became durable (a crash between the two), or
            // whose message was removed just before a crash.
            std::error_code ignored;
            std::filesystem::remove(entry.path(), ignored);
        }
    }
}

bool rocksdb_store::update(const envelope& env, std::string* reason) {
    return submit_and_wait({.kind = write_kind::update, .id = env.id, .encoded_envelope = encode_envelope(env)}, reason);
}

bool rocksdb_store::remove(const std::string& id, std::string* reason) {
    return submit_and_wait({.kind = write_kind::remove, .id = id}, reason);
}

void rocksdb_store::change(std::string id, envelope_change apply, std::function<void(change_result)> done) {
    pending_write write{.kind = write_kind::change, .id = std::move(id), .apply = std::move(apply),
                        .change_done = std::move(done)};
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(write));
    }
    wake_.notify_one();
}

bool rocksdb_store::submit_and_wait(pending_write write, std::string* reason) {
    std::promise<commit_result> promise;
    auto future = promise.get_future();
    write.done = [&promise](commit_result r) { promise.set_value(std::move(r)); };
    if (std::this_thread::get_id() == committer_id_) {
        // Called from a `done` callback: the committer cannot wait for itself.
        std::vector<pending_write> group;
        group.push_back(std::move(write));
        write_group(group);
    } else {
        {
            std::lock_guard lock(mutex_);
            queue_.push_back(std::move(write));
        }
        wake_.notify_one();
    }
    auto result = future.get();
    if (!result.ok && reason) *reason = result.reason;
    return result.ok;
}

void rocksdb_store::run_committer() {
    std::vector<pending_write> group;
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            if (down_.load() != 0 && db_) {
                // Recovery runs on its own schedule, whether or not anything is written.
                wake_.wait_until(lock, next_recovery_, [this] { return stopping_ || !queue_.empty(); });
                if (!stopping_ && std::chrono::steady_clock::now() >= next_recovery_) {
                    lock.unlock();
                    recover();
                    continue;
                }
            } else {
                wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            }
            // Stopping still drains the queue: every accepted call gets its answer.
            if (queue_.empty()) return;
            std::uint64_t bytes = 0;
            while (!queue_.empty() && (group.empty() || bytes + queue_.front().bytes() <= max_group_bytes)) {
                bytes += queue_.front().bytes();
                group.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        write_group(group);
        group.clear();
    }
}

class rocksdb_store::group_view {
public:
    explicit group_view(const rocksdb_store& store) : store_(store) {}

    bool exists(const std::string& id) const {
        if (auto it = overlay_.find(id); it != overlay_.end()) return it->second.has_value();
        return store_.exists(id);
    }
    std::optional<envelope> load(const std::string& id) const {
        if (auto it = overlay_.find(id); it != overlay_.end()) return it->second;
        return store_.load_envelope(id);
    }
    void put(const envelope& env) { overlay_[env.id] = env; }
    void put_encoded(const std::string& id, std::string_view encoded) {
        if (auto env = decode_envelope(encoded)) overlay_[id] = std::move(*env);
        else overlay_.erase(id);   // undecodable: later reads see what the write put, via the database
    }
    void removed(const std::string& id) { overlay_[id] = std::nullopt; }

private:
    const rocksdb_store& store_;
    std::unordered_map<std::string, std::optional<envelope>> overlay_;
};

struct rocksdb_store::write_outcome {
    std::optional<std::string> refusal;
    bool store_fault = false;  // the refusal is a disk fault (a body file could not be synced)
    change_result change;      // change writes only
};

struct rocksdb_store::group_write {
    group_write(rocksdb_store& store, std::size_t size) : store(store), view(store), outcomes(size) {}

    /// Why new messages cannot be taken (disk space), asked once per group.
    const std::optional<std::string>& space() {
        if (!space_checked) {
            space_problem = store.space_refusal();
            space_checked = true;
        }
        return space_problem;
    }

    rocksdb_store& store;
    group_view view;
    std::vector<write_outcome> outcomes;
    rocksdb::WriteBatch batch;
    std::size_t batched = 0;
    std::vector<std::string> placed_bodies;    // body files renamed into place for this write
    std::vector<std::string> removed_bodies;   // body files of messages this write removes
    bool refused_as_down = false;              // the store was down: every write refused
    bool refused_as_failed = false;            // ... and down for a fault, not for space
    std::optional<std::string> space_problem;
    bool space_checked = false;
};

void rocksdb_store::write_group(std::vector<pending_write>& group) {
    group_write g(*this, group.size());
    refuse_when_down(g);
    for (std::size_t i = 0; i < group.size() && !g.refused_as_down; ++i) batch_write(group[i], g.outcomes[i], g);
    const rocksdb::Status status = make_durable(g);
    report_group(group, g, status);
}

/// A store that is down refuses the whole group; it tries to recover first when due.
void rocksdb_store::refuse_when_down(group_write& g) {
    if (const int background = background_error_.load(); background != 0 && down_.load() == 0)
        go_down(static_cast<down_kind>(background), "a background write (flush or compaction) failed");
    if (down_.load() != 0 && db_ && recovery_due()) recover();
    const auto down = static_cast<down_kind>(down_.load());
    g.refused_as_failed = down == down_kind::failed || !db_;
    g.refused_as_down = down != down_kind::up || !db_;
    if (!g.refused_as_down) return;
    const auto reason =
        fmt::format("queue store {} ({}); recovering", down == down_kind::full ? "full" : "failed", down_reason_);
    for (auto& out : g.outcomes) out.refusal = reason;
}

/// Adds one write to the group's batch, or refuses it alone.
void rocksdb_store::batch_write(pending_write& w, write_outcome& out, group_write& g) {
    switch (w.kind) {
    case write_kind::commit:
        // Only new messages are refused for space: updates and removals are tiny, and
        // removals are how space comes back.
        if (g.space()) {
            out.refusal = *g.space();
            return;
        }
        if (w.spool) {
            bool disk_fault = false;
            if (auto problem = place_body(w, disk_fault)) {
                out.refusal = std::move(problem);
                out.store_fault = disk_fault;
                return;
            }
            g.placed_bodies.push_back(w.id);
        } else {
            g.batch.Put(bodies_, w.id, w.body);
        }
        g.batch.Put(envelopes_, w.id, w.encoded_envelope);
        g.view.put_encoded(w.id, w.encoded_envelope);
        break;
    case write_kind::update:
        // Never resurrect a removed message as an envelope without a body.
        if (!parse_queue_id(w.id) || !g.view.exists(w.id)) {
            out.refusal = "no such message " + w.id;
            return;
        }
        g.batch.Put(envelopes_, w.id, w.encoded_envelope);
        g.view.put_encoded(w.id, w.encoded_envelope);
        break;
    case write_kind::remove: {
        auto current = parse_queue_id(w.id) ? g.view.load(w.id) : std::nullopt;
        if (!current) {
            out.refusal = "no such message " + w.id;
            return;
        }
        if (current->body_in_file) g.removed_bodies.push_back(w.id);
        g.batch.Delete(envelopes_, w.id);
        g.batch.Delete(bodies_, w.id);
        g.view.removed(w.id);
        break;
    }
    case write_kind::change:
        return batch_change(w, out, g);
    }
    ++g.batched;
}

/// A read-modify-write against the envelope as the group leaves it so far; the messages
/// it adds (DSNs) go in the same batch.
void rocksdb_store::batch_change(pending_write& w, write_outcome& out, group_write& g) {
    auto current = parse_queue_id(w.id) ? g.view.load(w.id) : std::nullopt;
    if (!current) {
        out.refusal = "no such message " + w.id;
        return;
    }
    out.change.found = true;
    std::vector<new_message> also_commit;
    try {
        out.change.action = w.apply(*current, also_commit);
    } catch (const std::exception& e) {
        out.refusal = std::string("change of ") + w.id + " failed: " + e.what();
        return;
    } catch (...) {
        out.refusal = "change of " + w.id + " failed";
        return;
    }
    if (!also_commit.empty() && g.space()) {
        out.refusal = *g.space();
        return;
    }
    current->id = w.id;   // `apply` cannot move the change to another message
    switch (out.change.action) {
    case change_action::keep: break;
    case change_action::update:
        g.batch.Put(envelopes_, w.id, encode_envelope(*current));
        g.view.put(*current);
        break;
    case change_action::remove:
        if (current->body_in_file) g.removed_bodies.push_back(w.id);
        g.batch.Delete(envelopes_, w.id);
        g.batch.Delete(bodies_, w.id);
        g.view.removed(w.id);
        break;
    }
    for (auto& m : also_commit) {
        m.env.id = ids_->next();
        m.env.body_size = m.body.size();
        g.batch.Put(bodies_, m.env.id, m.body);
        g.batch.Put(envelopes_, m.env.id, encode_envelope(m.env));
        g.view.put(m.env);
        out.change.new_ids.push_back(m.env.id);
    }
    if (out.change.action == change_action::keep && also_commit.empty()) return;   // nothing to write
    ++g.batched;
}

/// One synced write for the group, after the renames of its body files are durable.
rocksdb::Status rocksdb_store::make_durable(group_write& g) {
    rocksdb::Status status;
    if (!g.placed_bodies.empty()) {
        // The renames must be durable before the envelopes that name them.
        const int dir = ::open(bodies_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir < 0 || ::fsync(dir) != 0) {
            const auto reason = fmt::format("body directory {}: sync: {}", bodies_dir_.string(), std::strerror(errno));
            go_down(down_kind::failed, reason);
            status = rocksdb::Status::IOError(reason);
        }
        if (dir >= 0) ::close(dir);
    }
    if (g.batched > 0 && status.ok()) status = write_synced(g.batch);
    if (!status.ok()) {
        for (const auto& id : g.placed_bodies) ::unlink((bodies_dir_ / id).c_str());   // never named
    } else {
        for (const auto& id : g.removed_bodies) ::unlink((bodies_dir_ / id).c_str());
    }
    return status;
}

/// Tells every writer of the group what became of its write.
void rocksdb_store::report_group(std::vector<pending_write>& group, group_write& g, const rocksdb::Status& status) {
    const bool store_failed = g.refused_as_failed || static_cast<down_kind>(down_.load()) == down_kind::failed;
    for (std::size_t i = 0; i < group.size(); ++i) {
        auto& w = group[i];
        auto& out = g.outcomes[i];
        std::string reason;
        bool ok = false;
        // A refusal of this write alone (space, no such message) is not the store failing.
        const bool refused_alone = out.refusal.has_value() && !g.refused_as_down;
        if (out.refusal) reason = std::move(*out.refusal);
        else if (!status.ok()) reason = rocksdb_reason(status);
        else ok = true;
        try {
            if (w.kind == write_kind::change) {
                out.change.ok = ok;
                out.change.reason = std::move(reason);
                if (!ok) out.change.new_ids.clear();
                if (ok) commits_.fetch_add(out.change.new_ids.size());
                if (w.change_done) w.change_done(std::move(out.change));
                continue;
            }
            commit_result result;
            result.ok = ok;
            result.store_failed = !ok && (out.store_fault || (!refused_alone && store_failed));
            result.reason = std::move(reason);
            if (ok) result.id = w.id;
            if (ok && w.kind == write_kind::commit) {
                result.committed = std::move(w.committed);
                result.body = std::move(w.body);
            }
            if (w.kind == write_kind::commit) (ok ? commits_ : failed_commits_).fetch_add(1);
            if (w.done) w.done(std::move(result));
        } catch (...) {
            // A throwing callback must not stop the committer: every other session
            // waiting for its 250 depends on this thread.
        }
    }
}

rocksdb::Status rocksdb_store::write_synced(rocksdb::WriteBatch& batch) {
    rocksdb::WriteOptions write;
    write.sync = true;
    auto status = db_->Write(write, &batch);
    syncs_.fetch_add(1);
    // ENOSPC is the ordinary full disk; any other error means the disk or the database
    // cannot be trusted to take writes. Either way nothing more is written until recovery.
    if (!status.ok()) go_down(status.IsNoSpace() ? down_kind::full : down_kind::failed, rocksdb_reason(status));
    return status;
}

std::optional<std::uint64_t> rocksdb_store::measure_free_space() const {
    struct statvfs fs {};
    if (::statvfs(options_.dir.c_str(), &fs) != 0) return std::nullopt;
    std::uint64_t bytes = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
    free_bytes_.store(bytes, std::memory_order_relaxed);
    free_checked_at_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                           std::memory_order_relaxed);
    return bytes;
}

std::optional<std::string> rocksdb_store::space_refusal() {
    auto free = measure_free_space();
    if (!free)
        return fmt::format("cannot measure free space of {}: {}", options_.dir.string(), std::strerror(errno));
    if (*free < options_.min_free)
        return fmt::format("free space {} below min_free {}", format_size(*free), format_size(options_.min_free));
    return std::nullopt;
}

// Free space only, on purpose: a store that is down for a full disk recovers at the next
// write once space is back, so MAIL must not be refused for being down.
bool rocksdb_store::low_on_space() const {
    auto now = std::chrono::steady_clock::now().time_since_epoch();
    std::int64_t checked = free_checked_at_.load(std::memory_order_relaxed);
    std::uint64_t free = free_bytes_.load(std::memory_order_relaxed);
    if (now.count() - checked >
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(free_space_cache_time).count()) {
        auto measured = measure_free_space();
        if (!measured) return true;
        free = *measured;
    }
    return free < options_.min_free;
}

store_condition rocksdb_store::condition() const {
    if (static_cast<down_kind>(down_.load()) == down_kind::failed) return store_condition::failed;
    return low_on_space() ? store_condition::low_on_space : store_condition::ok;
}

bool rocksdb_store::exists(const std::string& id) const {
    std::shared_lock shared(db_lock_);
    if (!db_) return false;
    std::string ignored;
    return db_->Get(rocksdb::ReadOptions(), envelopes_, id, &ignored).ok();
}

std::optional<envelope> rocksdb_store::load_envelope(const std::string& id) const {
    std::shared_lock shared(db_lock_);
    if (!db_) return std::nullopt;
    rocksdb::PinnableSlice value;
    if (!db_->Get(rocksdb::ReadOptions(), envelopes_, id, &value).ok()) return std::nullopt;
    return decode_envelope(value.ToStringView());
}

// Most bodies are records of the store: looked up first, so that a body in the store
// costs one read, as before bodies in files existed. Only when there is none is the
// envelope read to find a file.
std::optional<std::string> rocksdb_store::load_body_prefix(const std::string& id, std::uint64_t max_octets) const {
    {
        std::shared_lock shared(db_lock_);
        if (!db_) return std::nullopt;
        std::string value;
        if (db_->Get(rocksdb::ReadOptions(), bodies_, id, &value).ok()) {
            if (value.size() > max_octets) value.resize(max_octets);
            return value;
        }
    }
    if (auto env = load_envelope(id); env && env->body_in_file) return read_file(bodies_dir_ / id, max_octets);
    return std::nullopt;
}

std::optional<std::string> rocksdb_store::load_body(const std::string& id) const {
    return load_body_prefix(id, std::numeric_limits<std::uint64_t>::max());
}

std::vector<envelope> rocksdb_store::list() const {
    std::shared_lock shared(db_lock_);
    std::vector<envelope> all;
    if (!db_) return all;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), envelopes_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
        // A record that does not decode is left in place for `postern queue` to show,
        // rather than failing the whole listing the scheduler depends on.
        if (auto env = decode_envelope(it->value().ToStringView())) all.push_back(std::move(*env));
    }
    return all;
}

store_stats rocksdb_store::stats() const {
    store_stats s;
    s.commits = commits_.load();
    s.syncs = syncs_.load();
    s.failed_commits = failed_commits_.load();
    return s;
}

}  // namespace

std::unique_ptr<store> open_rocksdb_store(const store_options& options) {
    return std::make_unique<rocksdb_store>(options);
}

}  // namespace postern::queue
