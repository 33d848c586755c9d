// tls/keyring/stash.hpp: the key ring password file (DESIGN.md §3 [tls] stash).
#pragma once

#include <filesystem>

#include "tls/keyring/secret.hpp"

namespace postern::tls {

/// The first line of `file` (without its line end). Refused (tls_error) when the file is
/// not a regular file, when group or others have any access to it (mode must be 0600 or
/// stricter), or when the first line is empty. The message never contains the password.
secret read_stash(const std::filesystem::path& file);

/// Same rules as read_stash, for --password-file.
secret read_password_file(const std::filesystem::path& file);

/// Writes `password` and a newline to `file`, mode 0600, atomically.
void write_stash(const std::filesystem::path& file, const secret& password);

/// A new random password: 32 bytes from the OpenSSL DRBG, base64 (no padding).
secret generate_password();

/// Asks on the controlling terminal with echo off. Empty when stdin is not a terminal.
/// With `confirm`, asks twice and throws tls_error when the two differ.
secret prompt_password(const char* prompt, bool confirm);

}  // namespace postern::tls
