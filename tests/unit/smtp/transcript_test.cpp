// Recorded dialogues (tests/transcripts/*.txt) replayed against the server FSM and the
// client FSM, without sockets. Each file is one dialogue; tests/transcripts/README.md
// describes the format. Postern's side is checked at every point where the peer acts: what
// it wrote so far must be exactly what the transcript says, in order.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "smtp/client_fsm.hpp"
#include "smtp/server_fsm.hpp"

namespace postern::smtp {
namespace {

namespace fs = std::filesystem;

/// "\r", "\n", "\t", "\\" and "\xHH" in a transcript line.
std::string unescape(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\\' || i + 1 == text.size()) {
            out += text[i];
            continue;
        }
        const char c = text[++i];
        if (c == 'r') out += '\r';
        else if (c == 'n') out += '\n';
        else if (c == 't') out += '\t';
        else if (c == 'x' && i + 2 < text.size()) {
            out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else out += c;
    }
    return out;
}

std::string escape(std::string_view bytes) {
    std::string out;
    for (unsigned char c : bytes) {
        if (c == '\r') out += "\\r";
        else if (c == '\n') out += "\\n\n";
        else if (c < 32 || c > 126) out += fmt::format("\\x{:02x}", c);
        else out += static_cast<char>(c);
    }
    return out;
}

struct step {
    enum class kind { peer_line, peer_raw, expect, event } what;
    std::string text;       // bytes (peer_*, expect) or the event and its arguments
    int line = 0;
};

struct transcript {
    std::string role;                               // "server" or "client": which FSM is Postern
    std::map<std::string, std::string> settings;    // "@ set key=value"
    std::vector<step> steps;
};

transcript load(const fs::path& file) {
    std::ifstream in(file);
    transcript t;
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (line.empty() || line[0] == '#') continue;
        auto rest = [&](std::size_t n) { return line.size() > n ? line.substr(n) : std::string(); };
        if (line.rfind("@ role ", 0) == 0) t.role = rest(7);
        else if (line.rfind("@ set ", 0) == 0) {
            const auto kv = rest(6);
            const auto eq = kv.find('=');
            t.settings[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
        } else if (line.rfind(">> ", 0) == 0 || line == ">>") t.steps.push_back({step::kind::peer_raw, unescape(rest(3)), number});
        else if (line.rfind("> ", 0) == 0 || line == ">") t.steps.push_back({step::kind::peer_line, unescape(rest(2)) + "\r\n", number});
        else if (line.rfind("< ", 0) == 0 || line == "<") t.steps.push_back({step::kind::expect, unescape(rest(2)) + "\r\n", number});
        else if (line.rfind("<< ", 0) == 0) t.steps.push_back({step::kind::expect, unescape(rest(3)), number});
        else if (line.rfind("! ", 0) == 0) t.steps.push_back({step::kind::event, rest(2), number});
        else ADD_FAILURE() << file.filename() << ":" << number << ": not a transcript line: " << line;
    }
    return t;
}

std::vector<std::string> words(const std::string& s) {
    std::istringstream in(s);
    std::vector<std::string> out;
    for (std::string w; in >> w;) out.push_back(w);
    return out;
}

std::string setting(const transcript& t, const std::string& key, std::string fallback) {
    auto it = t.settings.find(key);
    return it == t.settings.end() ? fallback : it->second;
}

/// Runs the steps: Postern's output is collected by `written`, compared with the expected
/// output before each peer action and at the end.
struct replay {
    std::string written, expected;
    std::string where;

