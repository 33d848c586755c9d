// lab/postfix_instance.cpp: see postfix_instance.hpp.
#include "lab/postfix_instance.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace postern::lab {

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

constexpr auto poll_interval = std::chrono::milliseconds(50);
constexpr auto command_limit = std::chrono::seconds(60);

constexpr const char* postfix_program = "/usr/sbin/postfix";
constexpr const char* postconf_program = "/usr/sbin/postconf";

std::string read_text(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

void write_text(const fs::path& file, const std::string& text, mode_t mode) {
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out.flush()) throw std::runtime_error("cannot write " + file.string());
    }
    ::chmod(file.c_str(), mode);
}

std::string last_line(const std::string& text) {
    std::string t = text;
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    auto at = t.rfind('\n');
    return at == std::string::npos ? t : t.substr(at + 1);
}

std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
    return "status " + std::to_string(status);
}

struct command_result {
    int status = -1;        // waitpid status; -1 when it could not run
    std::string output;     // what it wrote to stdout and stderr
    bool ok() const { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
    std::string describe() const {
        std::string s = status < 0 ? std::string("could not run") : describe_status(status);
        const std::string line = last_line(output);
        return line.empty() ? s : s + ": " + line;
    }
};

/// Runs `argv` (argv[0] a full path) with `input` on stdin, stdout and stderr appended to
/// `log`; waits at most `limit`, then kills it (by its pid) and says so.
command_result run_command(const std::vector<std::string>& argv, const std::string& input, const fs::path& log,
                           std::chrono::seconds limit = command_limit) {
    command_result result;
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (out < 0) {
        result.output = log.string() + ": " + std::strerror(errno);
        return result;
    }
    struct stat before {};
    ::fstat(out, &before);
    int in_pipe[2] = {-1, -1};
    if (::pipe2(in_pipe, O_CLOEXEC) != 0) {
        ::close(out);
        result.output = std::string("pipe: ") + std::strerror(errno);
        return result;
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(out), ::close(in_pipe[0]), ::close(in_pipe[1]);
        result.output = std::string("fork: ") + std::strerror(errno);
        return result;
    }
    if (pid == 0) {
        ::dup2(in_pipe[0], STDIN_FILENO);
        ::dup2(out, STDOUT_FILENO);
        ::dup2(out, STDERR_FILENO);
        ::signal(SIGPIPE, SIG_DFL);
        ::execv(args[0], args.data());
        const std::string why = std::string(args[0]) + ": " + std::strerror(errno) + "\n";
        (void)!::write(STDERR_FILENO, why.data(), why.size());
        ::_exit(127);
    }
    ::close(in_pipe[0]);
    for (std::size_t done = 0; done < input.size();) {
        const ssize_t n = ::write(in_pipe[1], input.data() + done, input.size() - done);
        if (n > 0) done += static_cast<std::size_t>(n);
        else if (n < 0 && errno == EINTR) continue;
        else break;   // the program closed its stdin; its exit status tells the rest
    }
    ::close(in_pipe[1]);

    const auto deadline = clock_type::now() + limit;
    for (;;) {
        int status = 0;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            result.status = status;
            break;
        }
        if (r < 0 && errno != EINTR) break;
        if (clock_type::now() >= deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            result.output = argv[0] + " did not finish within " + std::to_string(limit.count()) + "s; killed\n";
            result.status = -1;
            ::close(out);
            return result;
        }
        std::this_thread::sleep_for(poll_interval);   // polling a condition, bounded
    }
    ::close(out);
    // What this command added to the log.
    std::ifstream in(log, std::ios::binary);
    in.seekg(before.st_size);
    std::ostringstream text;
    text << in.rdbuf();
    result.output = text.str();
    return result;
}

/// A process that exists and is not a zombie (an exited master whose parent has not yet
/// reaped it counts as gone).
bool process_alive(pid_t pid) {
    if (pid <= 0) return false;
    if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return true;   // no /proc: kill() said it exists
    auto close_paren = line.rfind(')');
    return !(close_paren != std::string::npos && close_paren + 2 < line.size() && line[close_paren + 2] == 'Z');
}

