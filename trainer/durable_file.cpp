#include "trainer/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace nexus {

namespace fs = std::filesystem;

std::string temporary_name(const std::string& name) { return name + ".tmp-" + std::to_string(::getpid()); }

namespace {

[[noreturn]] void fail(const std::string& message) { throw CheckpointError(message); }

// "checkpoint: <action> failed: <errno text>".
std::string os_error(const std::string& action) { return "checkpoint: " + action + " failed: " + std::strerror(errno); }

}  // namespace

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) fail(os_error("opening '" + path + "'"));
  if (::fsync(fd) != 0) {
    const std::string message = os_error("fsync of '" + path + "'");
    ::close(fd);
    fail(message);
  }
  ::close(fd);
}

void rename_durably(const fs::path& from, const fs::path& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0)
    fail(os_error("renaming '" + from.string() + "' to '" + to.string() + "'"));
  fsync_path(to.parent_path().empty() ? "." : to.parent_path().string(), true);
}

void write_text_durably(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.parent_path() / temporary_name(path.filename().string());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail(os_error("creating '" + tmp.string() + "'"));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const std::string message = ok ? "" : os_error("writing '" + tmp.string() + "'");
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    fail(message);
  }
  rename_durably(tmp, path);
}

}  // namespace nexus
