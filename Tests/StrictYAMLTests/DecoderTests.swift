import Testing
import StrictYAML

// MARK: A realistic gateway configuration

struct GatewayConfig: Decodable, Equatable {
    struct MQTT: Decodable, Equatable {
        var host: String
        var port: UInt16
        var topicPrefix: String
        var tls: Bool
        var keepaliveSeconds: Int?
        var clientId: String?
    }
    struct Outbox: Decodable, Equatable {
        var capacityReadings: Int
        var capacityEscalations: Int
        var lanes: [String]
    }
    enum Transport: String, Decodable, Equatable { case serial, ble }
    struct Device: Decodable, Equatable {
        var name: String
        var transport: Transport
        var port: String?
        var baud: Int?
        var address: String?
        var vitals: [String]
        var ranges: [String: [Double]]?
    }
    var site: String
    var gatewayId: String
    var captureDirectory: String
    var mqtt: MQTT
    var outbox: Outbox
    var devices: [Device]
    var notes: String
}

let gatewayYAML = """
    # /etc/vigil/vigild.yaml — gateway configuration
    ---
    site: "ward-7"
    gateway_id: gw-0042
    capture_directory: /var/lib/vigil/captures   # raw captures for the technician

    mqtt:
      host: broker.example.org
      port: 8883
      topic_prefix: "vigil/v1/{site}/{gateway}"
      tls: true
      keepalive_seconds: 30

    outbox:
      capacity_readings: 100000
      capacity_escalations: 0x1388
      lanes: [escalations, "readings"]

    devices:
      - name: "Pulse oximeter \\"bedside\\"\\tA\\u00e9"
        transport: serial
        port: /dev/ttyUSB0
        baud: 9600
        vitals: [spo2, pulse_rate]
      - name: 'BP cuff'
        transport: ble
        address: "AA:BB:CC:DD:EE:FF"
        vitals:
          - systolic
          - diastolic
        ranges: {systolic: [50, 250.5], diastolic: [30, 1.5e2]}
    notes: |
      Installed by field service.
      Call the ward before rebooting.
    ...
    """

func decodeError<T: Decodable>(_ type: T.Type, _ text: String, snakeCase: Bool = true) -> YAMLError? {
    do {
        _ = try YAMLDecoder(keyDecodingStrategy: snakeCase ? .convertFromSnakeCase : .useDefaultKeys)
            .decode(type, from: text, fileName: "vigild.yaml")
        return nil
    } catch {
        return error
    }
}

@Test func decodesRealisticConfig() throws {
    let config = try YAMLDecoder(keyDecodingStrategy: .convertFromSnakeCase)
        .decode(GatewayConfig.self, from: gatewayYAML, fileName: "vigild.yaml")
    #expect(config == GatewayConfig(
        site: "ward-7", gatewayId: "gw-0042", captureDirectory: "/var/lib/vigil/captures",
        mqtt: .init(host: "broker.example.org", port: 8883, topicPrefix: "vigil/v1/{site}/{gateway}", tls: true,
                    keepaliveSeconds: 30, clientId: nil),
        outbox: .init(capacityReadings: 100_000, capacityEscalations: 5000, lanes: ["escalations", "readings"]),
        devices: [
            .init(name: "Pulse oximeter \"bedside\"\tAé", transport: .serial, port: "/dev/ttyUSB0", baud: 9600,
                  address: nil, vitals: ["spo2", "pulse_rate"], ranges: nil),
            .init(name: "BP cuff", transport: .ble, port: nil, baud: nil, address: "AA:BB:CC:DD:EE:FF",
                  vitals: ["systolic", "diastolic"], ranges: ["systolic": [50, 250.5], "diastolic": [30, 150]]),
        ],
        notes: "Installed by field service.\nCall the ward before rebooting.\n"))
    // The same bytes decode identically.
    let fromBytes = try YAMLDecoder(keyDecodingStrategy: .convertFromSnakeCase)
        .decode(GatewayConfig.self, from: Array(gatewayYAML.utf8), fileName: "vigild.yaml")
    #expect(fromBytes == config)
}

/// Replaces the first occurrence of `old` in the realistic config.
func gateway(replacing old: String, with new: String) -> String {
    var text = gatewayYAML
    guard let range = text.firstRange(of: old) else { return "missing \(old)" }
    text.replaceSubrange(range, with: new)
    return text
}