pid_t read_pid_file(const fs::path& file) {
    std::ifstream in(file);
    long pid = 0;
    if (!(in >> pid) || pid <= 0) return -1;
    return static_cast<pid_t>(pid);
}

/// True when /proc/net/tcp lists 127.0.0.1:<port> in state LISTEN (0A). Read rather than
/// connected to, so that no empty session shows up in Postfix's log.
bool loopback_port_listens(std::uint16_t port) {
    std::ifstream in("/proc/net/tcp");
    std::string line;
    char want[32];
    std::snprintf(want, sizeof want, "0100007F:%04X", static_cast<unsigned>(port));
    std::getline(in, line);   // header
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string slot, local, remote, state;
        fields >> slot >> local >> remote >> state;
        if (local == want && state == "0A") return true;
    }
    return false;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\r' || s.back() == '\n' || s.back() == '\t')) s.pop_back();
    std::size_t i = 0;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    return s.substr(i);
}

std::string between(const std::string& text, const std::string& open, const std::string& close,
                    std::size_t from = 0) {
    auto a = text.find(open, from);
    if (a == std::string::npos) return {};
    a += open.size();
    auto b = text.find(close, a);
    return text.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

}  // namespace

// --- configuration ----------------------------------------------------------------------

std::string postfix_main_cf(const postfix_settings& s, uid_t mailbox_uid, gid_t mailbox_gid) {
    const std::string base = s.base.string();
    const std::string etc = (s.base / "etc").string();
    std::ostringstream t;
    t << "# Org B of `postern demo --peer postfix`: " << s.hostname << ", a private Postfix instance\n"
      << "# (postfix -c " << etc << "). Nothing here reaches the system's /etc/postfix.\n"
      << "compatibility_level = 3.6\n"
      << "queue_directory = " << base << "/queue\n"
      << "data_directory = " << base << "/data\n"
      << "# No syslog here: postlogd writes the log to a file.\n"
      << "maillog_file = " << base << "/maillog\n"
      << "maillog_file_prefixes = " << base << "\n"
      << "mail_owner = postfix\n"
      << "setgid_group = postdrop\n"
      << "myhostname = " << s.hostname << "\n"
      << "mydomain = " << s.domain << "\n"
      << "myorigin = $mydomain\n"
      << "mydestination =\n"
      << "local_recipient_maps =\n"
      << "alias_maps =\n"
      << "alias_database =\n"
      << "inet_interfaces = 127.0.0.1\n"
      << "inet_protocols = ipv4\n"
      << "mynetworks = 127.0.0.0/8\n"
      << "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
      << "smtp_host_lookup = native\n"
      << "smtp_dns_support_level = disabled\n"
      << "biff = no\n"
      << "smtputf8_enable = no\n"
      << "\n# Mailboxes: " << s.domain << " is delivered by virtual(8) into Maildirs (the trailing / in\n"
      << "# the map) under virtual_mailbox_base, as an account with no other use.\n"
      << "virtual_mailbox_domains = " << s.domain << "\n"
      << "virtual_mailbox_base = " << base << "/mail\n"
      << "virtual_mailbox_maps = texthash:${config_directory}/vmailbox\n"
      << "virtual_uid_maps = static:" << mailbox_uid << "\n"
      << "virtual_gid_maps = static:" << mailbox_gid << "\n"
      << "\n# Receiving: TLS required (no plaintext MAIL: 530 5.7.0), the certificate and key exported\n"
      << "# from the key ring, a client certificate asked for, required and verified against the\n"
      << "# lab root; the outcome goes into the Received header and the maillog.\n"
      << "smtpd_tls_security_level = encrypt\n"
      << "smtpd_tls_cert_file = " << s.certificate.string() << "\n"
      << "smtpd_tls_key_file = $smtpd_tls_cert_file\n"
      << "smtpd_tls_CAfile = " << s.ca_file.string() << "\n"
      << "smtpd_tls_ask_ccert = yes\n"
      << "smtpd_tls_req_ccert = yes\n"
      << "smtpd_tls_protocols = >=TLSv1.2\n"
      << "smtpd_tls_mandatory_protocols = >=TLSv1.2\n"
      << "smtpd_tls_mandatory_ciphers = high\n"
      << "smtpd_tls_loglevel = 1\n"
      << "smtpd_tls_received_header = yes\n";
    if (!s.relay_domain.empty()) {
        t << "\n# Sending " << s.relay_domain << " to [" << s.relay_address << "]:" << s.relay_port
          << " (transport_maps): TLS with a certificate\n"
          << "# that chains to the lab root and matches " << s.relay_name
          << " (secure), presenting our own certificate.\n"
          << "transport_maps = texthash:${config_directory}/transport\n"
          << "smtp_tls_security_level = secure\n"
          << "smtp_tls_secure_cert_match = " << s.relay_name << "\n"
          << "smtp_tls_servername = " << s.relay_name << "\n"
          << "smtp_tls_CAfile = " << s.ca_file.string() << "\n"
          << "smtp_tls_cert_file = " << s.certificate.string() << "\n"
          << "smtp_tls_key_file = $smtp_tls_cert_file\n"
          << "smtp_tls_protocols = >=TLSv1.2\n"
          << "smtp_tls_mandatory_protocols = >=TLSv1.2\n"
          << "smtp_tls_mandatory_ciphers = high\n"
          << "smtp_tls_loglevel = 1\n";
    }
    return t.str();
}

