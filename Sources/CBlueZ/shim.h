#ifndef VIGIL_CBLUEZ_SHIM_H
#define VIGIL_CBLUEZ_SHIM_H
#include <sys/socket.h>
#include <bluetooth/bluetooth.h>
#include <bluetooth/l2cap.h>
#include <bluetooth/hci.h>
#include <bluetooth/hci_lib.h>

/// The fixed L2CAP channel of the Attribute Protocol (Core v5.3, Vol 3, Part A, §2.1).
/// No installed header defines it.
#define VIGIL_BT_ATT_CID 4

/// `BDADDR_ANY` is a macro over a compound literal; Swift cannot import it.
static inline bdaddr_t vigil_bdaddr_any(void) {
    bdaddr_t any = {{0, 0, 0, 0, 0, 0}};
    return any;
}
/// `htobs` is a macro; Bluetooth is little-endian on the wire.
static inline uint16_t vigil_htobs(uint16_t v) { return htobs(v); }
static inline uint16_t vigil_btohs(uint16_t v) { return btohs(v); }
#endif
