// read_peer4: the ioctl path a concentrator's daemon takes for each session's peer. Without
// root and a namespace no point-to-point interface can be made here, so these are the
// answers that must be "none" (the peer itself is checked end to end: test_pattern_scale's
// 1,000 TUN sessions each search the path MTU to the peer this function reads).
#include <boost/test/unit_test.hpp>
#include <string>

#include "proxy/probe_io.h"

namespace {

using namespace tunshim::proxy;

BOOST_AUTO_TEST_CASE(read_peer4_is_none_without_a_point_to_point_peer) {
  BOOST_TEST(!read_peer4("lo").has_value());  // has an address, is not point-to-point
  BOOST_TEST(!read_peer4("tunshim-none0").has_value());
  BOOST_TEST(!read_peer4("").has_value());
  BOOST_TEST(!read_peer4(std::string(40, 'x')).has_value());  // longer than IFNAMSIZ
}

}  // namespace
