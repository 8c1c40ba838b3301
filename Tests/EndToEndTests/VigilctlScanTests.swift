import Glibc
import Testing
import VigilTestKit
import VitalSigns

/// The built `vigilctl scan`, matching advertisements against the shipped profiles.
@Suite struct VigilctlScanTests {
    static let ctl = VigildProcess.binDirectory + "/vigilctl"
    static let profiles = Fixtures.repositoryRoot + "/devices"

    /// Flags, the complete local name "A&D_UA-651BLE_0A1B", and the Blood Pressure service.
    static let ua651 = "020106" + "13" + "09" + Array("A&D_UA-651BLE_0A1B".utf8).hexString + "03031018"

    @Test func anAdvertisementMatchesTheModelBeforeTheGenericProfile() throws {
        let run = try VigildProcess.run([Self.ctl, "scan", "--profiles", Self.profiles, "--advertisement", Self.ua651, "--json"])
        #expect(run.status == 0)
        #expect(run.output == """
            {"address":null,"rssi_dbm":null,"name":"A&D_UA-651BLE_0A1B","services":["1810"],"profiles":["and-ua-651ble","ble-blood-pressure"]}

            """)
        let text = try VigildProcess.run([Self.ctl, "scan", "--profiles", Self.profiles, "--advertisement", Self.ua651])
        #expect(text.output == "advertisement \"A&D_UA-651BLE_0A1B\" services 1810 → and-ua-651ble, ble-blood-pressure\n")
    }

    @Test func badInputIsRefusedWithItsOwnExitStatus() throws {
        let truncated = try VigildProcess.run([Self.ctl, "scan", "--profiles", Self.profiles, "--advertisement", "0201"], quiet: true)
        #expect(truncated.status == 65)
        let noDir = try VigildProcess.run([Self.ctl, "scan", "--profiles", "/nonexistent", "--advertisement", Self.ua651], quiet: true)
        #expect(noDir.status == 66)
        let badSeconds = try VigildProcess.run([Self.ctl, "scan", "--seconds", "0"], quiet: true)
        #expect(badSeconds.status == 64)
    }

    @Test func aLiveScanWithoutBluetoothSaysSo() throws {
        // This kernel has no AF_BLUETOOTH: the scan cannot start and says why (exit 69). On a
        // machine with an adapter but without CAP_NET_RAW it also exits 69; with both it scans.
        let fd = socket(31 /* AF_BLUETOOTH */, Int32(SOCK_RAW.rawValue), 1 /* BTPROTO_HCI */)
        let noBluetooth = fd < 0 && errno == EAFNOSUPPORT
        if fd >= 0 { close(fd) }
        let run = try VigildProcess.run([Self.ctl, "scan", "--profiles", Self.profiles, "--seconds", "1"], quiet: true)
        if noBluetooth {
            #expect(run.status == 69, "no Bluetooth in this kernel: the scan must exit 69")
            #expect(run.output.isEmpty)
        } else {
            #expect(run.status == 69 || run.status == 0)
        }
    }
}
