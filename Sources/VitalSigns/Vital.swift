/// A kind of vital sign, with the codes that name it upstream.
///
/// Vitals are identified by `key`, a short stable name used in config files, care plans,
/// the database and payloads. The LOINC code is what FHIR consumers see (HL7 FHIR R4
/// vital-signs profile); the IEEE 11073-10101 MDC code is what devices speak, where one
/// exists. `unit` is the canonical UCUM unit every reading of this vital is stored in.
public struct Vital: Hashable, Sendable, Codable, CustomStringConvertible {
    /// Short, stable identifier (`spo2`, `pulse_rate`, …).
    public let key: String
    /// LOINC code, for example `59408-5`.
    public let loinc: String
    /// LOINC display name.
    public let display: String
    /// IEEE 11073-10101 nomenclature code (partition × 65536 + term code), where one exists.
    public let mdc: UInt32?
    /// IEEE 11073-10101 reference identifier, for example `MDC_PULS_OXIM_SAT_O2`.
    public let mdcReference: String?
    /// Canonical UCUM unit for stored values.
    public let unit: String

    public init(key: String, loinc: String, display: String, mdc: UInt32?, mdcReference: String?, unit: String) {
        self.key = key
        self.loinc = loinc
        self.display = display
        self.mdc = mdc
        self.mdcReference = mdcReference
        self.unit = unit
    }

    public var description: String { key }

    /// Looks a vital up by its key.
    public static func named(_ key: String) -> Vital? { registry[key] }

    /// Every vital Vigil knows, in a stable order.
    public static let all: [Vital] = [
        .spo2, .pulseRate, .perfusionIndex, .heartRate, .respiratoryRate,
        .systolicPressure, .diastolicPressure, .meanArterialPressure,
        .bodyTemperature, .bodyWeight, .bloodGlucose,
        // Appended with the GATT decoders.
        .bodyHeight, .bodyMassIndex, .bodyFatPercentage, .interstitialGlucose, .hemoglobinA1c, .cuffPressure,
    ]

    private static let registry: [String: Vital] = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })
}

extension Vital {
    /// Oxygen saturation by pulse oximetry. MDC_PULS_OXIM_SAT_O2 (2::19384).
    public static let spo2 = Vital(
        key: "spo2", loinc: "59408-5", display: "Oxygen saturation in Arterial blood by Pulse oximetry",
        mdc: 150_456, mdcReference: "MDC_PULS_OXIM_SAT_O2", unit: "%")
    /// Pulse rate measured by a pulse oximeter. FHIR's vital-signs profile codes every heart
    /// rate as LOINC 8867-4; the MDC code keeps the source. MDC_PULS_OXIM_PULS_RATE (2::18458).
    public static let pulseRate = Vital(
        key: "pulse_rate", loinc: "8867-4", display: "Heart rate",
        mdc: 149_530, mdcReference: "MDC_PULS_OXIM_PULS_RATE", unit: "/min")
    /// Perfusion index: pulsatile over non-pulsatile infrared signal, in percent.
    /// MDC_PULS_OXIM_PERF_REL (2::19416). LOINC 61006-3 "Perfusion index Tissue by Pulse oximetry".
    public static let perfusionIndex = Vital(
        key: "perfusion_index", loinc: "61006-3", display: "Perfusion index Tissue by Pulse oximetry",
        mdc: 150_488, mdcReference: "MDC_PULS_OXIM_PERF_REL", unit: "%")
    /// Heart rate from an ECG-derived source (heart-rate straps). MDC_ECG_HEART_RATE (2::16770).
    public static let heartRate = Vital(
        key: "heart_rate", loinc: "8867-4", display: "Heart rate",
        mdc: 147_842, mdcReference: "MDC_ECG_HEART_RATE", unit: "/min")
    /// MDC_RESP_RATE (2::20490).
    public static let respiratoryRate = Vital(
        key: "respiratory_rate", loinc: "9279-1", display: "Respiratory rate",
        mdc: 151_562, mdcReference: "MDC_RESP_RATE", unit: "/min")
    /// MDC_PRESS_BLD_NONINV_SYS (2::18949).
    public static let systolicPressure = Vital(
        key: "systolic_bp", loinc: "8480-6", display: "Systolic blood pressure",
        mdc: 150_021, mdcReference: "MDC_PRESS_BLD_NONINV_SYS", unit: "mm[Hg]")
    /// MDC_PRESS_BLD_NONINV_DIA (2::18950).
    public static let diastolicPressure = Vital(
        key: "diastolic_bp", loinc: "8462-4", display: "Diastolic blood pressure",
        mdc: 150_022, mdcReference: "MDC_PRESS_BLD_NONINV_DIA", unit: "mm[Hg]")
    /// MDC_PRESS_BLD_NONINV_MEAN (2::18951).
    public static let meanArterialPressure = Vital(
        key: "mean_bp", loinc: "8478-0", display: "Mean blood pressure",
        mdc: 150_023, mdcReference: "MDC_PRESS_BLD_NONINV_MEAN", unit: "mm[Hg]")
    /// MDC_TEMP_BODY (2::19292).
    public static let bodyTemperature = Vital(
        key: "body_temperature", loinc: "8310-5", display: "Body temperature",
        mdc: 150_364, mdcReference: "MDC_TEMP_BODY", unit: "Cel")
    /// MDC_MASS_BODY_ACTUAL (2::57664).
    public static let bodyWeight = Vital(
        key: "body_weight", loinc: "29463-7", display: "Body weight",
        mdc: 188_736, mdcReference: "MDC_MASS_BODY_ACTUAL", unit: "kg")
    /// MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD (2::29112).
    public static let bloodGlucose = Vital(
        key: "blood_glucose", loinc: "2339-0", display: "Glucose [Mass/volume] in Blood",
        mdc: 160_184, mdcReference: "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD", unit: "mg/dL")
}

