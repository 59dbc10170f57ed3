#include "tools/load/load_worker.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "net/socket_ops.h"

namespace relay::load {

int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

std::string FrameHeaderBytes(uint32_t network_id, uint32_t length) {
  std::string h(kFrameHeaderSize, '\0');
  EncodeFrameHeader(FrameHeader{network_id, kLoadFrameMarker, length},
                    reinterpret_cast<uint8_t*>(h.data()));
  return h;
}

LoadWorker::LoadWorker(LoadShared* shared) : shared_(shared) {
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  buf_.resize(256 * 1024);
}

LoadWorker::~LoadWorker() {
  for (Conn& c : conns_) {
    close(c.fd);
  }
  close(ep_);
}

void LoadWorker::Add(int fd, bool sender, int node) {
  (void)net::SetNonBlocking(fd);
  if (sender) {
    // Real senders sit on other hosts; here their send queues would share the relay
    // host's TCP memory (tcp_mem). Autotuned to 4 MiB each, hundreds of senders push
    // the whole host into TCP memory pressure and the test measures that instead.
    int bytes = 512 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    unfinished_senders.fetch_add(1);
  }
  Conn c;
  c.fd = fd;
  c.sender = sender;
  c.node = node;
  conns_.push_back(std::move(c));
}

void LoadWorker::Start() {
  std::mt19937_64 rng(conns_.size() + 17);
  for (size_t i = 0; i < conns_.size(); ++i) {
    Conn& c = conns_[i];
    if (c.sender && shared_->period_ns > 0) {
      c.next_due_ns = MonoNs() + static_cast<int64_t>(rng() % shared_->period_ns);
    }
    epoll_event ev;
    ev.events = c.sender ? (shared_->period_ns > 0 ? 0u : uint32_t{EPOLLOUT}) : EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
  }
  thread_ = std::thread([this] { Loop(); });
}

void LoadWorker::Join() {
  if (thread_.joinable()) {
    thread_.join();
  }
}

void LoadWorker::Loop() {
  epoll_event events[256];
  const bool paced = shared_->period_ns > 0;
  while (!shared_->stop.load(std::memory_order_relaxed)) {
    timespec timeout{0, 100 * 1000 * 1000};
    if (paced) {
      int64_t next = MonoNs() + 1000000;
      for (const Conn& c : conns_) {
        if (c.sender) {
          next = std::min(next, c.next_due_ns);
        }
      }
      timeout = timespec{0, static_cast<long>(std::max<int64_t>(0, next - MonoNs()))};
    }
    const int n = epoll_pwait2(ep_, events, 256, &timeout, nullptr);
    // Receivers first and until drained (bounded): the node side must never be the
    // bottleneck, or the generator would measure itself.
    for (int i = 0; i < n; ++i) {
      Conn& c = conns_[events[i].data.u64];
      for (int reads = 0; !c.sender && reads < 64 && Receive(c); ++reads) {
      }
    }
    for (int i = 0; i < n; ++i) {
      Conn& c = conns_[events[i].data.u64];
      if (c.sender && !c.finished) {
        paced ? Flush(c) : SendBatch(c);
      }
    }
    if (shared_->stop_sending.load(std::memory_order_relaxed)) {
      FinishSenders(paced);
    } else if (paced) {
      PaceSenders();
    }
  }
}

void LoadWorker::FinishSenders(bool paced) {
  for (Conn& c : conns_) {
    if (c.sender && !c.finished) {
      paced ? Flush(c) : SendBatch(c);
      const bool boundary = paced ? c.pending.empty() : c.off % shared_->frame_size == 0;
      if (boundary && !c.finished) {
        Finish(c);
      }
    }
  }
}

void LoadWorker::PaceSenders() {
  const int64_t now = MonoNs();
  for (Conn& c : conns_) {
    if (c.sender && c.next_due_ns <= now) {
      while (c.next_due_ns <= now && c.pending.size() < (4u << 20)) {
        AppendStampedFrame(&c.pending);
        c.next_due_ns += shared_->period_ns;
      }
      Flush(c);
    }
  }
}

void LoadWorker::SendBatch(Conn& c) {
  const std::string& batch = shared_->batch;
  const bool stopping = shared_->stop_sending.load(std::memory_order_relaxed);
  for (int i = 0; i < 2; ++i) {
    size_t len = batch.size() - c.off;
    if (stopping) {
      len = (shared_->frame_size - c.off % shared_->frame_size) % shared_->frame_size;
      if (len == 0) {
        return;  // at a frame boundary: done
      }
    }
    const ssize_t n = ::send(c.fd, batch.data() + c.off, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        SenderLost(c);
      }
      return;
    }
    c.sent_bytes += static_cast<uint64_t>(n);
    c.off = (c.off + static_cast<size_t>(n)) % batch.size();
  }
}

