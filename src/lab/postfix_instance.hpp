// lab/postfix_instance.hpp: a private Postfix instance (`postfix -c DIR`), org B of
// `postern demo --peer postfix` (DESIGN.md §4, §7 "real peers").
//
// Everything lives under one base directory: etc/ (main.cf, master.cf, the texthash maps,
// the certificate file), queue/ (queue_directory), data/ (data_directory, owned by the
// mail owner), mail/ (virtual Maildirs) and maillog (maillog_file: there is no syslog).
// smtpd listens on 127.0.0.1 only, nothing is chrooted, and the system's own instance is
// never started or changed: every command gets `-c etc/` (Postfix still reads its
// package metadata, postfix-files, from /etc/postfix).
//
// Postfix's side of the demo:
// - receiving: smtpd_tls_security_level = encrypt with the certificate exported from B's key
//   ring; a client certificate is asked for, required and verified against the lab root
//   (smtpd_tls_ask_ccert, smtpd_tls_req_ccert, smtpd_tls_CAfile); the TLS facts go into the
//   Received header (smtpd_tls_received_header) and the maillog (smtpd_tls_loglevel = 1);
//   mail for the local parts listed is delivered by virtual(8) into Maildirs;
// - sending: one other domain goes to one next hop (transport_maps) with
//   smtp_tls_security_level = secure, the lab root as smtp_tls_CAfile, the expected name as
//   smtp_tls_secure_cert_match, and the same certificate as client certificate.
//
// Commands run with fork/exec, output appended to <base>/commands.log, each bounded in
// time. Waits are bounded polls of a condition (the master's pid file, the listening
// port), never sleeps for their own sake. Needs root (the master starts as root) and the
// `postfix` user and `postdrop` group that Debian's package creates.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace postern::lab {

struct postfix_settings {
    std::filesystem::path base;          // created by the caller, mode 0755
    std::string hostname;                // myhostname: "mx.b.demo.test"
    std::string domain;                  // the virtual mailbox domain: "b.demo.test"
    std::vector<std::string> mailboxes;  // local parts with a Maildir: {"bob"}
    std::uint16_t smtpd_port = 0;        // 127.0.0.1:<port>
    std::filesystem::path certificate;   // PEM: certificate, chain, private key (0600)
    std::filesystem::path ca_file;       // the roots both directions verify against
    std::string relay_domain;            // "a.demo.test" ("" = no other domain is sent anywhere)
    std::string relay_address;           // "127.0.0.1": smtp:[127.0.0.1]:<relay_port>
    std::uint16_t relay_port = 0;
    std::string relay_name;              // the name the next hop's certificate must match
};

/// main.cf and master.cf for `s` (pure: tests read them).
std::string postfix_main_cf(const postfix_settings& s, uid_t mailbox_uid, gid_t mailbox_gid);
std::string postfix_master_cf(const postfix_settings& s);

/// One line of the maillog: "Nov 29 09:42:47 mx postfix/smtpd[29772]: message".
struct maillog_line {
    std::string program;   // "postfix/smtpd"
    long pid = 0;
    std::string message;
    std::string text;      // the whole line
};
std::optional<maillog_line> parse_maillog_line(const std::string& line);

/// "Trusted TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher X ..."
/// (smtpd) or "Verified TLS connection established to 127.0.0.1[127.0.0.1]:25: ..." (smtp).
struct postfix_tls_event {
    std::string trust;     // "Anonymous" | "Untrusted" | "Trusted" | "Verified"
    std::string peer;      // "localhost[127.0.0.1]", "127.0.0.1[127.0.0.1]:25"
    std::string protocol;  // "TLSv1.3"
    std::string cipher;    // "TLS_AES_256_GCM_SHA384"
    std::string text;      // the maillog line
};
std::optional<postfix_tls_event> parse_tls_established(const maillog_line& line);

