// swift-tools-version:6.1
//
// Vigil: a remote patient monitoring edge gateway.
// The dependency arrows below are the architecture (docs/ARCHITECTURE.md):
// pure targets import no C module and no I/O target; I/O targets depend on pure
// targets only; VigilDaemon alone wires everything together.
import PackageDescription

let package = Package(
    name: "Vigil",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vigild", targets: ["VigilDaemon"]),
        .executable(name: "vigilctl", targets: ["VigilControl"]),
        .executable(name: "vigil-bench", targets: ["VigilBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // System libraries, one per C library, over pkg-config.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(name: "CBlueZ", pkgConfig: "bluez", providers: [.apt(["libbluetooth-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // POSIX calls Glibc does not export to Swift (posix_openpt family, SO_PEERCRED).
        .target(name: "CVigilPosix"),
        // C helpers for `vigilctl diagnose`: OpenSSL certificate checks and TLS handshake (libssl-dev), adjtimex.
        .target(name: "CVigilDiagnose", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),

        // Pure targets.
        .target(name: "VitalSigns"),
        .target(name: "StrictYAML"),
        .target(name: "DeviceDecoding", dependencies: ["VitalSigns"]),
        .target(name: "DeviceProfiles", dependencies: ["VitalSigns", "StrictYAML", "DeviceDecoding"]),
        .target(name: "ClinicalRules", dependencies: ["VitalSigns", "StrictYAML"]),

        // I/O targets.
        .target(name: "ReadingStore", dependencies: [
            "VitalSigns", "CSQLite", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "SerialLink", dependencies: [
            "VitalSigns", "DeviceDecoding", "CVigilPosix", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Uplink", dependencies: [
            "VitalSigns", "CMosquitto", "CZlib", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "BluetoothLink", dependencies: [
            "VitalSigns", "DeviceDecoding", "CBlueZ", "CVigilPosix", .product(name: "Logging", package: "swift-log"),
        ]),

        // Executables.
        .executableTarget(name: "VigilDaemon", dependencies: [
            "VitalSigns", "StrictYAML", "DeviceDecoding", "DeviceProfiles", "ClinicalRules",
            "ReadingStore", "SerialLink", "Uplink", "BluetoothLink", "CVigilPosix",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "VigilControl", dependencies: [
            "VitalSigns", "DeviceDecoding", "DeviceProfiles", "StrictYAML", "SerialLink", "BluetoothLink", "ClinicalRules",
            "CSQLite", "CVigilDiagnose",
            // watch, and setup's live broker test: the MQTT client.
            "Uplink",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Micro-benchmarks that print figures (scripts/bench-decoders); never shipped.
        .executableTarget(name: "VigilBench", dependencies: [
            "DeviceDecoding", "VigilTestKit", "Uplink", "ReadingStore", "VitalSigns", .product(name: "Logging", package: "swift-log"),
        ]),

        // Test support: private mosquitto, pty device player, fixture loader.
        .target(name: "VigilTestKit", dependencies: [
            "VitalSigns", "DeviceDecoding", "SerialLink", "Uplink", "CVigilPosix", "BluetoothLink",
        ]),

        // Tests mirror the targets.
        .testTarget(name: "VitalSignsTests", dependencies: ["VitalSigns"]),
        .testTarget(name: "StrictYAMLTests", dependencies: ["StrictYAML", "VigilTestKit"]),
        .testTarget(name: "DeviceDecodingTests", dependencies: ["DeviceDecoding", "DeviceProfiles", "StrictYAML", "VigilTestKit"]),
        .testTarget(name: "ClinicalRulesTests", dependencies: ["ClinicalRules", "StrictYAML", "VitalSigns"]),
        .testTarget(name: "ReadingStoreTests", dependencies: [
            "ReadingStore", "VitalSigns", .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SerialLinkTests", dependencies: ["SerialLink", "VigilTestKit", "DeviceDecoding", "DeviceProfiles", "StrictYAML"]),
        .testTarget(name: "UplinkTests", dependencies: ["Uplink", "VigilTestKit", "VitalSigns", "ReadingStore", "SerialLink"]),
        .testTarget(name: "BluetoothLinkTests", dependencies: ["BluetoothLink", "VigilTestKit", "DeviceDecoding", "VitalSigns"]),
        // The fault suite (issue 8): skipped unless VIGIL_FAULTS=short|long (scripts/faults).
        .testTarget(name: "FaultTests", dependencies: ["VigilTestKit", "VitalSigns", "Uplink", "SerialLink", "BluetoothLink"]),
        .testTarget(name: "EndToEndTests", dependencies: ["VigilTestKit", "VitalSigns", "Uplink", "SerialLink", "BluetoothLink", "DeviceDecoding"]),
    ]
)

// The same language settings for every target (swift-log and Hummingbird do the same).
for target in package.targets where target.type != .system {
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    settings.append(.enableUpcomingFeature("InternalImportsByDefault"))
    target.swiftSettings = settings
}