void LoadWorker::Finish(Conn& c) {
  c.finished = true;
  epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
  sent_frames.fetch_add(c.sent_bytes / shared_->frame_size);
  unfinished_senders.fetch_sub(1);
}

void LoadWorker::AppendStampedFrame(std::string* out) {
  const uint32_t len = shared_->options->frame_bytes;
  out->append(FrameHeaderBytes(shared_->options->network_id, len));
  const int64_t now = MonoNs();
  char ts[8];
  memcpy(ts, &now, sizeof(ts));
  out->append(ts, std::min<size_t>(8, len));
  if (len > 8) {
    out->append(len - 8, 'r');
  }
}

void LoadWorker::Flush(Conn& c) {
  while (!c.pending.empty()) {
    const ssize_t n = ::send(c.fd, c.pending.data(), c.pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        SenderLost(c);
      }
      return;
    }
    c.sent_bytes += static_cast<uint64_t>(n);
    c.pending.erase(0, static_cast<size_t>(n));
  }
}

void LoadWorker::SenderLost(Conn& c) {
  epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
  c.pending.clear();
  c.next_due_ns = INT64_MAX;
  if (!c.finished) {
    c.finished = true;  // what it wrote whole still counts as sent
    sent_frames.fetch_add(c.sent_bytes / shared_->frame_size);
    unfinished_senders.fetch_sub(1);
  }
  if (!shared_->stop.load(std::memory_order_relaxed)) {
    lost.fetch_add(1, std::memory_order_relaxed);
  }
}

bool LoadWorker::Receive(Conn& c) {
  const ssize_t n = ::recv(c.fd, buf_.data(), buf_.size(), MSG_DONTWAIT);
  if (n <= 0) {
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
      if (shared_->node_lost && c.node >= 0) {
        shared_->node_lost(c.node);  // --failover: the node moves to another relay
      }
      if (!shared_->stop.load(std::memory_order_relaxed)) {
        lost.fetch_add(1, std::memory_order_relaxed);
        if (c.hdr_have > 0) {
          cut.fetch_add(1, std::memory_order_relaxed);  // the stream ended inside a frame
        }
      }
    }
    return false;
  }
  const bool measuring = shared_->measuring.load(std::memory_order_relaxed);
  const Parsed parsed = Parse(c, buf_.data(), static_cast<size_t>(n), measuring);
  received_frames.fetch_add(parsed.frames, std::memory_order_relaxed);
  if (measuring) {
    frames.fetch_add(parsed.frames, std::memory_order_relaxed);
    bytes.fetch_add(parsed.bytes, std::memory_order_relaxed);
  }
  return static_cast<size_t>(n) == buf_.size();
}

void LoadWorker::BeginPayload(Conn& c) {
  const FrameHeader h = DecodeFrameHeader(c.hdr);
  c.length = h.length;
  c.payload_left = h.length;
  c.data = h.compress_info == kLoadFrameMarker;
  c.ts_have = 0;
  if (c.data &&
      (h.network_id != shared_->options->network_id || h.length != shared_->options->frame_bytes)) {
    bad.fetch_add(1, std::memory_order_relaxed);
  }
}

LoadWorker::Parsed LoadWorker::Parse(Conn& c, const uint8_t* p, size_t left, bool measuring) {
  Parsed parsed;
  while (left > 0) {
    if (c.hdr_have < kFrameHeaderSize) {
      const size_t take = std::min(left, kFrameHeaderSize - c.hdr_have);
      memcpy(c.hdr + c.hdr_have, p, take);
      c.hdr_have += take;
      p += take;
      left -= take;
      if (c.hdr_have == kFrameHeaderSize) {
        BeginPayload(c);
      }
      continue;
    }
    const size_t take = static_cast<size_t>(std::min<uint64_t>(left, c.payload_left));
    if (c.ts_have < 8) {  // the sender's stamp: the payload's first 8 bytes
      const size_t t = std::min(take, 8 - c.ts_have);
      memcpy(c.ts + c.ts_have, p, t);
      c.ts_have += t;
    }
    p += take;
    left -= take;
    c.payload_left -= take;
    if (c.payload_left > 0) {
      continue;
    }
    if (c.data) {
      ++parsed.frames;
      parsed.bytes += c.length;
      if (measuring && shared_->period_ns > 0 && c.length >= 8) {
        int64_t sent;
        memcpy(&sent, c.ts, 8);
        latency_ns.push_back(static_cast<uint64_t>(std::max<int64_t>(0, MonoNs() - sent)));
      }
    }
    c.hdr_have = 0;
  }
  return parsed;
}

}  // namespace relay::load
