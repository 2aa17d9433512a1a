// Durable file I/O for checkpoints: a file is published by renaming a fully written, fsynced
// temporary into place and fsyncing the directory, so a crash at any point leaves either the old
// state or a stray temporary, never a half-written file under the final name. Errors throw
// CheckpointError with the OS's reason.
#pragma once

#include <filesystem>
#include <string>

#include "trainer/checkpoint_error.h"

namespace nexus {

// "<name>.tmp-<pid>": the temporary name `name` is written under before it is published.
std::string temporary_name(const std::string& name);

// fsync of a file, or of a directory (which makes a rename in it durable).
void fsync_path(const std::string& path, bool directory);

// rename(from, to), then fsync of `to`'s directory.
void rename_durably(const std::filesystem::path& from, const std::filesystem::path& to);

// Replaces `path` with `text` atomically: temporary file, fsync, rename, fsync of the directory.
void write_text_durably(const std::filesystem::path& path, const std::string& text);

}  // namespace nexus