    /// `line` 0: the end of the dialogue.
    void checkpoint(int line) {
        EXPECT_EQ(escape(written), escape(expected))
            << where << ": what Postern wrote " << (line ? "before line " + std::to_string(line) : std::string("by the end"));
        written.clear();
        expected.clear();
    }
};

tls_summary lab_tls(bool partner) {
    tls_summary s;
    s.protocol = "TLSv1.3";
    s.cipher = "TLS_AES_256_GCM_SHA384";
    s.cipher_bits = 256;
    s.certificate_presented = partner;
    s.certificate_verified = partner;
    s.partner = partner;
    if (partner) s.subject = "CN=partner.test";
    else s.partner_reason = "no client certificate";
    return s;
}

// --- Postern as the server ---------------------------------------------------------------

void run_server(const transcript& t, replay& r) {
    server_policy p;
    p.hostname = "mx.example.test";
    p.connector_name = "inbound";
    p.accepted_domains = {"example.test"};
    p.max_message_size = std::stoull(setting(t, "max_message_size", "10000"));
    p.max_recipients = static_cast<std::uint32_t>(std::stoul(setting(t, "max_recipients", "3")));
    p.max_protocol_errors = static_cast<std::uint32_t>(std::stoul(setting(t, "max_protocol_errors", "20")));
    p.max_junk_commands = static_cast<std::uint32_t>(std::stoul(setting(t, "max_junk_commands", "100")));
    p.require_tls = setting(t, "require_tls", "false") == "true";
    for (auto& d : words(setting(t, "unrouted_domains", ""))) p.unrouted_domains.push_back(d);
    // known_recipients=a@x,b@x: every accepted domain is authoritative and lists these;
    // directory_down=true: the directory cannot answer; ask_directory=true: the answer is
    // never at hand, so every check goes through action::check_recipient (answered below).
    const auto known = words(setting(t, "known_recipients", ""));
    const bool directory_down = setting(t, "directory_down", "false") == "true";
    const bool ask_directory = setting(t, "ask_directory", "false") == "true";
    using status = server_policy::recipient_status;
    auto directory = [known, directory_down](const std::string& address) {
        if (directory_down) return status::unavailable;
        std::string folded = address;
        for (auto& c : folded) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return std::find(known.begin(), known.end(), folded) != known.end() ? status::known : status::unknown;
    };
    if (!known.empty() || directory_down)
        p.check_recipient = [directory, ask_directory](const std::string& address) {
            return ask_directory ? status::ask : directory(address);
        };
    p.mutual_tls = setting(t, "mutual_tls", "false") == "true";
    const auto offer = setting(t, "tls", "starttls");
    p.tls = offer == "none" ? server_policy::tls_offer::none
          : offer == "implicit" ? server_policy::tls_offer::implicit : server_policy::tls_offer::starttls;

    session_params s;
    s.policy = p;
    s.session_id = "0000000000000001";
    s.client_ip = "192.0.2.7";
    s.client_port = 40000;
    s.tls_available = offer != "none";
    bool storage_low = false, commit_fails = false;
    s.storage_low = [&] { return storage_low; };
    s.clock = [] { return std::chrono::system_clock::time_point(std::chrono::seconds(1700000000)); };
    std::vector<std::string> problems;   // what the driver would write to the server log
    s.configuration_problem = [&](const std::string& problem) { problems.push_back(problem); };
    server_fsm fsm(std::move(s));

    int commits = 0, directory_questions = 0;
    bool closed = false;
    action act;
    auto perform = [&](const event& ev) {
        ASSERT_FALSE(closed) << r.where << ": the peer acts after Postern closed";
        act = fsm.resume(ev);
        for (;;) {
            r.written += act.out;
            if (act.what == action::kind::close) closed = true;
            if (act.what == action::kind::check_recipient) {
                ++directory_questions;
                act = fsm.resume(event::recipient_result(directory(act.recipient), "asked the directory"));
                continue;
            }
            if (act.what != action::kind::commit) return;
            ++commits;
            act = fsm.resume(commit_fails ? event::commit_result(false, "", "rocksdb: IO error", true)
                                          : event::commit_result(true, fmt::format("Q{}", commits), ""));
        }
    };
    perform(event::connected(offer == "implicit" ? std::optional(lab_tls(false)) : std::nullopt));

    for (const auto& st : t.steps) {
        if (st.what == step::kind::expect) {
            r.expected += st.text;
            continue;
        }
        r.checkpoint(st.line);
        if (st.what != step::kind::event) {
            perform(event::bytes(st.text));
            continue;
        }
        const auto w = words(st.text);
        if (w[0] == "tls") {
            ASSERT_EQ(act.what, action::kind::start_tls) << r.where << ":" << st.line;
            perform(event::tls_established(lab_tls(w.size() > 1 && w[1] == "partner")));
        } else if (w[0] == "tls-failed") perform(event::tls_failure("handshake failed"));
        else if (w[0] == "timeout") perform(event::timed_out());
        else if (w[0] == "close") perform(event::closed("connection reset"));
        else if (w[0] == "stop") perform(event::stop(false));
        else if (w[0] == "storage-low") storage_low = true;
        else if (w[0] == "commit-fails") commit_fails = true;
        else if (w[0] == "expect-closed") EXPECT_TRUE(closed) << r.where << ":" << st.line << ": Postern should have closed";
        else if (w[0] == "expect-open") EXPECT_FALSE(closed) << r.where << ":" << st.line << ": Postern closed early";
        else if (w[0] == "expect-committed") EXPECT_EQ(std::to_string(commits), w.at(1)) << r.where << ":" << st.line;
        else if (w[0] == "expect-directory-questions")
            EXPECT_EQ(std::to_string(directory_questions), w.at(1)) << r.where << ":" << st.line;
        else if (w[0] == "expect-configuration-problems")
            EXPECT_EQ(std::to_string(problems.size()), w.at(1)) << r.where << ":" << st.line;
        else ADD_FAILURE() << r.where << ":" << st.line << ": unknown event " << w[0];
    }
    r.checkpoint(0);
}

// --- Postern as the client ---------------------------------------------------------------

void run_client(const transcript& t, replay& r) {
    client_settings cs;
    cs.helo_name = "client.example.test";
    const auto starttls = setting(t, "starttls", "if_offered");
    cs.starttls = starttls == "never" ? client_settings::starttls_use::never
                : starttls == "required" ? client_settings::starttls_use::required
                                         : client_settings::starttls_use::if_offered;
    client_fsm fsm(cs);

    client_action act;
    std::vector<recipient_result> results;
    std::optional<session_failure> failure;
    bool closed = false;
    auto perform = [&](client_event ev) {
        act = fsm.resume(std::move(ev));
        for (;;) {
            r.written += act.out;
            for (auto piece : act.data) r.written += piece;
            if (act.what == client_action::kind::transaction_done || act.what == client_action::kind::close)
                results.insert(results.end(), act.results.begin(), act.results.end());
            if (act.what == client_action::kind::close) {
                closed = true;
                failure = act.failure;
            }
            // A server may answer several commands in one segment: the driver asks first.
            if ((act.what == client_action::kind::read || act.what == client_action::kind::write_data) &&
                fsm.input_pending()) {
                act = fsm.resume(client_event::bytes({}));
                continue;
            }
            return;
        }
    };
    perform(client_event::connected());

    for (const auto& st : t.steps) {
        if (st.what == step::kind::expect) {
            r.expected += st.text;
            continue;
        }
        r.checkpoint(st.line);
        if (st.what != step::kind::event) {
            ASSERT_FALSE(closed) << r.where << ":" << st.line << ": the server speaks after Postern closed";
            perform(client_event::bytes(st.text));
            continue;
        }
        const auto w = words(st.text);
        if (w[0] == "tls") {
            ASSERT_EQ(act.what, client_action::kind::start_tls) << r.where << ":" << st.line;
            perform(client_event::tls_established());
        } else if (w[0] == "tls-failed") perform(client_event::tls_failed("handshake failed"));
        else if (w[0] == "timeout") perform(client_event::timed_out());
        else if (w[0] == "close") perform(client_event::closed("connection reset"));
        else if (w[0] == "send") {
            // ! send FROM TO[,TO...] [8bit] [smtputf8] [requiretls] [body=ESCAPED]
            ASSERT_TRUE(act.what == client_action::kind::idle || act.what == client_action::kind::transaction_done)
                << r.where << ":" << st.line << ": the client is not ready for a transaction";
            transaction tx;
            tx.mail_from = w.at(1) == "<>" ? "" : w.at(1);
            std::string to = w.at(2);
            for (std::size_t at = 0; at != std::string::npos;) {
                const auto comma = to.find(',', at);
                tx.recipients.push_back(to.substr(at, comma == std::string::npos ? comma : comma - at));
                at = comma == std::string::npos ? comma : comma + 1;
            }
            tx.body = "Subject: test\r\n\r\nhello\r\n";
            for (std::size_t i = 3; i < w.size(); ++i) {
                if (w[i] == "8bit") tx.body_8bit = true;
                else if (w[i] == "smtputf8") tx.smtputf8 = true;
                else if (w[i] == "requiretls") tx.requiretls = true;
                else if (w[i].rfind("body=", 0) == 0) tx.body = unescape(w[i].substr(5));
            }
            results.clear();
            perform(client_event::send(std::move(tx)));
        } else if (w[0] == "quit") {
            perform(client_event::quit());
        } else if (w[0] == "expect-result") {
            // ! expect-result RECIPIENT delivered|transient|permanent
            auto it = std::find_if(results.begin(), results.end(), [&](const auto& rr) { return rr.recipient == w.at(1); });
            ASSERT_NE(it, results.end()) << r.where << ":" << st.line << ": no result for " << w.at(1);
            const char* names[] = {"delivered", "transient", "permanent"};
            EXPECT_EQ(names[static_cast<int>(it->what)], w.at(2)) << r.where << ":" << st.line << ": " << it->describe();
        } else if (w[0] == "expect-closed") {
            EXPECT_TRUE(closed) << r.where << ":" << st.line << ": Postern should have closed";
        } else if (w[0] == "expect-failure") {
            // ! expect-failure STAGE words of the reason...
            ASSERT_TRUE(failure.has_value()) << r.where << ":" << st.line << ": no session failure";
            EXPECT_EQ(failure->stage, w.at(1)) << r.where << ":" << st.line;
        } else if (w[0] == "expect-idle") {
            EXPECT_TRUE(act.what == client_action::kind::idle || act.what == client_action::kind::transaction_done)
                << r.where << ":" << st.line;
        } else if (w[0] == "expect-discarded") {
            EXPECT_EQ(std::to_string(fsm.discarded_after_starttls()), w.at(1)) << r.where << ":" << st.line;
        } else {
            ADD_FAILURE() << r.where << ":" << st.line << ": unknown event " << w[0];
        }
    }
    r.checkpoint(0);
}

std::vector<std::string> transcript_files() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(POSTERN_TRANSCRIPTS_DIR))
        if (e.path().extension() == ".txt") names.push_back(e.path().stem().string());
    std::sort(names.begin(), names.end());
    return names;
}

class transcripts : public ::testing::TestWithParam<std::string> {};

TEST_P(transcripts, replay) {
    const fs::path file = fs::path(POSTERN_TRANSCRIPTS_DIR) / (GetParam() + ".txt");
    const auto t = load(file);
    replay r;
    r.where = file.filename().string();
    ASSERT_FALSE(t.steps.empty()) << r.where << ": no steps";
    if (t.role == "server") run_server(t, r);
    else if (t.role == "client") run_client(t, r);
    else FAIL() << r.where << ": \"@ role server\" or \"@ role client\" is missing";
}

INSTANTIATE_TEST_SUITE_P(smtp, transcripts, ::testing::ValuesIn(transcript_files()),
                         [](const auto& info) { return info.param; });

TEST(transcripts, there_are_at_least_twenty) { EXPECT_GE(transcript_files().size(), 20u); }

}  // namespace
}  // namespace postern::smtp
