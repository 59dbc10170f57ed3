#include "server/lease_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/log.h"

namespace relay {
namespace {

constexpr char kSnapshot[] = "leases.snapshot";
constexpr char kJournalPrefix[] = "leases.journal.";
constexpr uint32_t kMaxRecord = 1024;
enum RecordType : uint8_t { kHeader = 0, kPut = 1, kDel = 2 };

void PutU16(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v & 0xff));
  s->push_back(static_cast<char>(v >> 8));
}
void PutU32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string* s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutBytes(std::string* s, absl::string_view b) {
  s->push_back(static_cast<char>(b.size()));
  s->append(b.data(), b.size());
}

// Reads little-endian fields from a payload; any overrun makes ok() false.
class Reader {
 public:
  explicit Reader(absl::string_view p) : p_(p) {}
  uint64_t Int(int bytes) {
    if (p_.size() < static_cast<size_t>(bytes)) {
      ok_ = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<uint8_t>(p_[i])} << (8 * i);
    p_.remove_prefix(static_cast<size_t>(bytes));
    return v;
  }
  std::string Bytes() {
    const size_t n = static_cast<size_t>(Int(1));
    if (!ok_ || p_.size() < n) {
      ok_ = false;
      return "";
    }
    std::string out(p_.substr(0, n));
    p_.remove_prefix(n);
    return out;
  }
  bool done() const { return ok_ && p_.empty(); }

 private:
  absl::string_view p_;
  bool ok_ = true;
};

std::string Frame(const std::string& payload) {
  std::string r;
  PutU32(&r, static_cast<uint32_t>(payload.size()));
  PutU32(&r, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(payload.data()),
                                         static_cast<uInt>(payload.size()))));
  return r + payload;
}

std::string PutRecord(const StoredLease& l) {
  std::string p(1, static_cast<char>(kPut));
  PutBytes(&p, l.id);
  PutU16(&p, l.port);
  PutBytes(&p, l.owner_key);
  PutU64(&p, l.fresh_claim_ms);
  PutU64(&p, static_cast<uint64_t>(l.expires_unix_ms));
  if (!l.address.empty()) {
    PutBytes(&p, l.address);  // an optional tail: records without it are read as before
  }
  return Frame(p);
}

std::string DelRecord(absl::string_view id) {
  std::string p(1, static_cast<char>(kDel));
  PutBytes(&p, id);
  return Frame(p);
}

absl::Status FileError(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat("--state_dir: ", path, ": ", what));
}

