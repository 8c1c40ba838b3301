import ArgumentParser
import VitalSigns

/// `vigilctl unpair`: stop reading a device paired with vigilctl. Its stored readings stay.
struct Unpair: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Unpair a device: vigild stops reading it; its stored readings stay.",
        discussion: """
            Devices in vigild.yaml are installer-provisioned and cannot be unpaired here. \
            Needs the vigil-admin group.

            Exit status: 0 unpaired, 64 bad arguments, 66 no such device is paired, 67 a device \
            in vigild.yaml, 69 vigild not reachable, 77 not allowed, 74 the registry could not \
            be written.
            """)

    @Argument(help: "The device's id.")
    var id: String

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let reply = try RegistryRequest.send(.object([("command", "unpair"), ("id", .string(id))]), connection: connection)
        if connection.json {
            print(reply.serialized)
        } else {
            print("unpaired \(id); its stored readings are kept")
        }
    }
}
