// Map layouts shared by the tc programs (bpf/clamp.bpf.c) and their loader
// (proxy/datapath_bpf.cpp). Plain C, fixed-width types, no padding holes: both sides read
// the same bytes. Only the loader writes `ts_ifaces` and `ts_state`; only the programs
// write `ts_counters` and `ts_reports`.
#ifndef TUNSHIM_BPF_H
#define TUNSHIM_BPF_H

#ifdef __cplusplus
#include <cstdint>
#define TS_U8 std::uint8_t
#define TS_U16 std::uint16_t
#define TS_U32 std::uint32_t
#define TS_U64 std::uint64_t
#else
#define TS_U8 __u8
#define TS_U16 __u16
#define TS_U32 __u32
#define TS_U64 __u64
#endif

// Interfaces the programs know (and counter slots).
#define TS_MAX_IFACES 2048
// Bytes of a dropped packet handed to the daemon: enough for the largest quote an ICMPv6
// "packet too big" carries (1280 - 40 - 8).
#define TS_REPORT_BYTES 1232
// clsact filter handle and priority of tunshim's programs. Fixed, so a restarted daemon
// finds the programs of its predecessor at this place and replaces them.
#define TS_TC_HANDLE 0x7453
#define TS_TC_PRIORITY 0x7453
// Slots of the per-CPU flow table of the retransmission symptom (a power of two): a slot
// holds one flow's hash tag and the sequence number after its highest full-size segment.
#define TS_FLOW_SLOTS 8192

// Per-interface settings, keyed by ifindex (ts_ifaces). A field of 0 turns its part off.
struct ts_iface {
  TS_U16 mss4;         // IPv4 MSS target
  TS_U16 mss6;         // IPv6 MSS target
  TS_U16 guard_mtu;    // guard: path MTU (egress); 0: guard off
  TS_U16 probe_ident;  // ICMP echo identifier of the daemon's own probes (pass the guard)
  TS_U8 l2_len;        // bytes before the IP header (0 on TUN and other L3 devices, 14 on
                       // Ethernet)
  TS_U8 probe_valid;   // probe_ident is set
  TS_U8 symptoms;      // count the black-hole symptoms below (ts_symptom)
  TS_U8 pad;
  TS_U16 watch_mtu;  // symptoms: the measured path MTU (DF packets above it are counted)
  TS_U16 full4;      // symptoms: smallest wire size of a full-size IPv4 TCP segment
  TS_U16 full6;      // the same for IPv6
  TS_U16 slot;       // index into ts_counters
};

// Outcomes, in clamp::Outcome order.
enum ts_outcome {
  TS_CLAMPED = 0,
  TS_INSERTED,
  TS_UNCHANGED,
  TS_NO_ROOM,
  TS_NOT_SYN,
  TS_NOT_TCP,
  TS_FRAGMENT,
  TS_MALFORMED,
  TS_DISABLED,
  TS_OUTCOMES,
};

enum ts_dir { TS_EGRESS = 0, TS_INGRESS = 1, TS_DIRS };

enum ts_guard_counter {
  TS_GUARD_DROPPED = 0,   // oversize DF / IPv6, dropped and reported
  TS_GUARD_LOST,          // of those, the report did not fit in the ring buffer
  TS_GUARD_PROBE,         // oversize daemon probes let through
  TS_GUARD_STALE,         // oversize but passed: no live daemon (heartbeat too old)
  TS_GUARD_OVERSIZE_GSO,  // of the dropped, judged by their GSO segment size
  TS_GUARD_COUNTERS,
};

// Passive black-hole symptoms (docs/DOCTOR.md, "In the daemon").
enum ts_symptom {
  TS_SYM_RETRANSMIT = 0,  // egress: a full-size TCP segment sent again (per-flow sequence)
  TS_SYM_ICMP_TOO_BIG,    // ingress: ICMP frag-needed / ICMPv6 packet-too-big arriving
  TS_SYM_OVERSIZE_DF,     // egress: DF (or IPv6) packet above watch_mtu, our probes aside
  TS_SYMPTOMS,
};

// Per-CPU counters of one interface (ts_counters[slot]); the loader sums the CPUs.
struct ts_counters {
  TS_U64 clamp[TS_DIRS][TS_OUTCOMES];
  TS_U64 guard[TS_GUARD_COUNTERS];
  TS_U64 symptom[TS_SYMPTOMS];
  TS_U64 nudge_ns;  // this CPU's last symptom nudge to the daemon (not a counter)
};

// A symptom nudge is a ts_report with mtu 0: "read this interface's symptom counters now",
// at most one per interface and CPU in this time, so the daemon needs no polling timer.
#define TS_NUDGE_GAP_NS 100000000ULL

// One slot of the flow table (ts_flows, per CPU). tag 0: empty.
struct ts_flow {
  TS_U32 tag;
  TS_U32 next_seq;  // the sequence number after the highest full-size segment seen
};

// Global state (ts_state[0]), written by the daemon.
struct ts_state {
  TS_U64 heartbeat_ns;  // bpf_ktime_get_ns() / CLOCK_MONOTONIC of the daemon's last beat
  TS_U64 stale_ns;      // a heartbeat older than this: the guard passes everything
};

// One dropped packet (ts_reports): what the daemon needs to answer with ICMP; with mtu 0,
// a symptom nudge (no packet).
struct ts_report {
  TS_U32 ifindex;
  TS_U16 mtu;       // the guard MTU it exceeded
  TS_U16 cap_len;   // bytes of the IP packet in data[]
  TS_U32 wire_len;  // size it would have had on the wire (GSO: one segment)
  TS_U32 pad;
  TS_U8 data[TS_REPORT_BYTES];
};

#undef TS_U8
#undef TS_U16
#undef TS_U32
#undef TS_U64

#endif
