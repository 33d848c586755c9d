// Protocol log: Exchange's format, RFC 4180 CSV, escaping, rotation and retention.
#include <atomic>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "log/protocol_log.hpp"

namespace postern::log {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using sys_clock = std::chrono::system_clock;

class temp_dir {
public:
    temp_dir() {
        static std::atomic<int> counter{0};
        path_ = fs::temp_directory_path() / ("postern_log_test_" + std::to_string(::getpid()) + "_" +
                                             std::to_string(counter++));
        fs::remove_all(path_);
    }
    ~temp_dir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// A clock the test moves by hand.
struct manual_clock {
    std::shared_ptr<sys_clock::time_point> now = std::make_shared<sys_clock::time_point>();
    std::function<sys_clock::time_point()> function() const {
        return [now = now] { return *now; };
    }
};

sys_clock::time_point at(int year, unsigned month, unsigned day, int hour = 12, int ms = 0) {
    auto days = std::chrono::sys_days(std::chrono::year(year) / std::chrono::month(month) / std::chrono::day(day));
    return sys_clock::time_point(days) + std::chrono::hours(hour) + std::chrono::milliseconds(ms);
}

std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find("\r\n", start);
        if (end == std::string::npos) {
            out.push_back(text.substr(start));
            break;
        }
        out.push_back(text.substr(start, end - start));
        start = end + 2;
    }
    return out;
}

std::set<std::string> files_in(const fs::path& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
    return out;
}

TEST(csv_field, plain_text_is_unchanged) {
    EXPECT_EQ(csv_field("EHLO client.example.test"), "EHLO client.example.test");
    EXPECT_EQ(csv_field(""), "");
    EXPECT_EQ(csv_field("MAIL FROM:<jörg@example.test>"), "MAIL FROM:<jörg@example.test>");
}