@Test func unknownKeyIsReportedWithSuggestion() throws {
    let error = try #require(decodeError(GatewayConfig.self, gateway(replacing: "capacity_readings:", with: "capacty_readings:")))
    // The typo makes a required field missing; the error points at the misspelt key.
    #expect(error.description == "vigild.yaml:15:3: outbox: missing required field 'capacity_readings' (is 'capacty_readings' a misspelling of it?)")
    let optional = try #require(decodeError(GatewayConfig.self, gateway(replacing: "keepalive_seconds:", with: "keepalive_second:")))
    #expect(optional.description == "vigild.yaml:12:3: mqtt: unknown field 'keepalive_second' (did you mean 'keepalive_seconds'?)")

    let inList = try #require(decodeError(GatewayConfig.self, gateway(replacing: "    baud: 9600", with: "    baud: 9600\n    parity: even")))
    #expect(inList.description == "vigild.yaml:24:5: devices[0]: unknown field 'parity'; expected one of: address, ranges")

    let transposed = try #require(decodeError(GatewayConfig.self, gateway(replacing: "  port: 8883", with: "  prot: 8883")))
    #expect(transposed.description == "vigild.yaml:9:3: mqtt: missing required field 'port' (is 'prot' a misspelling of it?)")
}

@Test func unknownKeyReportedWhenEverythingElseDecodes() throws {
    struct Small: Decodable { var a: Int }
    let error = try #require(decodeError(Small.self, "a: 1\nb: 2\nc: 3\n", snakeCase: false))
    #expect(error.description == "vigild.yaml:2:1: unknown field 'b'")
    // Dictionaries take any key, and their keys are not converted from snake case.
    struct Labels: Decodable { var labels: [String: String] }
    let labels = try YAMLDecoder(keyDecodingStrategy: .convertFromSnakeCase)
        .decode(Labels.self, from: "labels: {bed_number: '12', ward_name: east}", fileName: "x.yaml")
    #expect(labels.labels == ["bed_number": "12", "ward_name": "east"])
}

@Test func missingFieldPointsAtTheMapping() throws {
    let error = try #require(decodeError(GatewayConfig.self, gateway(replacing: "    transport: ble\n", with: "")))
    #expect(error.description == "vigild.yaml:25:5: devices[1]: missing required field 'transport'")
}

@Test func wrongTypeSaysWhatWasFoundNotTheValue() throws {
    let error = try #require(decodeError(GatewayConfig.self, gateway(replacing: "capacity_readings: 100000", with: "capacity_readings: lots-for-PAT-991")))
    #expect(error.description == "vigild.yaml:15:22: outbox.capacity_readings: expected an integer, found a string")
    #expect(!error.description.contains("PAT"))

    let quoted = try #require(decodeError(GatewayConfig.self, gateway(replacing: "port: 8883", with: "port: \"8883\"")))
    #expect(quoted.message == "expected an integer, found a quoted string")

    let notBool = try #require(decodeError(GatewayConfig.self, gateway(replacing: "tls: true", with: "tls: yes")))
    #expect(notBool.description == "vigild.yaml:11:8: mqtt.tls: expected a boolean (true or false), found a string")

    let list = try #require(decodeError(GatewayConfig.self, gateway(replacing: "lanes: [escalations, \"readings\"]", with: "lanes: {a: 1}")))
    #expect(list.message == "expected a list, found a mapping")
    #expect(list.path == "outbox.lanes")

    let enumValue = try #require(decodeError(GatewayConfig.self, gateway(replacing: "transport: ble", with: "transport: PAT-991")))
    #expect(enumValue.description == "vigild.yaml:26:16: devices[1].transport: not a valid Transport value")
}

struct Widths: Decodable {
    var u8: UInt8?
    var i8: Int8?
    var i16: Int16?
    var u32: UInt32?
    var i64: Int64?
    var u64: UInt64?
    var int: Int?
    var uint: UInt?
    var f: Float?
    var d: Double?
    var b: Bool?
    var s: String?
}