bool ReadWhole(const std::string& path, std::string* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
    out->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return n == 0;
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

// Applies one record (`type`, then `body`) to *leases; the error says what is wrong.
absl::Status ApplyRecord(uint8_t type, absl::string_view body,
                         absl::flat_hash_map<std::string, StoredLease>* leases,
                         uint64_t* next_journal) {
  Reader r(body);
  if (type == kHeader) {
    *next_journal = r.Int(8);
    return absl::OkStatus();
  }
  if (type == kPut) {
    StoredLease l;
    l.id = r.Bytes();
    l.port = static_cast<uint16_t>(r.Int(2));
    l.owner_key = r.Bytes();
    l.fresh_claim_ms = r.Int(8);
    l.expires_unix_ms = static_cast<int64_t>(r.Int(8));
    if (!r.done()) {
      l.address = r.Bytes();
    }
    if (!r.done() || l.id.empty() || l.port == 0) {
      return absl::DataLossError("malformed lease record");
    }
    (*leases)[l.id] = std::move(l);
    return absl::OkStatus();
  }
  if (type == kDel) {
    const std::string id = r.Bytes();
    if (!r.done()) {
      return absl::DataLossError("malformed record");
    }
    leases->erase(id);
    return absl::OkStatus();
  }
  return absl::DataLossError(absl::StrCat("unknown record type ", int{type}));
}

// Applies the records of one file to *leases. `snapshot`: the first record must be the
// header (its journal number goes to *next_journal) and nothing may be torn.
absl::Status ReadRecords(const std::string& path, bool snapshot,
                         absl::flat_hash_map<std::string, StoredLease>* leases,
                         uint64_t* next_journal) {
  std::string data;
  if (!ReadWhole(path, &data)) {
    return FileError(path, absl::StrCat("cannot read: ", ErrnoText(errno)));
  }
  size_t off = 0;
  bool first = true;
  while (off < data.size()) {
    if (data.size() - off < 8) {
      break;  // a torn header at the end
    }
    Reader head(absl::string_view(data).substr(off, 8));
    const uint32_t len = static_cast<uint32_t>(head.Int(4));
    const uint32_t crc = static_cast<uint32_t>(head.Int(4));
    if (len == 0 || len > kMaxRecord) {
      return FileError(path, absl::StrCat("bad record length ", len, " at byte ", off));
    }
    if (data.size() - off - 8 < len) {
      break;  // a record cut short at the end
    }
    const absl::string_view payload = absl::string_view(data).substr(off + 8, len);
    const bool last = off + 8 + len == data.size();
    if (crc32(0, reinterpret_cast<const Bytef*>(payload.data()), len) != crc) {
      if (last && !snapshot) {
        off = data.size();  // the last write, torn by a power loss
        RELAY_LOG(WARNING) << "--state_dir: " << path
                           << ": the last record is damaged (a write cut by a power loss?); "
                              "ignored";
        break;
      }
      return FileError(path, absl::StrCat("checksum mismatch in the record at byte ", off));
    }
    const uint8_t type = static_cast<uint8_t>(payload[0]);
    if (snapshot && first != (type == kHeader)) {
      return FileError(path, "not a lease snapshot (no header)");
    }
    absl::Status applied = ApplyRecord(type, payload.substr(1), leases, next_journal);
    if (!applied.ok()) {
      return FileError(path, absl::StrCat(std::string(applied.message()), " at byte ", off));
    }
    first = false;
    off += 8 + len;
  }
  if (off < data.size()) {
    if (snapshot) {
      return FileError(path, "the snapshot is cut short");
    }
    RELAY_LOG(WARNING) << "--state_dir: " << path << ": the last " << data.size() - off
                       << " bytes are a record cut short (a write cut by a crash or power "
                          "loss); ignored";
  }
  if (snapshot && first) {
    return FileError(path, "empty snapshot");
  }
  return absl::OkStatus();
}

void SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Journal numbers present in `dir`, ascending.
std::vector<uint64_t> Journals(const std::string& dir) {
  std::vector<uint64_t> seqs;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return seqs;
  }
  while (dirent* e = ::readdir(d)) {
    absl::string_view name = e->d_name;
    uint64_t seq;
    if (absl::ConsumePrefix(&name, kJournalPrefix) && absl::SimpleAtoi(name, &seq)) {
      seqs.push_back(seq);
    }
  }
  ::closedir(d);
  std::sort(seqs.begin(), seqs.end());
  return seqs;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LeaseStore>> LeaseStore::Open(Options options) {
  if (::mkdir(options.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(
        absl::StrCat("--state_dir=", options.dir, ": cannot create: ", ErrnoText(errno)));
  }
  std::unique_ptr<LeaseStore> store(new LeaseStore(std::move(options)));
  absl::Status status = store->Load();
  if (!status.ok()) {
    if (!store->options_.discard_corrupt) {
      return absl::DataLossError(absl::StrCat(
          status.message(),
          "; the relay will not start on a damaged lease state (nodes could get each other's "
          "addresses). Repair or remove it, or start with --state_discard_corrupt to move "
          "it aside and start with no leases"));
    }
    const std::string suffix = absl::StrCat(".corrupt-", absl::ToUnixSeconds(absl::Now()));
    std::vector<std::string> names = {kSnapshot};
    for (uint64_t seq : Journals(store->options_.dir)) {
      names.push_back(absl::StrCat(kJournalPrefix, seq));
    }
    for (const std::string& name : names) {
      const std::string from = absl::StrCat(store->options_.dir, "/", name);
      if (::rename(from.c_str(), (from + suffix).c_str()) == 0) {
        store->discarded_.push_back(from + suffix);
      }
    }
    store->loaded_.clear();
  }
  return store;
}

absl::Status LeaseStore::Load() {
  absl::flat_hash_map<std::string, StoredLease> leases;
  uint64_t next_journal = 0;
  const std::string snapshot = absl::StrCat(options_.dir, "/", kSnapshot);
  struct stat st;
  if (::stat(snapshot.c_str(), &st) == 0) {
    absl::Status s = ReadRecords(snapshot, /*snapshot=*/true, &leases, &next_journal);
    if (!s.ok()) {
      return s;
    }
  }
  for (uint64_t seq : Journals(options_.dir)) {
    if (seq < next_journal) {
      continue;  // folded into the snapshot; deleted at Start
    }
    absl::Status s = ReadRecords(absl::StrCat(options_.dir, "/", kJournalPrefix, seq),
                                 /*snapshot=*/false, &leases, &next_journal);
    if (!s.ok()) {
      return s;
    }
  }
  const int64_t now_ms = absl::ToUnixMillis(options_.clock->WallNow());
  for (auto& [id, lease] : leases) {
    if (lease.expires_unix_ms == 0 || lease.expires_unix_ms > now_ms) {
      loaded_.push_back(std::move(lease));
    }
  }
  return absl::OkStatus();
}

LeaseStore::~LeaseStore() { Close(); }

absl::Status LeaseStore::OpenJournal(uint64_t seq) {
  const std::string path = absl::StrCat(options_.dir, "/", kJournalPrefix, seq);
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("--state_dir: ", path, ": cannot create: ", ErrnoText(errno)));
  }
  if (journal_fd_ >= 0) {
    ::close(journal_fd_);
  }
  journal_fd_ = fd;
  journal_seq_ = seq;
  journal_records_ = 0;
  const off_t end = ::lseek(fd, 0, SEEK_END);
  journal_bytes_ = end > 0 ? static_cast<uint64_t>(end) : 0;
  return absl::OkStatus();
}