std::string postfix_master_cf(const postfix_settings& s) {
    // Debian's master.cf, services the demo needs, nothing chrooted (nothing to copy in).
    std::ostringstream t;
    t << "# service type  private unpriv  chroot  wakeup  maxproc command + args\n"
      << "127.0.0.1:" << s.smtpd_port << " inet n - n - - smtpd\n"
      << "pickup    unix  n       -       n       60      1       pickup\n"
      << "cleanup   unix  n       -       n       -       0       cleanup\n"
      << "qmgr      unix  n       -       n       300     1       qmgr\n"
      << "tlsmgr    unix  -       -       n       1000?   1       tlsmgr\n"
      << "rewrite   unix  -       -       n       -       -       trivial-rewrite\n"
      << "bounce    unix  -       -       n       -       0       bounce\n"
      << "defer     unix  -       -       n       -       0       bounce\n"
      << "trace     unix  -       -       n       -       0       bounce\n"
      << "verify    unix  -       -       n       -       1       verify\n"
      << "flush     unix  n       -       n       1000?   0       flush\n"
      << "proxymap  unix  -       -       n       -       -       proxymap\n"
      << "proxywrite unix -       -       n       -       1       proxymap\n"
      << "smtp      unix  -       -       n       -       -       smtp\n"
      << "relay     unix  -       -       n       -       -       smtp\n"
      << "showq     unix  n       -       n       -       -       showq\n"
      << "error     unix  -       -       n       -       -       error\n"
      << "retry     unix  -       -       n       -       -       error\n"
      << "discard   unix  -       -       n       -       -       discard\n"
      << "virtual   unix  -       n       n       -       -       virtual\n"
      << "anvil     unix  -       -       n       -       1       anvil\n"
      << "scache    unix  -       -       n       -       1       scache\n"
      << "postlog   unix-dgram n  -       n       -       1       postlogd\n";
    return t.str();
}

// --- the maillog ------------------------------------------------------------------------

std::optional<maillog_line> parse_maillog_line(const std::string& line) {
    auto at = line.find(" postfix");
    if (at == std::string::npos) return std::nullopt;
    ++at;
    const auto open = line.find('[', at);
    const auto close = open == std::string::npos ? open : line.find("]: ", open);
    if (close == std::string::npos) return std::nullopt;
    maillog_line m;
    m.program = line.substr(at, open - at);
    if (m.program.find(' ') != std::string::npos) return std::nullopt;
    try {
        m.pid = std::stol(line.substr(open + 1, close - open - 1));
    } catch (const std::exception&) {
        return std::nullopt;
    }
    m.message = line.substr(close + 3);
    while (!m.message.empty() && (m.message.back() == '\r' || m.message.back() == '\n')) m.message.pop_back();
    m.text = line;
    while (!m.text.empty() && (m.text.back() == '\r' || m.text.back() == '\n')) m.text.pop_back();
    return m;
}

