# `tunshim demo` runs demo/tunshim-demo.sh, compiled into the binary as a string: nothing
# to find at run time, so it works the same from the build tree, after `cmake --install`
# and from the .deb. The header is regenerated when the script changes (configure
# dependency), and configure_file rewrites it only when its text differs.
set(tunshim_demo_script ${CMAKE_CURRENT_LIST_DIR}/tunshim-demo.sh)
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${tunshim_demo_script})
file(READ ${tunshim_demo_script} tunshim_demo_text)
if(tunshim_demo_text MATCHES "\\)TSDEMO\"")
  message(FATAL_ERROR "demo/tunshim-demo.sh must not contain the raw-string end ')TSDEMO\"'")
endif()
string(LENGTH "${tunshim_demo_text}" tunshim_demo_len)
if(tunshim_demo_len GREATER 60000)
  # C++ compilers need only accept 65536-character literals (-Woverlength-strings).
  message(FATAL_ERROR "demo/tunshim-demo.sh is ${tunshim_demo_len} bytes; split it before 64 KiB")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/demo_script.h.in
               ${PROJECT_BINARY_DIR}/generated/demo/demo_script.h @ONLY)
target_include_directories(tunshim_proxy PRIVATE ${PROJECT_BINARY_DIR}/generated)
