# Install layout and the Debian package (CPack DEB).
#
#   cmake --install build --prefix /usr     /usr/sbin/tunshim (proxy/CMakeLists.txt),
#                                           /etc/tunshim/tunshim.conf (only if absent),
#                                           /lib/systemd/system/tunshim.service,
#                                           /etc/ppp/ip-up.d/tunshim, ip-down.d/tunshim,
#                                           share/man/man8/tunshim.8.gz, man5/tunshim.conf.5.gz,
#                                           share/doc/tunshim/* (with copyright),
#                                           share/tunshim/prometheus/tunshim.rules.yml,
#                                           share/tunshim/prometheus/tunshim.rules.test.yml,
#                                           share/tunshim/grafana/tunshim.json
#   cpack -G DEB --config build/CPackConfig.cmake -B DIR
#                                           DIR/tunshim_<version>_<arch>.deb
#
# The config path (/etc/tunshim/tunshim.conf) is compiled into the binary and the unit
# directory is Debian's, so both are absolute whatever the prefix; the unit's ExecStart
# is rewritten at install time to the prefix actually used.


set(TUNSHIM_UNIT_DIR "/lib/systemd/system")
set(TUNSHIM_CONF_DIR "/etc/tunshim")

# ---- man pages: gzipped at build time (Debian policy 12.1), sources stay plain roff ----
find_program(TUNSHIM_GZIP gzip REQUIRED)
set(tunshim_man_pages tunshim.8 tunshim.conf.5)
set(tunshim_man_outputs)
foreach(page ${tunshim_man_pages})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/man/${page}.gz)
  add_custom_command(
    OUTPUT ${out}
    # -n: no name or timestamp in the header, so the package is reproducible.
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/man
    COMMAND ${TUNSHIM_GZIP} -9nc ${CMAKE_CURRENT_SOURCE_DIR}/docs/man/${page} > ${out}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/docs/man/${page}
    COMMENT "gzip man page ${page}"
    VERBATIM)
  list(APPEND tunshim_man_outputs ${out})
endforeach()
add_custom_target(tunshim_man ALL DEPENDS ${tunshim_man_outputs})

install(FILES ${CMAKE_CURRENT_BINARY_DIR}/man/tunshim.8.gz DESTINATION share/man/man8)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/man/tunshim.conf.5.gz DESTINATION share/man/man5)

