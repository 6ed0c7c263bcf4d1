#define BOOST_TEST_MODULE keepalive
#include <boost/test/unit_test.hpp>
