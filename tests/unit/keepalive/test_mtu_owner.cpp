#include <boost/test/unit_test.hpp>

#include "keepalive/mtu_owner.h"

using tunshim::keepalive::MtuOwner;
using Change = MtuOwner::Change;

BOOST_AUTO_TEST_SUITE(mtu_owner)

BOOST_AUTO_TEST_CASE(search_raises_to_upper_bound_then_sets_result) {
  MtuOwner o;
  o.appear(1500);
  BOOST_TEST(o.want(true, false, 1500, false, 1200) == 0u);  // nothing measured yet
  BOOST_TEST(o.want(true, true, 1500, false, 1200) == 0u);   // already at the bound
  BOOST_TEST(o.want(true, false, 1500, true, 1372) == 1372u);
  o.wrote(1372);
  BOOST_TEST(o.current() == 1372u);
  BOOST_TEST(o.original() == 1500u);
  // An upward re-search raises it back to the original so probes can leave.
  BOOST_TEST(o.want(true, true, 1500, true, 1372) == 1500u);
  BOOST_TEST(o.want(false, false, 1500, true, 1300) == 0u);  // feature off: never
}

BOOST_AUTO_TEST_CASE(own_write_events_are_not_someone_elses) {
  MtuOwner o;
  o.appear(1500);
  o.wrote(1400);
  o.wrote(1372);
  // The events of both writes arrive late, in order: neither changes the original.
  BOOST_TEST((o.on_link_mtu(1400) == Change::ours));
  BOOST_TEST((o.on_link_mtu(1372) == Change::none));
  BOOST_TEST(o.original() == 1500u);
  // pppd renegotiates: that is the new original, and the write history is forgotten.
  BOOST_TEST((o.on_link_mtu(1450) == Change::external));
  BOOST_TEST(o.original() == 1450u);
  BOOST_TEST(o.current() == 1450u);
  BOOST_TEST((o.on_link_mtu(1400) == Change::external));
}

BOOST_AUTO_TEST_CASE(restore_only_what_tunshim_wrote) {
  MtuOwner o;
  o.appear(1500);
  BOOST_TEST(o.restore() == 0u);  // never wrote: nothing to give back
  o.wrote(1372);
  BOOST_TEST(o.restore() == 1500u);
  o.on_link_mtu(1500);  // someone put it back already
  BOOST_TEST(o.restore() == 0u);
}

BOOST_AUTO_TEST_CASE(reread_and_gone) {
  MtuOwner o;
  o.appear(1500);
  o.wrote(1372);
  o.reread(1372);  // still ours: the original stays
  BOOST_TEST(o.original() == 1500u);
  o.reread(1480);  // changed behind our back
  BOOST_TEST(o.original() == 1480u);
  o.gone();
  BOOST_TEST(!o.present());
  BOOST_TEST(o.want(true, false, 1500, true, 1300) == 0u);
  BOOST_TEST((o.on_link_mtu(1300) == Change::none));
  o.appear(1400);  // a new interface: nothing carried over
  BOOST_TEST(o.last_written() == 0u);
  BOOST_TEST(o.original() == 1400u);
}

BOOST_AUTO_TEST_SUITE_END()