absl::Status LeaseStore::WriteSnapshot(const std::vector<StoredLease>& leases,
                                       uint64_t next_journal) {
  const std::string path = absl::StrCat(options_.dir, "/", kSnapshot);
  const std::string tmp = path + ".tmp";
  std::string data;
  std::string header(1, static_cast<char>(kHeader));
  PutU64(&header, next_journal);
  data += Frame(header);
  for (const StoredLease& l : leases) {
    data += PutRecord(l);
  }
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot create: ", ErrnoText(errno)));
  }
  const bool ok = WriteAll(fd, data) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return absl::DataLossError(absl::StrCat(path, ": cannot write: ", ErrnoText(errno)));
  }
  SyncDir(options_.dir);
  snapshots_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status LeaseStore::Start(const std::vector<StoredLease>& initial) {
  const std::vector<uint64_t> old = Journals(options_.dir);
  const uint64_t seq = old.empty() ? 1 : old.back() + 1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const StoredLease& l : initial) {
      leases_[l.id] = l;
    }
    absl::Status s = OpenJournal(seq);
    if (!s.ok()) {
      return s;
    }
  }
  absl::Status s = WriteSnapshot(initial, seq);
  if (s.ok()) {
    for (uint64_t o : old) {
      ::unlink(absl::StrCat(options_.dir, "/", kJournalPrefix, o).c_str());
    }
  } else {
    // The files on disk still hold every lease (the old snapshot and journals, then the
    // new journal): the relay serves, refusing claims until a snapshot can be written.
    Fail(s.message());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
  }
  thread_ = std::thread([this] { SyncLoop(); });
  return absl::OkStatus();
}

void LeaseStore::Fail(absl::string_view what) {
  write_errors_.fetch_add(1, std::memory_order_relaxed);
  if (!failing_.exchange(true)) {
    RELAY_LOG(ERROR) << "--state_dir: " << what
                     << "; new claims are refused (claims_not_durable, /healthz degraded) until "
                        "the lease state can be written again (retried every "
                     << absl::FormatDuration(options_.sync_interval) << ")";
  }
  wake_.notify_one();
}

void LeaseStore::Append(const std::string& record) {
  if (failing_.load()) {
    return;  // the snapshot that ends the failure holds this change
  }
  if (!WriteAll(journal_fd_, record)) {
    const int error = errno;
    // No torn record: appends after it would be read as damage.
    if (::ftruncate(journal_fd_, static_cast<off_t>(journal_bytes_)) != 0) {
      RELAY_LOG(ERROR) << "--state_dir: cannot cut a torn record off the journal: "
                       << ErrnoText(errno) << " (the next snapshot replaces it)";
    }
    Fail(absl::StrCat("cannot append to the lease journal: ", ErrnoText(error)));
    return;
  }
  journal_bytes_ += record.size();
  dirty_ = true;
  if (++journal_records_ > 4 * leases_.size() + 4096) {
    wake_.notify_one();  // time to compact
  }
}

