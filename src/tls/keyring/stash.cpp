#include "tls/keyring/stash.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "tls/keyring/atomic_file.hpp"
#include "tls/error.hpp"
#include "tls/openssl_ptr.hpp"

namespace postern::tls {

namespace {

secret read_first_line_private(const std::filesystem::path& file, const char* what) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0)
        throw tls_error(std::string(what) + " " + file.string() + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        throw tls_error(std::string(what) + " " + file.string() + ": not a regular file");
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw tls_error(std::string(what) + " " + file.string() + ": mode " + mode +
                        " lets group or others access it; it must be 0600 or stricter "
                        "(chmod 600 " + file.string() + ")");
    }
    std::string content = read_file(file);
    auto end = content.find_first_of("\r\n");
    secret password(content.substr(0, end));
    OPENSSL_cleanse(content.data(), content.size());
    if (password.empty())
        throw tls_error(std::string(what) + " " + file.string() + ": the first line is empty");
    return password;
}

}  // namespace

secret read_stash(const std::filesystem::path& file) {
    return read_first_line_private(file, "stash");
}

secret read_password_file(const std::filesystem::path& file) {
    return read_first_line_private(file, "password file");
}

void write_stash(const std::filesystem::path& file, const secret& password) {
    std::string content(password.view());
    content += '\n';
    try {
        write_file_atomically(file, content, 0600);
    } catch (...) {
        OPENSSL_cleanse(content.data(), content.size());
        throw;
    }
    OPENSSL_cleanse(content.data(), content.size());
}

secret generate_password() {
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) throw tls_error("cannot generate a password: " + openssl_errors());
    unsigned char encoded[64];
    int n = EVP_EncodeBlock(encoded, raw, sizeof raw);
    OPENSSL_cleanse(raw, sizeof raw);
    std::string text(reinterpret_cast<char*>(encoded), static_cast<std::size_t>(n));
    OPENSSL_cleanse(encoded, sizeof encoded);
    while (!text.empty() && text.back() == '=') text.pop_back();
    return secret(std::move(text));
}

namespace {

secret read_without_echo(const char* prompt) {
    std::cerr << prompt << std::flush;
    termios old_mode{};
    ::tcgetattr(STDIN_FILENO, &old_mode);
    termios silent = old_mode;
    silent.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &silent);
    std::string line;
    std::getline(std::cin, line);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &old_mode);
    std::cerr << '\n';
    return secret(std::move(line));
}

}  // namespace

secret prompt_password(const char* prompt, bool confirm) {
    if (!::isatty(STDIN_FILENO)) return {};
    secret first = read_without_echo(prompt);
    if (confirm) {
        secret second = read_without_echo("Again: ");
        if (first.view() != second.view()) throw tls_error("the two passwords differ");
    }
    return first;
}

}  // namespace postern::tls
