// The kernel data path: bpf/clamp.bpf.c's tc programs, loaded once and attached with tc
// clsact (ingress and egress) to each tunnel interface. The programs clamp SYNs in both
// directions and run the oversize guard on egress with the targets this class writes into
// their maps; the daemon keeps every decision that needs state or I/O (the targets, ICMP
// answers and their rate limits, stats). docs/DATAPATH.md has the operator's view.
//
// Restarts: the filters sit at a fixed handle and priority (TS_TC_HANDLE/TS_TC_PRIORITY).
// attach() replaces a tunshim program it finds there whose daemon is dead (a predecessor
// killed without clean-up keeps clamping with its last targets until then), and refuses to
// replace anyone else's or a live tunshim's (its heartbeat, read from its own map, is fresh;
// without CAP_SYS_ADMIN that map cannot be opened, and a per-network-namespace lock, which
// the first live instance holds, decides instead).
// Nothing is pinned: the maps live as long as the programs that use them.
//
// Faults: the guard drops only while heartbeat() has been called within stale_ns (3 s by
// default), so a dead daemon leaves oversize packets passing, never a black hole of its own.
//
// Not thread-safe; one instance per process (the programs' maps are the instance's).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bpf/tunshim_bpf.h"
#include "clamp/bytes.h"

struct tunshim_bpf;
struct ring_buffer;

namespace tunshim::proxy {

// What the programs do on one interface. A 0 turns its part off.
struct BpfTargets {
  std::uint16_t mss4 = 0;
  std::uint16_t mss6 = 0;
  std::uint16_t guard_mtu = 0;               // egress oversize guard: the path MTU
  std::optional<std::uint16_t> probe_ident;  // ICMP echo identifier of our own probes
  // Passive black-hole symptoms (BpfCounters::symptom): off, or counted with these limits.
  bool symptoms = false;
  std::uint16_t watch_mtu = 0;  // oversize DF: the measured path MTU; 0: not counted
  std::uint16_t full4 = 0;      // full-size retransmissions: the smallest full-size IPv4
  std::uint16_t full6 = 0;      // and IPv6 wire sizes; 0: not counted
};

// Counters of one interface, summed over the CPUs. clamp[dir][outcome] with dir 0 =
// egress, 1 = ingress and outcome in clamp::Outcome order.
struct BpfCounters {
  static constexpr int kOutcomes = 9;
  std::array<std::array<std::uint64_t, kOutcomes>, 2> clamp{};
  std::uint64_t guard_dropped = 0;  // oversize, dropped and reported to the daemon
  std::uint64_t guard_lost = 0;     // of those, the report did not fit the ring buffer
  std::uint64_t guard_probe = 0;    // oversize daemon probes let through
  std::uint64_t guard_stale = 0;    // oversize but passed: heartbeat too old
  std::uint64_t guard_gso = 0;      // of the dropped, judged by their GSO segment size
  // Black-hole symptoms, in ts_symptom order: full-size retransmissions (egress), ICMP
  // frag-needed / packet-too-big arriving (ingress), oversize DF packets (egress).
  enum Symptom : std::uint8_t { kRetransmit = 0, kIcmpTooBig, kOversizeDf, kSymptoms };
  std::array<std::uint64_t, kSymptoms> symptom{};
};

// One packet the guard dropped: the daemon answers it with ICMP.
struct BpfReport {
  unsigned ifindex = 0;
  std::uint16_t mtu = 0;       // the guard MTU it exceeded
  std::uint32_t wire_len = 0;  // its size on the wire (GSO: of one segment)
  clamp::ConstBytes head;      // its first bytes from the IP header on (at most 1232)
};

class BpfDatapath {
 public:
  using ReportHandler = std::function<void(const BpfReport&)>;

  // The heartbeat age after which the guard stops dropping.
  static constexpr std::uint64_t kDefaultStaleNs = 3'000'000'000ULL;

  BpfDatapath() = default;
  ~BpfDatapath();
  BpfDatapath(const BpfDatapath&) = delete;
  BpfDatapath& operator=(const BpfDatapath&) = delete;

  // Whether this build has the eBPF data path at all.
  static bool compiled_in() noexcept;