/// A delivery as the maillog tells it: "QID: to=<rcpt>, relay=..., status=sent (...)",
/// with the TLS line the same process logged before it (smtpd for what came in, smtp for
/// what went out).
struct postfix_delivery {
    std::string queue_id;
    std::string status;        // "sent", "deferred", "bounced"
    std::string relay;         // "virtual", "127.0.0.1[127.0.0.1]:2526"
    std::string detail;        // the text in parentheses after status=
    std::string text;          // the delivery line
    std::optional<postfix_tls_event> tls_in;    // smtpd session that received the message
    std::optional<postfix_tls_event> tls_out;   // smtp session that delivered it
};
/// The last delivery attempt for `recipient` in `maillog` text, if any.
std::optional<postfix_delivery> find_delivery(const std::string& maillog, const std::string& recipient);

/// The TLS facts of a `Received:` header written with smtpd_tls_received_header = yes:
/// "(using TLSv1.3 with cipher X (256/256 bits) ...) (Client CN "c", Issuer "i" (verified OK))".
struct received_tls {
    std::string header;        // unfolded, "Received: from ..."
    std::string protocol, cipher;
    std::string client_cn, client_issuer;
    bool client_verified = false;
};
/// The first Received header of `message` that carries "(using ...)", if any.
std::optional<received_tls> parse_received_tls(const std::string& message);

/// A file in `maildir`/new whose text contains `needle` (a Message-ID), with that text.
std::optional<std::pair<std::filesystem::path, std::string>> find_in_maildir(const std::filesystem::path& maildir,
                                                                             const std::string& needle);

/// The private instance. Not copyable; the destructor stops it when it still runs.
class postfix_instance {
public:
    explicit postfix_instance(postfix_settings s);
    ~postfix_instance();
    postfix_instance(const postfix_instance&) = delete;
    postfix_instance& operator=(const postfix_instance&) = delete;

    /// Directories, main.cf, master.cf, maps; then `postfix check`. Throws std::runtime_error
    /// with the command's own words on any failure.
    void create();
    /// `postfix start`, then a bounded wait until the master's pid is alive and smtpd's port
    /// listens.
    void start(std::chrono::seconds limit);
    /// `postfix stop`, then a bounded wait until the master is gone. Returns what happened
    /// ("master pid N gone", or why not; stopped() says which); never throws.
    std::string stop(std::chrono::seconds limit);
    /// Posts a message with Postfix's sendmail(1) (`-C etc/ -f from -- to`), as a user of
    /// the organisation would. Throws when sendmail fails.
    void sendmail(const std::string& from, const std::string& to, const std::string& message);

    const postfix_settings& settings() const { return settings_; }
    std::filesystem::path config_dir() const { return settings_.base / "etc"; }
    std::filesystem::path queue_dir() const { return settings_.base / "queue"; }
    std::filesystem::path mail_dir() const { return settings_.base / "mail"; }
    std::filesystem::path maillog_file() const { return settings_.base / "maillog"; }
    std::filesystem::path commands_log() const { return settings_.base / "commands.log"; }
    std::filesystem::path maildir(const std::string& local_part) const {
        return mail_dir() / settings_.domain / local_part;
    }
    std::string maillog() const;
    std::string version() const { return version_; }
    pid_t master_pid() const { return master_pid_; }
    bool running() const { return running_; }
    bool stopped() const { return stopped_; }

private:
    postfix_settings settings_;
    std::string version_;
    pid_t master_pid_ = -1;
    bool running_ = false;
    bool stopped_ = false;
};

/// Why Postfix cannot run here ("" when it can): not installed, not root, no postfix user
/// or postdrop group. One line, with how to fix it.
std::string postfix_unavailable();

/// A loopback port that was free a moment ago (bound to 127.0.0.1:0, then released); for
/// programs that cannot be told "port 0". `held` keeps it bound until the caller closes
/// it, so that two calls in a row cannot return the same port.
std::uint16_t free_loopback_port(int& held);

}  // namespace postern::lab