void LeaseStore::LeaseChanged(const Lease& lease) {
  StoredLease l;
  l.id = std::string(lease.id);
  l.port = lease.port;
  l.owner_key = lease.owner_key;
  l.fresh_claim_ms = lease.fresh_claim_ms;
  if (options_.addresses.size() > 1 && lease.address < options_.addresses.size()) {
    l.address = options_.addresses[lease.address];
  }
  if (!lease.live) {
    const absl::Time wall = options_.clock->WallNow() + (lease.expires_at - options_.clock->Now());
    l.expires_unix_ms = std::max<int64_t>(1, absl::ToUnixMillis(wall));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!open_) {
    return;
  }
  Append(PutRecord(l));
  leases_[l.id] = std::move(l);
}

void LeaseStore::LeaseEnded(absl::string_view id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!open_) {
    return;
  }
  Append(DelRecord(id));
  leases_.erase(id);
}

void LeaseStore::Compact() {
  std::vector<StoredLease> copy;
  uint64_t old_seq;
  {
    std::lock_guard<std::mutex> lock(mu_);
    old_seq = journal_seq_;
    copy.reserve(leases_.size());
    for (const auto& [id, l] : leases_) {
      copy.push_back(l);
    }
    if (!OpenJournal(old_seq + 1).ok()) {
      write_errors_.fetch_add(1, std::memory_order_relaxed);
      return;  // keep appending to the old journal
    }
    dirty_ = false;
  }
  absl::Status s = WriteSnapshot(copy, old_seq + 1);
  if (!s.ok()) {
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    RELAY_LOG_LIMITED(ERROR) << "--state_dir: " << s.message()
                             << " (the journals stay; retried at the next compaction)";
    return;
  }
  ::unlink(absl::StrCat(options_.dir, "/", kJournalPrefix, old_seq).c_str());
}

bool LeaseStore::Recover() {
  if (journal_bytes_ > 0 && !OpenJournal(journal_seq_ + 1).ok()) {
    return false;
  }
  std::vector<StoredLease> copy;
  copy.reserve(leases_.size());
  for (const auto& [id, l] : leases_) {
    copy.push_back(l);
  }
  if (!WriteSnapshot(copy, journal_seq_).ok()) {
    return false;
  }
  for (uint64_t seq : Journals(options_.dir)) {
    if (seq < journal_seq_) {
      ::unlink(absl::StrCat(options_.dir, "/", kJournalPrefix, seq).c_str());
    }
  }
  failing_.store(false);
  RELAY_LOG(WARNING) << "--state_dir: the lease state is written again (" << copy.size()
                     << " leases); claims are accepted";
  return true;
}

void LeaseStore::SyncLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    wake_.wait_for(lock, absl::ToChronoNanoseconds(options_.sync_interval));
    if (failing_.load()) {
      // Under the lock (rare): no change slips between the snapshot and the end of the
      // failure.
      Recover();
      continue;
    }
    if (journal_records_ > 4 * leases_.size() + 4096) {
      lock.unlock();
      Compact();
      lock.lock();
      continue;
    }
    if (dirty_ && journal_fd_ >= 0) {
      const int fd = ::dup(journal_fd_);
      dirty_ = false;
      lock.unlock();
      if (fd >= 0) {
        ::fdatasync(fd);  // outside the lock: a slow disk never holds up a reactor
        ::close(fd);
      }
      lock.lock();
    }
  }
}

void LeaseStore::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!open_) {
      return;
    }
    stop_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) {
    thread_.join();
  }
  Compact();  // a last snapshot: the next start reads one file
  std::lock_guard<std::mutex> lock(mu_);
  open_ = false;
  if (journal_fd_ >= 0) {
    ::fdatasync(journal_fd_);
    ::close(journal_fd_);
    journal_fd_ = -1;
  }
}

}  // namespace relay