@Test(arguments: [
    ("u8: 255", nil), ("u8: 256", "integer out of range for UInt8 (0...255)"), ("u8: -1", "integer out of range for UInt8 (0...255)"),
    ("u8: 0xFF", nil), ("u8: 0o377", nil), ("u8: 0o8", "expected an integer, found a string"),
    ("i8: -128", nil), ("i8: 128", "integer out of range for Int8 (-128...127)"), ("i16: +32767", nil),
    ("u32: 4294967296", "integer out of range for UInt32 (0...4294967295)"),
    ("i64: -9223372036854775808", nil), ("i64: 9223372036854775808", "integer out of range for Int64 (-9223372036854775808...9223372036854775807)"),
    ("u64: 18446744073709551615", nil), ("u64: 18446744073709551616", "integer out of range for UInt64 (0...18446744073709551615)"),
    ("int: 1_000", "expected an integer, found a string"), ("int: 1.0", "expected an integer, found a number"),
    ("uint: -0", nil), ("int: ''", "expected an integer, found a quoted string"), ("int: [1]", "expected an integer, found a list"),
    ("d: 1.5", nil), ("d: .5", nil), ("d: -1e-3", nil), ("d: 42", nil), ("d: .inf", "infinite and NaN values are not allowed"),
    ("d: .NaN", "infinite and NaN values are not allowed"), ("f: 1e50", "number out of range for Float"), ("d: 1e", "expected a number, found a string"),
    ("b: True", nil), ("b: FALSE", nil), ("b: on", "expected a boolean (true or false), found a string"),
    ("b: \"true\"", "expected a boolean (true or false), found a quoted string"),
    ("s: 123", nil), ("s: null", nil), ("s: '123'", nil), ("b: ~", nil), ("b:", nil), ("s: {}", "expected a string, found a mapping"),
] as [(String, String?)])
func scalarTyping(_ text: String, _ message: String?) throws {
    let error = decodeError(Widths.self, text)
    #expect(error?.message == message)
    if let error { #expect(error.line == 1 && error.column > 1) }
}

@Test func scalarValues() throws {
    let ok = try YAMLDecoder().decode(Widths.self, from: "i64: -9223372036854775808\nu64: 0xFFFFFFFFFFFFFFFF\nd: -1e-3\ns: 007\nb: ~\n", fileName: "w.yaml")
    #expect(ok.i64 == Int64.min && ok.u64 == UInt64.max && ok.d == -0.001 && ok.s == "007" && ok.b == nil)
}

@Test func emptyValueIsNilButNotAString() throws {
    struct Required: Decodable { var name: String }
    let error = try #require(decodeError(Required.self, "name:\n"))
    #expect(error.description == "vigild.yaml:1:1: name: expected a string, found an empty value")
    struct Optionals: Decodable { var name: String?; var list: [Int?] }
    let o = try YAMLDecoder().decode(Optionals.self, from: "name: ~\nlist: [1, null, ~]\n", fileName: "o.yaml")
    #expect(o.name == nil && o.list == [1, nil, nil])
    let quotedNull = try YAMLDecoder().decode(Optionals.self, from: "name: 'null'\nlist: []\n", fileName: "o.yaml")
    #expect(quotedNull.name == "null")
}

@Test func snakeCaseConversion() throws {
    struct Paths: Decodable, Equatable { var captureDirectory: String; var mqttURL: String; var stateDir: String }
    let p = try YAMLDecoder(keyDecodingStrategy: .convertFromSnakeCase)
        .decode(Paths.self, from: "capture_directory: /a\nmqtt_url: mqtt://b\nstate_dir: /c\n", fileName: "p.yaml")
    #expect(p == Paths(captureDirectory: "/a", mqttURL: "mqtt://b", stateDir: "/c"))
    // Without the strategy the snake_case keys are unknown / missing, reported in document spelling.
    let error = try #require(decodeError(Paths.self, "capture_directory: /a\n", snakeCase: false))
    #expect(error.message == "missing required field 'captureDirectory' (is 'capture_directory' a misspelling of it?)")
}

// MARK: Errors from user code

struct Port: Decodable {
    var number: Int
    var context: YAMLContext?
    var mark: Mark?
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        number = try c.decode(Int.self, forKey: .number)
        context = decoder.yamlContext
        mark = decoder.yamlMark
        if number == 0 { throw YAMLValidationError("must not be zero", field: "number") }
        if number < 0 { throw YAMLValidationError("must be positive") }
        if number == 1 { throw DecodingError.dataCorruptedError(forKey: .number, in: c, debugDescription: "port 1 is reserved") }
        if number == 2 { throw DecodingError.keyNotFound(CodingKeys.baudRate, .init(codingPath: c.codingPath, debugDescription: "")) }
        if number == 3 { _ = try c.nestedContainer(keyedBy: CodingKeys.self, forKey: .extra) }
        if number == 4 { throw DecodingError.typeMismatch(Bool.self, .init(codingPath: c.codingPath + [CodingKeys.extra], debugDescription: "")) }
        if number == 5 { throw DecodingError.valueNotFound(Int.self, .init(codingPath: c.codingPath + [CodingKeys.number], debugDescription: "")) }
        if number == 6 { throw UserError() }
        _ = try c.decodeIfPresent(String.self, forKey: .extra)
    }
    struct UserError: Error, CustomStringConvertible { var description: String { "port is not configured on this gateway" } }
    enum CodingKeys: String, CodingKey { case number, baudRate, extra }
}

