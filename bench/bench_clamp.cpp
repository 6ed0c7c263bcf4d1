// ns per packet for clamp_mss. Each iteration restores the packet with a memcpy (the
// clamp mutates it); BM_Reset measures that memcpy alone so it can be subtracted.
#include <benchmark/benchmark.h>

#include <cstring>

#include "clamp/mss.h"
#include "support/packet_builder.h"

namespace tc = tunshim::clamp;
namespace tt = tunshim::test;

namespace {

constexpr tc::ClampTarget kTarget{1400, 1380};

tt::Buf opts_with_mss() {
  return tt::opt::cat({tt::opt::mss(1460), tt::opt::sack_ok(), tt::opt::timestamps(),
                       tt::opt::nop(), tt::opt::wscale(7)});
}

tt::Buf v4_rewrite() {
  tt::TcpSpec t;
  t.options = opts_with_mss();
  return tt::tcp4(t).bytes;  // 60 bytes
}
tt::Buf v4_insert() {
  tt::TcpSpec t;
  t.options = tt::opt::cat(
      {tt::opt::sack_ok(), tt::opt::timestamps(), tt::opt::nop(), tt::opt::wscale(7)});
  return tt::tcp4(t).bytes;  // 56 bytes, grows to 60
}
tt::Buf v6_rewrite() {
  tt::TcpSpec t;
  t.options = opts_with_mss();
  tt::Ip6Spec ip;
  ip.ext = {tt::opts6(60)};
  return tt::tcp6(t, ip).bytes;  // 88 bytes
}
tt::Buf v4_ack() {
  tt::TcpSpec t;
  t.flags = tt::tcpf::ack;
  t.options = tt::opt::timestamps();
  t.payload.assign(8, 'x');
  return tt::tcp4(t).bytes;
}

void run_clamp(benchmark::State& state, const tt::Buf& pkt, tc::Outcome expect) {
  std::uint8_t buf[256];
  std::memcpy(buf, pkt.data(), pkt.size());
  if (tc::clamp_mss(buf, pkt.size(), kTarget).outcome != expect) {
    state.SkipWithError("unexpected outcome");
    return;
  }
  for (auto _ : state) {
    std::memcpy(buf, pkt.data(), pkt.size());
    benchmark::ClobberMemory();
    auto r = tc::clamp_mss(buf, pkt.size(), kTarget);
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_Reset(benchmark::State& state) {
  const tt::Buf pkt = v6_rewrite();
  std::uint8_t buf[256];
  for (auto _ : state) {
    std::memcpy(buf, pkt.data(), pkt.size());
    benchmark::ClobberMemory();
    benchmark::DoNotOptimize(buf);
  }
}
void BM_Ipv4Rewrite(benchmark::State& s) { run_clamp(s, v4_rewrite(), tc::Outcome::clamped); }
void BM_Ipv4Insert(benchmark::State& s) { run_clamp(s, v4_insert(), tc::Outcome::inserted); }
void BM_Ipv6ExtRewrite(benchmark::State& s) {
  run_clamp(s, v6_rewrite(), tc::Outcome::clamped);
}
void BM_Ipv4NotSyn(benchmark::State& s) { run_clamp(s, v4_ack(), tc::Outcome::not_syn); }

}  // namespace

BENCHMARK(BM_Reset);
BENCHMARK(BM_Ipv4Rewrite);
BENCHMARK(BM_Ipv4Insert);
BENCHMARK(BM_Ipv6ExtRewrite);
BENCHMARK(BM_Ipv4NotSyn);
BENCHMARK_MAIN();