std::optional<postfix_tls_event> parse_tls_established(const maillog_line& line) {
    static const std::string marker = " TLS connection established ";
    const auto at = line.message.find(marker);
    if (at == std::string::npos) return std::nullopt;
    postfix_tls_event e;
    e.trust = line.message.substr(0, at);
    std::string rest = line.message.substr(at + marker.size());   // "from X: TLSv1.3 with cipher C (..."
    const auto space = rest.find(' ');
    if (space == std::string::npos) return std::nullopt;
    rest = rest.substr(space + 1);
    const auto colon = rest.find(": ");
    if (colon == std::string::npos) return std::nullopt;
    e.peer = rest.substr(0, colon);
    std::istringstream words(rest.substr(colon + 2));
    std::string with, cipher_word;
    words >> e.protocol >> with >> cipher_word >> e.cipher;
    if (with != "with" || cipher_word != "cipher") return std::nullopt;
    e.text = line.text;
    return e;
}

std::optional<postfix_delivery> find_delivery(const std::string& maillog, const std::string& recipient) {
    std::vector<maillog_line> lines;
    {
        std::istringstream in(maillog);
        std::string text;
        while (std::getline(in, text))
            if (auto m = parse_maillog_line(text)) lines.push_back(std::move(*m));
    }
    const std::string to = "to=<" + recipient + ">, ";
    std::optional<postfix_delivery> found;
    std::size_t found_at = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const auto& m = lines[i].message;
        const auto qid_end = m.find(": " + to);
        if (qid_end == std::string::npos || m.find("status=") == std::string::npos) continue;
        postfix_delivery d;
        d.queue_id = m.substr(0, qid_end);
        d.relay = between(m, "relay=", ",");
        const auto status_at = m.find("status=");
        const auto status_end = m.find(' ', status_at);
        d.status = m.substr(status_at + 7,
                            status_end == std::string::npos ? std::string::npos : status_end - status_at - 7);
        if (status_end != std::string::npos) {
            d.detail = trim(m.substr(status_end + 1));
            if (d.detail.size() >= 2 && d.detail.front() == '(' && d.detail.back() == ')')
                d.detail = d.detail.substr(1, d.detail.size() - 2);
        }
        d.text = lines[i].text;
        found = std::move(d);
        found_at = i;
    }
    if (!found) return std::nullopt;

    // The process that delivered it (smtp): its last TLS line before the delivery line.
    const auto& delivered_by = lines[found_at];
    for (std::size_t j = found_at; j-- > 0;) {
        if (lines[j].program != delivered_by.program || lines[j].pid != delivered_by.pid) continue;
        if (auto e = parse_tls_established(lines[j])) {
            found->tls_out = std::move(e);
            break;
        }
    }
    // The smtpd process that received it ("QID: client=..."): its last TLS line before that.
    for (std::size_t i = 0; i < found_at; ++i) {
        if (lines[i].program != "postfix/smtpd" || lines[i].message.rfind(found->queue_id + ": client=", 0) != 0)
            continue;
        for (std::size_t j = i; j-- > 0;) {
            if (lines[j].program != lines[i].program || lines[j].pid != lines[i].pid) continue;
            if (auto e = parse_tls_established(lines[j])) {
                found->tls_in = std::move(e);
                break;
            }
            if (lines[j].message.rfind("connect from ", 0) == 0) break;   // that session had no TLS
        }
        break;
    }
    return found;
}