@Test(arguments: [
    ("0", "p.yaml:2:11: ports[0].number: must not be zero"),
    ("-5", "p.yaml:2:3: ports[0]: must be positive"),
    ("1", "p.yaml:2:11: ports[0].number: port 1 is reserved"),
    ("2", "p.yaml:2:3: ports[0]: missing required field 'baud_rate'"),
    ("3", "p.yaml:3:10: ports[0].extra: expected a mapping, found a list"),
    ("4", "p.yaml:3:10: ports[0].extra: expected a boolean, found a list"),
    ("5", "p.yaml:2:11: ports[0].number: expected an integer, found no value"),
    ("6", "p.yaml:2:3: ports[0]: port is not configured on this gateway"),
])
func userErrorsAreLocated(_ number: String, _ expected: String) throws {
    struct Ports: Decodable { var ports: [Port] }
    let text = "ports:\n- number: \(number)\n  extra: [x]\n"
    let error = try #require(throws: YAMLError.self) {
        try YAMLDecoder(keyDecodingStrategy: .convertFromSnakeCase).decode(Ports.self, from: text, fileName: "p.yaml")
    }
    #expect(error.description == expected)
}

@Test func contextSupportsLaterValidation() throws {
    struct Ports: Decodable { var ports: [Port] }
    let decoded = try YAMLDecoder().decode(Ports.self, from: "ports:\n  - number: 80\n  - number: 8080\n", fileName: "p.yaml")
    let second = try #require(decoded.ports.last?.context)
    #expect(decoded.ports.last?.mark == Mark(line: 3, column: 5))
    #expect(YAMLError.context(second, "port is already used").description == "p.yaml:3:5: ports[1]: port is already used")
}

@Test func unkeyedContainerRunsOut() throws {
    struct Pair: Decodable {
        var a: Int, b: Int
        init(from decoder: any Decoder) throws {
            var c = try decoder.unkeyedContainer()
            a = try c.decode(Int.self)
            b = try c.decode(Int.self)
        }
    }
    struct Holder: Decodable { var pair: Pair }
    let error = try #require(decodeError(Holder.self, "pair: [1]"))
    #expect(error.description == "vigild.yaml:1:7: pair: expected more list items (found 1)")
}

@Test func listsOfMappingsDecodeAtAnyIndentation() throws {
    struct Device: Decodable, Equatable { var name: String; var port: Int }
    struct Config: Decodable, Equatable { var devices: [Device]; var site: String }
    let expected = Config(devices: [.init(name: "a", port: 1), .init(name: "b", port: 2)], site: "s")
    for text in [
        "devices:\n- name: a\n  port: 1\n- name: b\n  port: 2\nsite: s\n",
        "devices:\n      - name: a\n        port: 1\n      - port: 2\n        name: b\nsite: s\n",
        "site: s\ndevices:\n  -\n    name: a\n    port: 1\n  - {name: b, port: 2}\n",
    ] {
        #expect(try YAMLDecoder().decode(Config.self, from: text, fileName: "d.yaml") == expected, "\(text)")
    }
    let error = try #require(decodeError(Config.self, "devices:\n- name: a\n  port: 1\n- name: b\n  prt: 2\nsite: s\n", snakeCase: false))
    #expect(error.description == "vigild.yaml:5:3: devices[1]: missing required field 'port' (is 'prt' a misspelling of it?)")
}

/// A value type that validates itself where it is decoded.
struct Percentage: Decodable {
    var value: Double
    init(from decoder: any Decoder) throws {
        value = try decoder.singleValueContainer().decode(Double.self)
        guard (0...100).contains(value) else { throw YAMLValidationError("must be between 0 and 100 %") }
    }
}

@Test func validationAtAScalarAndUserInfo() throws {
    struct Threshold: Decodable {
        var spo2Low: Percentage
        var tag: String
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            spo2Low = try c.decode(Percentage.self, forKey: .spo2Low)
            tag = decoder.userInfo[CodingUserInfoKey(rawValue: "tag")!] as? String ?? "none"
        }
        enum CodingKeys: String, CodingKey { case spo2Low }
    }
    let decoder = YAMLDecoder(keyDecodingStrategy: .convertFromSnakeCase, userInfo: [CodingUserInfoKey(rawValue: "tag")!: "plan-v3"])
    #expect(try decoder.decode(Threshold.self, from: "spo2_low: 92", fileName: "plan.yaml").tag == "plan-v3")
    let error = try #require(throws: YAMLError.self) { try decoder.decode(Threshold.self, from: "\nspo2_low: 920", fileName: "plan.yaml") }
    #expect(error.description == "plan.yaml:2:11: spo2_low: must be between 0 and 100 %")
}
