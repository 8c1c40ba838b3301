import Testing
import VigilTestKit
import VitalSigns

/// The built `vigilctl decode`, output compared whole.
@Suite struct VigilctlDecodeTests {
    static let ctl = VigildProcess.binDirectory + "/vigilctl"

    @Test func aMasimoLineDecodesToThreeJSONReadings() throws {
        let line = "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000004\r\n"
        let hex = Array(line.utf8).hexString
        let (status, output) = try VigildProcess.run([Self.ctl, "decode", "--protocol", "masimo-ascii1", "--hex", hex])
        #expect(status == 0)
        #expect(output == """
            {"vital":"spo2","loinc":"59408-5","value":98,"unit":"%","measured_at":"2016-02-22T22:47:45","flags":["low_perfusion"]}
            {"vital":"pulse_rate","loinc":"8867-4","value":97,"unit":"/min","measured_at":"2016-02-22T22:47:45","flags":["low_perfusion"]}
            {"vital":"perfusion_index","loinc":"61006-3","value":3.6,"unit":"%","measured_at":"2016-02-22T22:47:45","flags":["low_perfusion"]}

            """)
    }

    @Test func aCaptureFileDecodesAndUndecodableBytesExit65() throws {
        let capture = Fixtures.fixturesDirectory + "/nonin/normal.capture"
        let good = try VigildProcess.run([Self.ctl, "decode", "--protocol", "nonin-sdf2", "--file", capture])
        #expect(good.status == 0)
        #expect(good.output.split(separator: "\n").count == 24, "12 packets, 2 readings each")
        let bad = try VigildProcess.run([Self.ctl, "decode", "--protocol", "masimo-ascii1", "--hex", "41 42 43"], quiet: true)
        #expect(bad.status == 65)
        #expect(bad.output.isEmpty)
        let odd = try VigildProcess.run([Self.ctl, "decode", "--protocol", "masimo-ascii1", "--hex", "414"], quiet: true)
        #expect(odd.status == 65)
        let unknown = try VigildProcess.run([Self.ctl, "decode", "--protocol", "no-such", "--hex", "00"], quiet: true)
        #expect(unknown.status == 64)
    }
}