# ---- the systemd unit, ExecStart/ExecReload pointed at the installed binary ----
install(CODE "set(tunshim_unit_src \"${CMAKE_CURRENT_SOURCE_DIR}/conf/tunshim.service\")
set(tunshim_unit_tmp \"${CMAKE_CURRENT_BINARY_DIR}/unit/tunshim.service\")
set(tunshim_unit_dir \"${TUNSHIM_UNIT_DIR}\")")
install(CODE [==[
  file(READ "${tunshim_unit_src}" text)
  string(REPLACE "/usr/sbin/tunshim" "${CMAKE_INSTALL_PREFIX}/sbin/tunshim" text "${text}")
  file(WRITE "${tunshim_unit_tmp}" "${text}")
  # file(INSTALL) honours DESTDIR and records the file in install_manifest.txt.
  file(INSTALL "${tunshim_unit_tmp}" DESTINATION "${tunshim_unit_dir}"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
]==])

# ---- the config: never overwrite the operator's file ----
# For the .deb this always installs (the staging tree is empty) and dpkg's conffile
# handling protects a changed file on upgrade; for `cmake --install` the check does.
install(CODE "set(tunshim_conf_src \"${CMAKE_CURRENT_SOURCE_DIR}/conf/tunshim.conf\")
set(tunshim_conf_dir \"${TUNSHIM_CONF_DIR}\")")
install(CODE [==[
  if(NOT EXISTS "$ENV{DESTDIR}${tunshim_conf_dir}/tunshim.conf")
    file(INSTALL "${tunshim_conf_src}" DESTINATION "${tunshim_conf_dir}"
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  else()
    message(STATUS "Keeping: $ENV{DESTDIR}${tunshim_conf_dir}/tunshim.conf (exists; the shipped "
                   "example was not installed)")
  endif()
]==])

# ---- pppd helpers: ip-up asks the running daemon to reapply a tunnel's rules ----
# Installed whether or not ppp is (the directories are pppd's, which is harmless), mode 0755
# as run-parts wants, with the binary's path following the prefix like the unit's.
set(TUNSHIM_PPP_DIR "/etc/ppp")
install(CODE "set(tunshim_ppp_src \"${CMAKE_CURRENT_SOURCE_DIR}/conf/ppp\")
set(tunshim_ppp_tmp \"${CMAKE_CURRENT_BINARY_DIR}/ppp\")
set(tunshim_ppp_dir \"${TUNSHIM_PPP_DIR}\")")
install(CODE [==[
  foreach(hook ip-up.d ip-down.d)
    file(READ "${tunshim_ppp_src}/${hook}/tunshim" text)
    string(REPLACE "/usr/sbin/tunshim" "${CMAKE_INSTALL_PREFIX}/sbin/tunshim" text "${text}")
    file(WRITE "${tunshim_ppp_tmp}/${hook}/tunshim" "${text}")
    file(INSTALL "${tunshim_ppp_tmp}/${hook}/tunshim" DESTINATION "${tunshim_ppp_dir}/${hook}"
         PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                     WORLD_READ WORLD_EXECUTE)
  endforeach()
]==])

# ---- docs ----
file(GLOB tunshim_docs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/docs/*.md)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/README.md ${tunshim_docs} DESTINATION share/doc/tunshim)
# Debian's machine-readable copyright file (policy 12.5); the GPL text itself is in
# /usr/share/common-licenses, so LICENSE is not shipped again.
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/copyright DESTINATION share/doc/tunshim)

# ---- monitoring: Prometheus alerting rules (with their promtool tests) and the dashboard ----
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/conf/prometheus/tunshim.rules.yml
              ${CMAKE_CURRENT_SOURCE_DIR}/conf/prometheus/tunshim.rules.test.yml
        DESTINATION share/tunshim/prometheus)
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/conf/grafana/tunshim.json DESTINATION share/tunshim/grafana)

# ---- CPack: one .deb ----
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "tunshim")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "tunshim")
set(CPACK_PACKAGE_CONTACT "tunshim maintainers <tunshim@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "keeps a client VPN working: inline TCP MSS clamping")
set(CPACK_PACKAGE_DESCRIPTION
    "tunshim is a root service that runs next to an existing client VPN (pppd, OpenVPN,\n"
    "any point-to-point tunnel such as ppp0 or tun0). It clamps the TCP MSS of SYN and\n"
    "SYN-ACK packets crossing the tunnel inline (NFQUEUE, fail-open), so connections never\n"
    "negotiate segments larger than the path carries. It also rewrites pcap captures\n"
    "offline with the same code (tunshim clamp). 'tunshim demo' shows it at work on a\n"
    "throwaway lab of network namespaces.")
string(REPLACE ";" "" CPACK_PACKAGE_DESCRIPTION "${CPACK_PACKAGE_DESCRIPTION}")
# The .deb installs under /usr whatever prefix the build was configured with; DESTDIR
# staging makes the absolute /etc and /lib paths land inside the package too.
# (With DESTDIR staging, CPack takes the prefix from CPACK_INSTALL_PREFIX.)
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_INSTALL_PREFIX "/usr")
set(CPACK_SET_DESTDIR ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# Library dependencies come from dpkg-shlibdeps; iptables provides the iptables-nft and
# ip6tables-nft(-restore,-save) programs the daemon runs.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "iptables")
# `tunshim demo` builds its lab with ip and runs its VPN with socat; the daemon needs
# neither, so they are recommended, and the demo names what is missing.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "iproute2, socat")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/conffiles"
    "${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/postinst"
    "${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/prerm"
    "${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/postrm")
# Maintainer scripts 0755, conffiles 0644, whatever the checkout's modes are.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
