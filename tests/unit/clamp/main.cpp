#define BOOST_TEST_MODULE unit_clamp
#include <boost/test/unit_test.hpp>
