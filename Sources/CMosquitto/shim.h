#ifndef VIGIL_CMOSQUITTO_SHIM_H
#define VIGIL_CMOSQUITTO_SHIM_H
#include <mosquitto.h>
/* MQTT 5 property identifiers and reason codes (MQTT_PROP_*, MQTT_RC_*). */
#include <mqtt_protocol.h>
#endif
