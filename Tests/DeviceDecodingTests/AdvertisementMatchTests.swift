import DeviceProfiles
import StrictYAML
import Testing
import VigilTestKit

/// Advertisements matched against the shipped profiles in devices/.
@Suite struct AdvertisementMatchTests {
    static let shipped: [DeviceProfile] = {
        let dir = Fixtures.repositoryRoot + "/devices"
        return Fixtures.list(dir).filter { $0.hasSuffix(".yaml") }.compactMap { name in
            let path = dir + "/" + name
            guard let bytes = try? Fixtures.readFile(path) else { return nil }
            return try? YAMLDecoder().decode(DeviceProfile.self, from: bytes, fileName: path)
        }
    }()

    @Test func aModelsNameRanksItsProfileAboveTheGenericOne() {
        let found = profiles(matching: "A&D_UA-651BLE_0A1B2C", serviceUUIDs: ["1810"], in: Self.shipped).map(\.id)
        #expect(found.first == "and-ua-651ble")
        #expect(found.contains("ble-blood-pressure"))
        #expect(!found.contains("ble-heart-rate"))
    }

    @Test func aGenericDeviceMatchesByServiceIn16Or128BitForm() {
        #expect(profiles(matching: "Polar H10 1234", serviceUUIDs: ["180D"], in: Self.shipped).map(\.id).contains("ble-heart-rate"))
        #expect(profiles(matching: nil, serviceUUIDs: ["0000180d-0000-1000-8000-00805f9b34fb"], in: Self.shipped)
            .map(\.id).contains("ble-heart-rate"))
    }

    @Test func unknownAdvertisersAndSerialProfilesNeverMatch() {
        #expect(profiles(matching: "Some speaker", serviceUUIDs: ["FE9F"], in: Self.shipped).isEmpty)
        #expect(profiles(matching: nil, serviceUUIDs: [], in: Self.shipped).isEmpty)
        // A model prefix alone does not match without the model's name.
        #expect(!profiles(matching: "UA-651", serviceUUIDs: ["1810"], in: Self.shipped).map(\.id).contains("and-ua-651ble"))
    }
}