std::optional<received_tls> parse_received_tls(const std::string& message) {
    // Unfold the header section (RFC 5322 §2.2.3), then take the first Received with "(using ".
    std::istringstream in(message);
    std::string line;
    std::vector<std::string> headers;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) break;
        if ((line[0] == ' ' || line[0] == '\t') && !headers.empty()) headers.back() += " " + trim(line);
        else headers.push_back(line);
    }
    for (const auto& h : headers) {
        if (h.size() < 9 || ::strncasecmp(h.c_str(), "Received:", 9) != 0) continue;
        const auto using_at = h.find("(using ");
        if (using_at == std::string::npos) continue;
        received_tls r;
        r.header = h;
        std::istringstream words(h.substr(using_at + 7));
        std::string with, cipher_word;
        words >> r.protocol >> with >> cipher_word >> r.cipher;
        if (with != "with" || cipher_word != "cipher") {
            r.protocol.clear();
            r.cipher.clear();
        }
        const auto client_at = h.find("(Client CN \"");
        if (client_at != std::string::npos) {
            r.client_cn = between(h, "(Client CN \"", "\"", client_at);
            r.client_issuer = between(h, "Issuer \"", "\"", client_at);
            r.client_verified = h.find("(verified OK)", client_at) != std::string::npos;
        }
        return r;
    }
    return std::nullopt;
}

std::optional<std::pair<fs::path, std::string>> find_in_maildir(const fs::path& maildir, const std::string& needle) {
    std::error_code ec;
    const fs::path dir = maildir / "new";
    if (!fs::is_directory(dir, ec)) return std::nullopt;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file(ec)) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        std::string text = read_text(f);
        if (text.find(needle) != std::string::npos) return std::make_pair(f, std::move(text));
    }
    return std::nullopt;
}

// --- the instance ----------------------------------------------------------------------

postfix_instance::postfix_instance(postfix_settings s) : settings_(std::move(s)) {}

postfix_instance::~postfix_instance() {
    if (running_) stop(std::chrono::seconds(20));
}

void postfix_instance::create() {
    const auto& s = settings_;
    struct passwd* owner = ::getpwnam("postfix");
    if (!owner) throw std::runtime_error("there is no `postfix` user (is Postfix installed? apt-get install postfix)");
    const uid_t postfix_uid = owner->pw_uid;
    const gid_t postfix_gid = owner->pw_gid;
    // Mailboxes belong to an account with no other use: nobody (virtual(8) refuses root).
    struct passwd* nobody = ::getpwnam("nobody");
    if (!nobody) throw std::runtime_error("there is no `nobody` user to own the demo's mailboxes");
    const uid_t mailbox_uid = nobody->pw_uid;
    const gid_t mailbox_gid = nobody->pw_gid;

    for (const auto& d : {config_dir(), queue_dir(), s.base / "data", mail_dir()}) fs::create_directories(d);
    ::chmod(config_dir().c_str(), 0755);
    ::chmod(queue_dir().c_str(), 0755);
    if (::chown((s.base / "data").c_str(), postfix_uid, postfix_gid) != 0 ||
        ::chown(mail_dir().c_str(), mailbox_uid, mailbox_gid) != 0)
        throw std::runtime_error(std::string("chown: ") + std::strerror(errno));
    ::chmod((s.base / "data").c_str(), 0700);
    ::chmod(mail_dir().c_str(), 0700);

    write_text(config_dir() / "main.cf", postfix_main_cf(s, mailbox_uid, mailbox_gid), 0644);
    write_text(config_dir() / "master.cf", postfix_master_cf(s), 0644);
    std::string vmailbox;
    for (const auto& local : s.mailboxes) vmailbox += local + "@" + s.domain + " " + s.domain + "/" + local + "/\n";
    write_text(config_dir() / "vmailbox", vmailbox, 0644);
    if (!s.relay_domain.empty())
        write_text(config_dir() / "transport",
                   s.relay_domain + " smtp:[" + s.relay_address + "]:" + std::to_string(s.relay_port) + "\n", 0644);

    auto version =
        run_command({postconf_program, "-c", config_dir().string(), "-h", "mail_version"}, "", commands_log());
    if (version.ok()) version_ = last_line(version.output);
    auto check = run_command({postfix_program, "-c", config_dir().string(), "check"}, "", commands_log());
    if (!check.ok()) throw std::runtime_error("postfix -c " + config_dir().string() + " check: " + check.describe());
}

