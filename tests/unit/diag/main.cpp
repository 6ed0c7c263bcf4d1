#define BOOST_TEST_MODULE unit_diag
#include <boost/test/unit_test.hpp>