// Appended with the Bluetooth GATT decoders (issue 3). MDC codes: IEEE 11073-10101
// (partition 2 = SCADA, code = 2 × 65536 + term), as used by the IEEE 11073-20601 personal
// health device specialisations (-10415 weighing scale, -10420 body composition, -10417
// glucose); LOINC codes from the HL7 FHIR vital-signs profile and the HL7 CGM IG.
extension Vital {
    /// MDC_LEN_BODY_ACTUAL (2::57668). Weight Scale Service height field (m or [in_i]).
    public static let bodyHeight = Vital(
        key: "body_height", loinc: "8302-2", display: "Body height",
        mdc: 188_740, mdcReference: "MDC_LEN_BODY_ACTUAL", unit: "m")
    /// MDC_RATIO_MASS_BODY_LEN_SQ (2::57680).
    public static let bodyMassIndex = Vital(
        key: "bmi", loinc: "39156-5", display: "Body mass index (BMI) [Ratio]",
        mdc: 188_752, mdcReference: "MDC_RATIO_MASS_BODY_LEN_SQ", unit: "kg/m2")
    /// MDC_BODY_FAT (2::57676). LOINC 41982-0 "Percentage of body fat Measured".
    public static let bodyFatPercentage = Vital(
        key: "body_fat", loinc: "41982-0", display: "Percentage of body fat Measured",
        mdc: 188_748, mdcReference: "MDC_BODY_FAT", unit: "%")
    /// Glucose from a continuous glucose monitor's sensor. MDC_CONC_GLU_ISF (2::29140);
    /// LOINC 99504-3 as the HL7 CGM implementation guide uses it.
    public static let interstitialGlucose = Vital(
        key: "interstitial_glucose", loinc: "99504-3", display: "Glucose [Mass/volume] in Interstitial fluid",
        mdc: 160_212, mdcReference: "MDC_CONC_GLU_ISF", unit: "mg/dL")
    /// HbA1c from a Glucose Measurement Context (GLS 1.0 §3.107). MDC_CONC_HBA1C (2::29148).
    public static let hemoglobinA1c = Vital(
        key: "hba1c", loinc: "4548-4", display: "Hemoglobin A1c/Hemoglobin.total in Blood",
        mdc: 160_220, mdcReference: "MDC_CONC_HBA1C", unit: "%")
    /// The live cuff pressure while a blood pressure monitor inflates (Intermediate Cuff
    /// Pressure 0x2A36). Progress only, never stored; no LOINC term exists for it.
    /// MDC_PRESS_CUFF (2::19228).
    public static let cuffPressure = Vital(
        key: "cuff_pressure", loinc: "", display: "Cuff pressure",
        mdc: 150_300, mdcReference: "MDC_PRESS_CUFF", unit: "mm[Hg]")
}