void postfix_instance::start(std::chrono::seconds limit) {
    const fs::path pid_file = queue_dir() / "pid" / "master.pid";
    auto started = run_command({postfix_program, "-c", config_dir().string(), "start"}, "", commands_log(), limit);
    // Even a failed start may have left a master behind: stop() must look for it.
    running_ = true;
    if (!started.ok())
        throw std::runtime_error("postfix -c " + config_dir().string() + " start: " + started.describe() +
                                 " (see " + maillog_file().string() + ")");
    const auto deadline = clock_type::now() + limit;
    for (;;) {
        master_pid_ = read_pid_file(pid_file);
        if (process_alive(master_pid_) && loopback_port_listens(settings_.smtpd_port)) return;
        if (clock_type::now() >= deadline)
            throw std::runtime_error("Postfix's master (" + pid_file.string() + ") or its smtpd on 127.0.0.1:" +
                                     std::to_string(settings_.smtpd_port) + " not up within " +
                                     std::to_string(limit.count()) + "s of `postfix start` (see " +
                                     maillog_file().string() + ")");
        std::this_thread::sleep_for(poll_interval);   // polling a condition, bounded
    }
}

std::string postfix_instance::stop(std::chrono::seconds limit) {
    if (!running_) return "not running";
    running_ = false;
    const fs::path pid_file = queue_dir() / "pid" / "master.pid";
    const pid_t master = master_pid_ > 0 ? master_pid_ : read_pid_file(pid_file);
    auto stopped = run_command({postfix_program, "-c", config_dir().string(), "stop"}, "", commands_log(), limit);
    const auto deadline = clock_type::now() + limit;
    while (process_alive(master)) {
        if (clock_type::now() >= deadline) {
            // Postfix's own hard stop; the master then takes its children with it.
            run_command({postfix_program, "-c", config_dir().string(), "abort"}, "", commands_log(), limit);
            return "master (pid " + std::to_string(master) + ") still running " + std::to_string(limit.count()) +
                   "s after `postfix stop`; `postfix abort` sent";
        }
        std::this_thread::sleep_for(poll_interval);   // polling a condition, bounded
    }
    stopped_ = true;
    if (master <= 0)
        return "no master was running" +
               (stopped.ok() ? std::string() : " (postfix stop: " + stopped.describe() + ")");
    return "master pid " + std::to_string(master) + " gone";
}

void postfix_instance::sendmail(const std::string& from, const std::string& to, const std::string& message) {
    auto path = run_command({postconf_program, "-c", config_dir().string(), "-h", "sendmail_path"}, "", commands_log());
    const std::string sendmail_path = path.ok() ? last_line(path.output) : std::string("/usr/sbin/sendmail");
    auto sent =
        run_command({sendmail_path, "-C", config_dir().string(), "-f", from, "--", to}, message, commands_log());
    if (!sent.ok()) throw std::runtime_error(sendmail_path + " -C " + config_dir().string() + ": " + sent.describe());
}

std::string postfix_instance::maillog() const { return read_text(maillog_file()); }

std::string postfix_unavailable() {
    std::error_code ec;
    if (!fs::exists(postfix_program, ec))
        return "Postfix is not installed (no " + std::string(postfix_program) +
               "); install it with `apt-get install postfix` (scripts/setup.sh does)";
    if (::geteuid() != 0) return "a private Postfix instance needs root (its master starts as root); run it as root";
    if (!::getpwnam("postfix") || !::getgrnam("postdrop"))
        return "the `postfix` user or the `postdrop` group is missing; reinstall Postfix "
               "(apt-get install --reinstall postfix)";
    return {};
}

std::uint16_t free_loopback_port(int& held) {
    held = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (held < 0 || ::bind(held, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(held, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        const std::string why = std::strerror(errno);
        if (held >= 0) ::close(held);
        held = -1;
        throw std::runtime_error("cannot bind a loopback port: " + why);
    }
    return ntohs(a.sin_port);
}

}  // namespace postern::lab