TEST(csv_field, commas_and_quotes_are_quoted_per_rfc_4180) {
    EXPECT_EQ(csv_field("a,b"), "\"a,b\"");
    EXPECT_EQ(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    EXPECT_EQ(csv_field("\""), "\"\"\"\"");
}

TEST(csv_field, control_bytes_and_backslash_are_escaped) {
    EXPECT_EQ(csv_field("a\r\nb"), "a\\x0D\\x0Ab");
    EXPECT_EQ(csv_field(std::string_view("\0\x1b\x7f\t", 4)), "\\x00\\x1B\\x7F\\x09");
    EXPECT_EQ(csv_field("C:\\x0D"), "C:\\x5Cx0D");   // a literal "\x0D" stays distinguishable
}

TEST(csv_field, a_client_cannot_forge_a_line) {
    std::string attack = "HELO x\r\n2026-01-01T00:00:00.000Z,from-partner,0000000000000001,0,1.2.3.4:25,5.6.7.8:1,*,forged,";
    std::string field = csv_field(attack);
    EXPECT_EQ(field.find('\r'), std::string::npos);
    EXPECT_EQ(field.find('\n'), std::string::npos);
    EXPECT_EQ(field.front(), '"');   // its commas stay inside one quoted field
}

TEST(protocol_log, writes_exchange_format_files) {
    temp_dir dir;
    manual_clock clock;
    *clock.now = at(2026, 3, 1, 14, 123);
    {
        protocol_log log({dir.path(), log_kind::receive, 24h * 30, 1ull << 30, 10ull << 20, clock.function()});
        session_logger s(&log, "from-partner", "192.0.2.1:25", "198.51.100.7:41234");
        s.connect();
        s.sent("220 mx1.example.test ESMTP Postern");
        s.received("EHLO client,example");
        s.info("TLS TLSv1.3 TLS_AES_256_GCM_SHA384", "verdict: ok");
        s.received("QUIT\r\n2026-03-01T14:00:00.000Z,forged,line");
        s.disconnect();
        EXPECT_EQ(s.session_id().size(), 16u);
    }
    fs::path sub = dir.path() / "smtp-receive";
    EXPECT_EQ(files_in(sub), std::set<std::string>{"RECV20260301-1.log"});
    struct stat st {};
    ASSERT_EQ(::stat(sub.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    ASSERT_EQ(::stat((sub / "RECV20260301-1.log").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    auto lines = lines_of(read(sub / "RECV20260301-1.log"));
    ASSERT_EQ(lines.size(), 11u);
    EXPECT_EQ(lines[0], "#Software: Postern");
    EXPECT_EQ(lines[1].rfind("#Version: ", 0), 0u);
    EXPECT_EQ(lines[2], "#Log-type: SMTP Receive Protocol Log");
    EXPECT_EQ(lines[3], "#Date: 2026-03-01T14:00:00.123Z");
    EXPECT_EQ(lines[4], "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,"
                        "event,data,context");
    std::regex shape(R"(2026-03-01T14:00:00\.123Z,from-partner,[0-9A-F]{16},(\d+),192\.0\.2\.1:25,198\.51\.100\.7:41234,([-+<>*]),.*)");
    for (std::size_t i = 5; i < lines.size(); ++i) {
        std::smatch m;
        ASSERT_TRUE(std::regex_match(lines[i], m, shape)) << lines[i];
        EXPECT_EQ(m[1], std::to_string(i - 5));
    }
    EXPECT_TRUE(lines[5].ends_with(",+,,"));
    EXPECT_TRUE(lines[6].ends_with(",>,220 mx1.example.test ESMTP Postern,"));
    EXPECT_TRUE(lines[7].ends_with(",<,\"EHLO client,example\","));
    EXPECT_TRUE(lines[8].ends_with(",*,TLS TLSv1.3 TLS_AES_256_GCM_SHA384,verdict: ok"));
    EXPECT_TRUE(lines[9].ends_with(",<,\"QUIT\\x0D\\x0A2026-03-01T14:00:00.000Z,forged,line\","));
    EXPECT_TRUE(lines[10].ends_with(",-,,"));
}

TEST(protocol_log, send_log_has_its_own_folder_and_type) {
    temp_dir dir;
    manual_clock clock;
    *clock.now = at(2026, 12, 31, 23);
    {
        protocol_log log({dir.path(), log_kind::send, 24h * 30, 1ull << 30, 10ull << 20, clock.function()});
        log.write("to-partner", "0000000000000001", 0, "192.0.2.1:40000", "203.0.113.5:25", event::connect, {});
    }
    auto text = read(dir.path() / "smtp-send" / "SEND20261231-1.log");
    EXPECT_NE(text.find("#Log-type: SMTP Send Protocol Log\r\n"), std::string::npos);
}

TEST(protocol_log, new_file_each_utc_day) {
    temp_dir dir;
    manual_clock clock;
    *clock.now = at(2026, 3, 1, 23) + 59min + 59s;
    protocol_log log({dir.path(), log_kind::receive, 24h * 365, 1ull << 30, 10ull << 20, clock.function()});
    log.write("c", "S", 0, "l", "r", event::info, "before midnight");
    *clock.now += 2s;
    log.write("c", "S", 1, "l", "r", event::info, "after midnight");
    log.flush();
    fs::path sub = dir.path() / "smtp-receive";
    EXPECT_EQ(files_in(sub), (std::set<std::string>{"RECV20260301-1.log", "RECV20260302-1.log"}));
    EXPECT_NE(read(sub / "RECV20260301-1.log").find("before midnight"), std::string::npos);
    auto second = read(sub / "RECV20260302-1.log");
    EXPECT_EQ(second.rfind("#Software: Postern\r\n", 0), 0u);
    EXPECT_NE(second.find("after midnight"), std::string::npos);
}

TEST(protocol_log, new_file_when_one_passes_the_size_cap) {
    temp_dir dir;
    manual_clock clock;
    *clock.now = at(2026, 3, 1);
    {
        protocol_log log({dir.path(), log_kind::receive, 24h * 365, 1ull << 30, 1000, clock.function()});
        for (int i = 0; i < 30; ++i) log.write("c", "S", i, "l", "r", event::info, std::string(100, 'x'));
    }
    auto files = files_in(dir.path() / "smtp-receive");
    EXPECT_GE(files.size(), 3u);
    EXPECT_TRUE(files.count("RECV20260301-1.log"));
    EXPECT_TRUE(files.count("RECV20260301-3.log"));
    for (const auto& f : files) {
        auto size = fs::file_size(dir.path() / "smtp-receive" / f);
        EXPECT_LT(size, 1000u + 200u) << f;   // at most one line past the cap
        EXPECT_EQ(read(dir.path() / "smtp-receive" / f).rfind("#Software", 0), 0u) << f;
    }
}

TEST(protocol_log, a_restart_continues_todays_file) {
    temp_dir dir;
    manual_clock clock;
    *clock.now = at(2026, 3, 1);
    protocol_log_options options{dir.path(), log_kind::receive, 24h * 365, 1ull << 30, 10ull << 20, clock.function()};
    { protocol_log(options).write("c", "S", 0, "l", "r", event::info, "first run"); }
    { protocol_log(options).write("c", "T", 0, "l", "r", event::info, "second run"); }
    auto files = files_in(dir.path() / "smtp-receive");
    ASSERT_EQ(files, std::set<std::string>{"RECV20260301-1.log"});
    auto text = read(dir.path() / "smtp-receive" / "RECV20260301-1.log");
    EXPECT_NE(text.find("first run"), std::string::npos);
    EXPECT_NE(text.find("second run"), std::string::npos);
    EXPECT_EQ(text.find("#Software"), text.rfind("#Software"));   // one header
}

TEST(protocol_log, retention_by_age_and_by_total_size) {
    temp_dir dir;
    fs::path sub = dir.path() / "smtp-receive";
    fs::create_directories(sub);
    auto make = [&](const std::string& name, std::size_t size, sys_clock::time_point modified) {
        std::ofstream(sub / name) << std::string(size, 'x');
        auto ft = std::chrono::file_clock::from_sys(modified);
        fs::last_write_time(sub / name, ft);
    };
    auto now = sys_clock::now();
    make("RECV20200101-1.log", 10, now - 40 * 24h);   // older than max_age
    make("RECV20200102-1.log", 400, now - 3 * 24h);
    make("RECV20200102-2.log", 400, now - 2 * 24h);
    make("RECV20200103-1.log", 400, now - 1 * 24h);
    make("notes.txt", 10, now - 400 * 24h);            // not a log file: never touched
    {
        protocol_log log({dir.path(), log_kind::receive, 24h * 30, 1000, 10ull << 20, {}});
        log.write("c", "S", 0, "l", "r", event::info, "today");
    }
    auto files = files_in(sub);
    EXPECT_FALSE(files.count("RECV20200101-1.log"));   // too old
    EXPECT_FALSE(files.count("RECV20200102-1.log"));   // oldest beyond max_size
    EXPECT_TRUE(files.count("RECV20200102-2.log"));
    EXPECT_TRUE(files.count("RECV20200103-1.log"));
    EXPECT_TRUE(files.count("notes.txt"));
}

TEST(protocol_log, lines_reach_the_file_within_a_second_without_flush) {
    temp_dir dir;
    protocol_log log({dir.path(), log_kind::receive});
    log.write("c", "S", 0, "l", "r", event::received, "EHLO x");
    auto deadline = std::chrono::steady_clock::now() + 3s;
    std::string text;
    while (std::chrono::steady_clock::now() < deadline) {
        for (const auto& e : fs::directory_iterator(dir.path() / "smtp-receive")) text = read(e.path());
        if (text.find("EHLO x") != std::string::npos) break;
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_NE(text.find("EHLO x"), std::string::npos);
}

TEST(protocol_log, concurrent_writers_never_interleave_lines) {
    temp_dir dir;
    {
        protocol_log log({dir.path(), log_kind::receive});
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&log, t] {
                session_logger s(&log, "c", "l:1", "r:2");
                for (int i = 0; i < 500; ++i) s.received("line " + std::to_string(t) + " " + std::string(50, 'a' + t));
            });
        for (auto& th : threads) th.join();
    }
    std::size_t data_lines = 0;
    std::regex shape(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z,c,[0-9A-F]{16},\d+,l:1,r:2,<,line (\d) ([a-d]{50}),)");
    for (const auto& e : fs::directory_iterator(dir.path() / "smtp-receive"))
        for (const auto& line : lines_of(read(e.path()))) {
            if (line.starts_with("#")) continue;
            std::smatch m;
            ASSERT_TRUE(std::regex_match(line, m, shape)) << line;
            EXPECT_EQ(m[2].str(), std::string(50, 'a' + std::stoi(m[1].str())));
            ++data_lines;
        }
    EXPECT_EQ(data_lines, 2000u);
}

TEST(protocol_log, session_ids_are_unique_and_sortable) {
    std::vector<std::string> ids;
    for (int i = 0; i < 1000; ++i) ids.push_back(protocol_log::new_session_id());
    for (std::size_t i = 1; i < ids.size(); ++i) EXPECT_LT(ids[i - 1], ids[i]);
    for (const auto& id : ids) EXPECT_TRUE(std::regex_match(id, std::regex("[0-9A-F]{16}")));
}

TEST(csv_field, characters_that_reorder_or_break_a_line_are_escaped) {
    // U+202E (right-to-left override), U+2066 (isolate), U+200F (RLM), U+2028, U+2029, U+061C
    EXPECT_EQ(csv_field("a\xE2\x80\xAE" "b"), "a\\xE2\\x80\\xAEb");
    EXPECT_EQ(csv_field("\xE2\x81\xA6x"), "\\xE2\\x81\\xA6x");
    EXPECT_EQ(csv_field("\xE2\x80\x8F"), "\\xE2\\x80\\x8F");
    EXPECT_EQ(csv_field("1\xE2\x80\xA8" "2\xE2\x80\xA9" "3"), "1\\xE2\\x80\\xA82\\xE2\\x80\\xA93");
    EXPECT_EQ(csv_field("\xD8\x9C"), "\\xD8\\x9C");
    // other UTF-8 passes through: an em dash (U+2014) and an accented address
    EXPECT_EQ(csv_field("a\xE2\x80\x94" "b j\xC3\xB6rg@example.test"), "a\xE2\x80\x94" "b j\xC3\xB6rg@example.test");
    EXPECT_EQ(csv_field("\xE2\x80"), "\xE2\x80");   // a cut sequence is not mistaken for one
}

TEST(protocol_log, a_session_writes_at_most_its_cap_between_accepted_messages) {
    temp_dir dir;
    {
        protocol_log log({dir.path(), log_kind::receive});
        session_logger s(&log, "c", "l", "r");
        s.cap_lines(10);
        s.connect();
        for (int i = 0; i < 500; ++i) s.received("NOOP " + std::to_string(i));
        EXPECT_EQ(s.lines_not_written(), 490u);
        s.message_accepted();
        for (int i = 0; i < 5; ++i) s.received("after " + std::to_string(i));
        std::vector<session_logger::line> batch(20, {event::received, "batched", {}});
        s.put_all(batch);
        s.disconnect();
        log.flush();
    }
    auto files = files_in(dir.path() / "smtp-receive");
    ASSERT_EQ(files.size(), 1u);
    auto text = read(dir.path() / "smtp-receive" / *files.begin());
    auto count = [&](std::string_view part) {
        std::size_t n = 0;
        for (auto pos = text.find(part); pos != std::string::npos; pos = text.find(part, pos + 1)) ++n;
        return n;
    };
    EXPECT_EQ(count("NOOP "), 10u);
    EXPECT_EQ(count("protocol log cap reached (10 lines"), 2u);      // once before, once after the message
    EXPECT_EQ(count("490 lines not written (protocol log cap)"), 1u);
    EXPECT_EQ(count("after "), 5u);
    EXPECT_EQ(count("batched"), 5u);
    EXPECT_EQ(count("15 lines not written (protocol log cap)"), 1u);  // written before the disconnect
    EXPECT_EQ(count(",+,"), 1u);
    EXPECT_EQ(count(",-,"), 1u);
    EXPECT_LT(text.find("15 lines not written"), text.find(",-,"));
}

TEST(protocol_log, disabled_session_logger_writes_nothing) {
    temp_dir dir;
    {
        protocol_log log({dir.path(), log_kind::receive});
        session_logger s(&log, "c", "l", "r", /*enabled=*/false);
        s.connect();
        s.disconnect();
    }
    EXPECT_TRUE(files_in(dir.path() / "smtp-receive").empty());
}

}  // namespace
}  // namespace postern::log