  // Loads the programs and creates their maps (nothing is attached yet). False with `why`
  // one line naming the cause: not compiled in, no privileges, a kernel that refuses the
  // programs (with the verifier's last words) or lacks a feature they need.
  bool open(std::string& why, std::uint64_t stale_ns = kDefaultStaleNs);
  bool is_open() const noexcept { return skel_ != nullptr; }

  // Writes the interface's settings, then attaches both programs to its clsact hooks
  // (created if absent) at tunshim's handle and priority, replacing a tunshim program
  // already there. `l2_len` is the link header length in front of the IP header (0 on
  // TUN and other L3 devices, 14 on Ethernet). False with `err` if the interface is gone,
  // the slot table is full, or another program holds tunshim's handle.
  bool attach(unsigned ifindex, std::uint8_t l2_len, const BpfTargets& t, std::string& err);
  // Removes both filters (and the clsact qdisc if attach() created it) and forgets the
  // interface. Harmless for an interface not attached or already gone.
  void detach(unsigned ifindex) noexcept;
  bool attached(unsigned ifindex) const noexcept;
  // Puts back what was removed behind tunshim's back from an attached interface (`tc qdisc
  // del dev IF clsact`, a filter deleted): the clsact qdisc and either program. True once
  // both programs are in place; false with `err` if the interface is not attached or
  // another program holds tunshim's handle.
  bool reattach(unsigned ifindex, std::string& err);
  // attach() replaced programs a dead tunshim had left on the interface.
  bool adopted(unsigned ifindex) const noexcept;

  // New settings for an attached interface, in one map update: no SYN sees a half-written
  // target. False if the interface is not attached.
  bool set_targets(unsigned ifindex, const BpfTargets& t) noexcept;
  std::optional<BpfCounters> counters(unsigned ifindex) const;

  // Tells the programs the daemon is alive (CLOCK_MONOTONIC, the clock bpf_ktime_get_ns
  // reads). Call well within stale_ns, e.g. every second.
  void heartbeat() noexcept;
  // How old a heartbeat may be before the guard stops dropping (takes effect with the next
  // heartbeat()).
  void set_stale_ns(std::uint64_t ns) noexcept { stale_ns_ = ns; }
  // Ages the heartbeat out now: the guard passes everything (clean stop, tests).
  void stop_heartbeat() noexcept;

  // Reports of dropped packets: poll report_fd() for readability (an epoll fd) and call
  // consume_reports(), which runs the handler once per report.
  void set_report_handler(ReportHandler h) { on_report_ = std::move(h); }
  int report_fd() const noexcept;
  int consume_reports() noexcept;

  // Detaches every interface and unloads everything.
  void close() noexcept;

  // For tests (BPF_PROG_TEST_RUN) and diagnostics.
  int egress_prog_fd() const noexcept;
  int ingress_prog_fd() const noexcept;
  // Writes settings for `ifindex` without attaching anything (a test run's skb comes from
  // the loopback device, ifindex 1).
  bool set_iface_for_test(unsigned ifindex, std::uint8_t l2_len, const BpfTargets& t);

 private:
  struct Iface {
    unsigned ifindex = 0;
    std::uint8_t l2_len = 0;
    std::uint16_t slot = 0;
    bool created_qdisc = false;
    bool on_tc = false;    // attach()ed (set_iface_for_test() only writes the map)
    bool adopted = false;  // replaced the programs of a tunshim that died
  };
  Iface* find(unsigned ifindex) noexcept;
  const Iface* find(unsigned ifindex) const noexcept;
  bool write_iface(const Iface& i, const BpfTargets& t) noexcept;
  bool claim_slot(std::uint16_t& slot) noexcept;
  static int on_sample(void* ctx, void* data, std::size_t size);

  tunshim_bpf* skel_ = nullptr;
  ring_buffer* ring_ = nullptr;
  int lock_fd_ = -1;  // the network namespace's datapath lock, when this process holds it
  std::uint64_t stale_ns_ = kDefaultStaleNs;
  std::vector<Iface> ifaces_;
  std::array<bool, TS_MAX_IFACES> slots_{};
  ReportHandler on_report_;
};

}  // namespace tunshim::proxy
