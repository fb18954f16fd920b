#ifndef TERN_CSYSTEMD_SHIM_H
#define TERN_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#endif
