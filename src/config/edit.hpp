// config/edit.hpp: `postern config set` (DESIGN.md §4).
//
// An edit replaces a value's text where it stands, or appends the key to its table;
// every other byte of the file (comments, blank lines, ordering, quoting style) stays
// as it was. The result is validated before anything is written, and written atomically.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "config/schema.hpp"

namespace postern::config {

struct assignment {
    std::string key;     // "require_tls"
    std::string value;   // a TOML value ("true", "[\"a\"]", "\"x\""), or a bare string ("mx1.example.test")
};

struct edit_result {
    std::string text;                    // the edited file; only meaningful when errors is empty
    std::vector<diagnostic> errors;      // the edited file does not load: nothing may be written
    std::vector<diagnostic> warnings;
    bool ok() const { return errors.empty(); }
};

/// Applies the assignments to `section` (and, for connector sections, the connector
/// called `name`, which is appended when no connector has that name yet and
/// `create_connector` is set), then loads the result. Throws std::invalid_argument when
/// the request itself is malformed (unknown section, NAME missing or misplaced, or naming
/// no connector without `create_connector`, a key that is not a bare TOML key, an inline
/// table that cannot grow, or an original file that is not TOML).
edit_result set_values(std::string_view original, const std::filesystem::path& file_name,
                       std::string_view section, std::string_view name,
                       const std::vector<assignment>& assignments, bool create_connector = false);

/// Replaces `file` with `text` (files/replace.hpp), keeping the original's owner and mode.
/// A symbolic link is followed, so the link stays and its target is replaced.
/// Throws files::file_error.
void write_file_atomically(const std::filesystem::path& file, std::string_view text);

}  // namespace postern::config
