import ArgumentParser
import VitalSigns

/// `vigilctl assign`: the device's next readings belong to this patient.
struct Assign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Assign a paired device to a patient.",
        discussion: """
            Readings taken from now on carry the new patient; readings already stored keep the \
            patient they were taken for. Assigning to the same patient again changes nothing. \
            Needs the vigil-admin group, and is audited.

            Exit status: 0 assigned, 64 bad arguments, 65 invalid patient, 66 no such device is \
            paired, 67 a device in vigild.yaml, 69 vigild not reachable, 77 not allowed, 74 the \
            registry could not be written.
            """)

    @Argument(help: "The device's id.")
    var id: String

    @Argument(help: "The care team's patient identifier.")
    var patient: String

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let reply = try RegistryRequest.send(
            .object([("command", "assign"), ("id", .string(id)), ("patient", .string(patient))]), connection: connection)
        if connection.json {
            print(reply.serialized)
        } else if reply["changed"]?.boolValue == true {
            print("\(id) assigned to patient \(patient); its next readings carry that patient")
        } else {
            print("\(id) is already assigned to that patient; nothing changed")
        }
    }
}
